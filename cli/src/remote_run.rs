//! `stele --server URL run --workspace NAME "task"` and `stele --server
//! URL watch ID`: a task run on a stele server, its events streamed and
//! printed as `stele run` prints its own (docs/server.md, "The CLI against
//! a server"). A dropped connection is resumed from the last event seen
//! (`Last-Event-ID`), so no event is printed twice or lost. Ctrl-C detaches:
//! the session keeps running on the server and `watch` reattaches.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use futures_util::StreamExt as _;
use stele_protocol::{SessionEvent, SessionState, SessionSummary, StartSession, StartedSession};
use stele_runtime::agent::progress::ProgressStyle;
use stele_runtime::cli::run::RunArgs;
use stele_runtime::errln;
use stele_runtime::gate::ApproveMode;

use crate::api_client::{self, ApiClient, ServerArgs};
use crate::remote_approve::Keyboard;
use crate::remote_print::{Outcome, Printer};
use crate::sse::SseParser;

/// Exit status after Ctrl-C detached from a session that goes on running on
/// the server (docs/exit-codes.md): the shell's usual code for an interrupt.
pub const EXIT_DETACHED: u8 = 130;

/// Attempts to reconnect a dropped event stream before giving up.
const MAX_RECONNECTS: u32 = 10;

/// Arguments of `stele watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The session's id (printed by `stele --server URL run`).
    pub id: String,
    /// Events as JSON lines on stdout (as `stele run --json`).
    #[arg(long)]
    pub json: bool,
    /// `prompt`: offer to answer the session's approvals here (on a terminal,
    /// when policy lets you approve) [default: prompt on a terminal, else
    /// only say where the approval waits].
    #[arg(long, value_enum)]
    pub approve: Option<ApproveMode>,
}

/// Whether this terminal offers to answer approvals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answering {
    /// Ask the person at the terminal (when policy lets them answer).
    Here,
    /// Only say where the approval waits.
    QueueOnly,
}

fn answering(mode: Option<ApproveMode>) -> anyhow::Result<Answering> {
    let tty = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    match mode {
        None | Some(ApproveMode::Prompt) if tty => Ok(Answering::Here),
        None => Ok(Answering::QueueOnly),
        Some(ApproveMode::Prompt) => {
            // Asked for explicitly, without a terminal to ask on: say so.
            errln!(
                "stele: --approve prompt: no terminal to ask on; approvals wait in the \
                 server's queue"
            );
            Ok(Answering::QueueOnly)
        }
        Some(m @ (ApproveMode::Allow | ApproveMode::Deny)) => bail!(
            "--approve {}: on a server, approvals are answered by the people policy names, \
             through its approvals queue; only `--approve prompt` (answer here, on a terminal) \
             applies",
            format!("{m:?}").to_lowercase()
        ),
    }
}

/// The flags of `stele run` that only mean something on this machine.
fn local_only_flags(args: &RunArgs) -> Vec<&'static str> {
    let mut set = Vec::new();
    let mut flag = |on: bool, name: &'static str| {
        if on {
            set.push(name);
        }
    };
    flag(args.policy.is_some(), "--policy");
    flag(args.user.is_some(), "--user");
    flag(args.backend.is_some(), "--backend");
    flag(args.vm_fallback.is_some(), "--vm-fallback");
    flag(args.workspace_quota.is_some(), "--workspace-quota");
    flag(!args.limits.limits.is_empty(), "--limit");
    flag(args.network.is_some(), "--network");
    flag(args.db.is_some(), "--db");
    flag(args.key.is_some(), "--key");
    flag(args.max_tokens != 2_000_000, "--max-tokens");
    flag(args.max_seconds != 3600, "--max-seconds");
    set
}

/// Run `stele --server URL run …`.
pub fn run(server: &ServerArgs, args: RunArgs) -> anyhow::Result<ExitCode> {
    let local = local_only_flags(&args);
    if !local.is_empty() {
        bail!(
            "{}: not for a run on a server (the server's configuration sets its policy, log, \
             sandbox and limits; the principal is the token's account)",
            local.join(", ")
        );
    }
    if args.task.trim().is_empty() {
        bail!("give the task as the last argument");
    }
    let workspace = args
        .workspace
        .to_str()
        .filter(|w| !w.is_empty() && !w.contains('/'))
        .with_context(|| {
            format!(
                "--workspace {}: on a server, a workspace is a name from its configuration \
                 (`[workspace.NAME]`), not a path",
                args.workspace.display()
            )
        })?
        .to_string();
    let answer = answering(args.approve)?;
    let client = ApiClient::from_args(server)?;
    let style = style(args.json);
    let rt = api_client::runtime()?;
    rt.block_on(async {
        let body = StartSession {
            workspace,
            task: args.task.clone(),
            model: args.model.clone(),
            max_steps: args.max_steps,
        };
        let started: StartedSession = client.post("api/v1/sessions", &body).await?;
        if style == ProgressStyle::Human {
            errln!(
                "stele: started session {} on {} (Ctrl-C detaches; it goes on running there)",
                started.id,
                client.server()
            );
        }
        follow_or_detach(&client, &started.id, style, answer).await
    })
}

/// Run `stele --server URL watch ID`.
pub fn watch(server: &ServerArgs, args: WatchArgs) -> anyhow::Result<ExitCode> {
    let answer = answering(args.approve)?;
    let client = ApiClient::from_args(server)?;
    let rt = api_client::runtime()?;
    rt.block_on(async {
        // A clear refusal (unknown session, not yours to see) before streaming.
        let _: SessionSummary = client.get(&format!("api/v1/sessions/{}", args.id)).await?;
        follow_or_detach(&client, &args.id, style(args.json), answer).await
    })
}

fn style(json: bool) -> ProgressStyle {
    if json {
        ProgressStyle::Json
    } else {
        ProgressStyle::Human
    }
}

async fn follow_or_detach(
    client: &ApiClient,
    id: &str,
    style: ProgressStyle,
    answer: Answering,
) -> anyhow::Result<ExitCode> {
    let mut printer = Printer::new(style, client.server());
    tokio::select! {
        end = follow(client, id, &mut printer, answer) => match end? {
            Ended::Outcome(o) => Ok(ExitCode::from(o.exit_code())),
            Ended::Failed(why) => bail!(
                "session {id} failed on the server: {}",
                why.unwrap_or_else(|| "no detail".into())
            ),
        },
        _ = tokio::signal::ctrl_c() => {
            errln!(
                "\nstele: detached; session {id} goes on running on the server. Reattach with \
                 `stele --server {} watch {id}`",
                client.server()
            );
            Ok(ExitCode::from(EXIT_DETACHED))
        }
    }
}

/// How following a session ended.
enum Ended {
    /// Its `end` event arrived.
    Outcome(Outcome),
    /// The server says it failed (no `end` event), with why.
    Failed(Option<String>),
}

/// Stream the session's events until its end, reconnecting after a drop
/// from the last event printed.
async fn follow(
    client: &ApiClient,
    id: &str,
    printer: &mut Printer,
    answer: Answering,
) -> anyhow::Result<Ended> {
    let path = format!("api/v1/sessions/{id}/events");
    let mut last = 0u64;
    let mut failures = 0u32;
    let mut keyboard: Option<Keyboard> = None;
    loop {
        let mut req = client
            .request(reqwest::Method::GET, &path)?
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if last > 0 {
            req = req.header("last-event-id", last.to_string());
        }
        let cut = match req.send().await {
            // Refusals (401, 403, 404) are final; the problem says why.
            Ok(resp) => {
                let resp = api_client::checked(&path, Ok(resp)).await?;
                let mut parser = SseParser::default();
                let mut body = resp.bytes_stream();
                loop {
                    let chunk = match body.next().await {
                        Some(Ok(c)) => c,
                        Some(Err(e)) => break Some(e.to_string()),
                        None => break None,
                    };
                    failures = 0;
                    for ev in parser.push(&chunk) {
                        // Numbered events only, each once: a replay after a
                        // reconnect starts after `last`.
                        let Some(n) = ev.id.filter(|n| *n > last) else {
                            continue;
                        };
                        last = n;
                        match printer.event(&ev.data) {
                            Some(SessionEvent::End { outcome, .. }) => {
                                return Ok(Ended::Outcome(Outcome::of(&outcome)));
                            }
                            Some(SessionEvent::ApprovalRequested { approval_id, .. })
                                if answer == Answering::Here =>
                            {
                                keyboard
                                    .get_or_insert_with(Keyboard::start)
                                    .offer(client, id, &approval_id, last)
                                    .await;
                            }
                            _ => {}
                        }
                    }
                }
            }
            Err(e) => Some(format!("{:#}", anyhow::Error::from(e))),
        };
        match cut {
            Some(why) => {
                failures += 1;
                if failures > MAX_RECONNECTS {
                    bail!(
                        "lost the server ({why}) and could not reconnect; session {id} may still \
                         be running there: `stele --server {} watch {id}`",
                        client.server()
                    );
                }
                errln!(
                    "stele: the connection to the server dropped ({}); reconnecting after \
                     event {last}",
                    stele_runtime::terminal_safe::line(&why)
                );
            }
            None => {
                // The stream ended without an `end`: the server stopped
                // following the session. Ask where it stands.
                let s: SessionSummary = client.get(&format!("api/v1/sessions/{id}")).await?;
                match s.state {
                    SessionState::Failed => return Ok(Ended::Failed(s.detail)),
                    SessionState::Paused if failures > 0 => {
                        return Ok(Ended::Outcome(Outcome::Paused))
                    }
                    SessionState::Ended if failures > 0 => {
                        return Ok(Ended::Outcome(Outcome::of(
                            s.detail.as_deref().unwrap_or(""),
                        )))
                    }
                    // Ended or paused: its `end` should replay on the next
                    // connection; running: the stream was closed (a slow
                    // watcher is cut off). Either way, once more.
                    _ => failures += 1,
                }
                if failures > MAX_RECONNECTS {
                    bail!("the server keeps closing the event stream of session {id}");
                }
            }
        }
        let wait = Duration::from_millis(100u64 << failures.min(5));
        tokio::time::sleep(wait).await;
    }
}
