//! `stele run`: one task, end to end, through the gate.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::setup::{self, principal, NetworkChoice, OpenSession, SessionSpec};
use crate::agent::progress::{self, ProgressStyle};
use crate::agent::{Budget, RunEnd};
use crate::gate::approval::{approver_for, default_mode, terminal_safe, Approver, Newlines};
use crate::gate::{ApproveMode, Gate};
use crate::provider::Message;

/// Arguments of `stele run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The folder the agent may work in.
    #[arg(long)]
    pub workspace: PathBuf,
    /// Policy bundle folder [default: $XDG_CONFIG_HOME/stele/policy, /etc/stele/policy, else the built-in strict-default].
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// The person the agent acts for (must be in the bundle's members file) [default: $USER].
    #[arg(long)]
    pub user: Option<String>,
    /// Model as PROVIDER:NAME, e.g. anthropic:claude-sonnet-4-5, openai:gpt-4.1, ollama:llama3,
    /// openai-compat:NAME, scripted:FILE. Its settings are the config file's [provider.PROVIDER]
    /// table: base_url, api_key_env, max_tokens, max_tokens_limit, stall_timeout_secs,
    /// request_timeout_secs, connect_timeout_secs, patience_secs (how long an outage is ridden
    /// out before the run pauses; default 300), initial_backoff_secs, max_backoff_secs,
    /// max_attempts, streaming, allow_plain_http. ANTHROPIC_BASE_URL / OPENAI_BASE_URL override
    /// the base URL unless the managed config pins it. See docs/providers.md.
    #[arg(long, verbatim_doc_comment)]
    pub model: Option<String>,
    /// How requests that policy asks a human about are answered [default: prompt
    /// on a terminal (stdin and stderr), else deny].
    #[arg(long, value_enum)]
    pub approve: Option<ApproveMode>,
    /// The sandbox backend [default: `backend` in the config, else process].
    #[arg(long, value_enum)]
    pub backend: Option<super::backend::BackendChoice>,
    /// When the micro-VM does not come up: refuse, or run in the process
    /// sandbox (warned and logged) [default: `vm_fallback` in the config, else none].
    #[arg(long, value_enum)]
    pub vm_fallback: Option<super::backend::VmFallback>,
    /// The micro-VM's boot timeout in seconds (from the config's `vm_boot_timeout_secs`).
    #[arg(skip)]
    pub vm_boot_timeout_secs: Option<u64>,
    /// Bytes the agent's commands may write into the workspace over the
    /// session, e.g. 512MiB, 4GiB or "unlimited" [default:
    /// `workspace_write_quota` in the config, else 4GiB].
    #[arg(long)]
    pub workspace_quota: Option<stele_sandbox::fs::WriteQuota>,
    /// Group limits (memory, processes, CPU) for this session.
    #[command(flatten)]
    pub limits: super::resources::LimitArgs,
    /// The sandbox's network [default: none].
    #[arg(long, value_enum)]
    pub network: Option<NetworkChoice>,
    /// Most model turns [default: 40].
    #[arg(long)]
    pub max_steps: Option<u32>,
    /// Most tokens (input + output) over the run.
    #[arg(long, default_value_t = 2_000_000)]
    pub max_tokens: u64,
    /// Most wall-clock seconds.
    #[arg(long, default_value_t = 3600)]
    pub max_seconds: u64,
    /// Progress as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,
    /// Audit database [default: $STATE/audit.db].
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Signing key [default: $STATE/keys/log.key].
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// The task (for `chat`: an optional first message).
    #[arg(default_value = "")]
    pub task: String,
    /// Where the configuration came from (filled in from the config layers).
    #[arg(skip)]
    pub config: serde_json::Value,
    /// Which command runs the session (recorded in `session.start`).
    #[arg(skip)]
    pub client: Client,
}

/// The front end that opened a session, as `session.start` records it
/// (`client`): a reviewer reads whether a person typed a task at `stele
/// run`, talked in `stele chat`, or watched `stele demo`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Client {
    /// `stele run`.
    #[default]
    Run,
    /// `stele chat`.
    Chat,
    /// `stele demo`.
    Demo,
}

impl Client {
    /// The record: `{"kind": "cli", "command": …, "version": …}`.
    pub fn record(self) -> serde_json::Value {
        let command = match self {
            Client::Run => "run",
            Client::Chat => "chat",
            Client::Demo => "demo",
        };
        serde_json::json!({
            "kind": "cli",
            "command": command,
            "version": env!("CARGO_PKG_VERSION"),
        })
    }
}

/// The result of a finished run, for callers such as `stele demo`.
#[derive(Debug)]
pub struct RunReport {
    /// Session id.
    pub session: String,
    /// How it ended.
    pub end: RunEnd,
    /// The audit database.
    pub db: PathBuf,
}

/// Run `stele run`.
pub fn run(mut args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !args.task.trim().is_empty(),
        "give the task as the last argument"
    );
    apply_config(&mut args)?;
    // Unset by flag and config: ask on a terminal, else refuse ("no-terminal").
    let approver = approver_for(
        args.approve.unwrap_or(ApproveMode::Prompt),
        &principal(args.user.as_deref())?,
    );
    let report = run_task(&args, approver)?;
    Ok(exit_code(&report.end))
}

/// Exit status of a run (docs/exit-codes.md): 0 done, 10 a budget ran out,
/// 11 policy denied the model request, 12 the model or its provider declined
/// (`refusal`, `content_filter`), 75 paused (resumable).
pub(crate) fn exit_code(end: &RunEnd) -> ExitCode {
    use super::exit;
    ExitCode::from(match end {
        RunEnd::Answered(_) | RunEnd::Stopped(_) => exit::OK,
        RunEnd::BudgetExhausted(_) => exit::BUDGET,
        RunEnd::ModelDenied(_) => exit::MODEL_DENIED,
        RunEnd::Refused { .. } => exit::MODEL_REFUSED,
        RunEnd::Paused(_) => exit::PAUSED,
    })
}

pub(crate) use crate::session::{agent_for, model_for, Model};

/// Fill unset arguments from the configuration layers (managed values win).
pub(crate) fn apply_config(args: &mut RunArgs) -> anyhow::Result<()> {
    let layers = crate::config::load()?;
    args.policy = layers.pick("policy", args.policy.take(), |c| c.policy.clone())?;
    args.model = layers.pick("model", args.model.take(), |c| c.model.clone())?;
    args.approve = layers.pick("approve", args.approve, |c| c.approve)?;
    args.network = layers.pick("network", args.network, |c| c.network)?;
    args.db = layers.pick("db", args.db.take(), |c| c.db.clone())?;
    args.key = layers.pick("key", args.key.take(), |c| c.key.clone())?;
    args.max_steps = layers.pick("max_steps", args.max_steps, |c| c.max_steps)?;
    args.backend = layers.pick("backend", args.backend, |c| c.backend)?;
    args.vm_fallback = layers.pick("vm_fallback", args.vm_fallback, |c| c.vm_fallback)?;
    args.vm_boot_timeout_secs =
        layers.pick("vm_boot_timeout_secs", None, |c| c.vm_boot_timeout_secs)?;
    args.workspace_quota = Some(super::backend::workspace_quota(
        &layers,
        args.workspace_quota,
    )?);
    args.config = layers.provenance();
    Ok(())
}

/// Build the model provider and open the session for `args`.
pub(crate) fn open_for(
    args: &RunArgs,
    approver: Box<dyn Approver>,
) -> anyhow::Result<(OpenSession, Model)> {
    // The workspace, policy and key are checked first: a missing API key
    // must not hide a mistake in them.
    let layers = crate::config::load()?;
    let prepared = setup::prepare(&SessionSpec {
        workspace: &args.workspace,
        policy: args.policy.as_deref(),
        user: args.user.as_deref(),
        db: args.db.as_deref(),
        key: args.key.as_deref(),
        network: args.network.unwrap_or(NetworkChoice::None),
        backend: super::backend::BackendSpec {
            requested: args
                .backend
                .unwrap_or(super::backend::BackendChoice::Process),
            fallback: args.vm_fallback.unwrap_or_default(),
            vm_boot_timeout: args.vm_boot_timeout_secs.map(Duration::from_secs),
            workspace_quota: args.workspace_quota.unwrap_or_default(),
            resources: super::resources::resource_limits(&layers, &args.limits.limits)?,
            root: super::backend::sandbox_root(&layers)?,
        },
        data: serde_json::Value::Null,
    })?;
    let spec = args.model.as_deref().ok_or_else(|| {
        anyhow::anyhow!("no model: give --model PROVIDER:NAME or set `model` in the config")
    })?;
    let model = model_for(&layers, spec)?;
    let mut record = crate::session::model_record(&model, spec);
    record["config"] = args.config.clone();
    record["approve"] = serde_json::json!(format!(
        "{:?}",
        args.approve.unwrap_or_else(default_mode)
    )
    .to_lowercase());
    record["client"] = args.client.record();
    // Committed as the session's `task` payload (redactable), not kept here.
    record[crate::gate::TASK_MEMBER] = serde_json::json!(args.task);
    let session = prepared.start(
        record,
        super::ticker::quiet_while_asking(progress::observe(approver, style_of(args))),
    )?;
    Ok((session, model))
}

/// How progress is printed for `args` (`--json` or a person).
fn style_of(args: &RunArgs) -> ProgressStyle {
    if args.json {
        ProgressStyle::Json
    } else {
        ProgressStyle::Human
    }
}

/// Say which session started, first: on stderr for a person; with `--json`
/// as the first event (`start`), so a script knows the session's id before
/// anything else happens (and even if the run is killed).
pub(crate) fn announce(
    gate: &Gate,
    db: &std::path::Path,
    style: ProgressStyle,
) -> anyhow::Result<()> {
    match style {
        ProgressStyle::Human => crate::errln!(
            "stele: session {} (policy {}, log {})",
            gate.session_id(),
            gate.bundle().digest(),
            crate::terminal_safe::path(db)
        ),
        ProgressStyle::Json => super::json::line(&super::json::RunStart {
            event: super::json::StartEvent::Start,
            session: gate.session_id().to_string(),
            principal: gate.actor().principal.clone(),
            policy: gate.bundle().digest().to_string(),
            log: db.display().to_string(),
        })?,
    }
    Ok(())
}

/// Set up a session (log, policy, sandbox, tools, model), run the task, end the session.
pub fn run_task(args: &RunArgs, approver: Box<dyn Approver>) -> anyhow::Result<RunReport> {
    let (session, model) = open_for(args, approver)?;
    let gate = session.gate.clone();
    let style = style_of(args);
    announce(&gate, &session.db, style)?;
    let budget = Budget {
        max_steps: args.max_steps.unwrap_or(40),
        max_tokens: args.max_tokens,
        max_time: Duration::from_secs(args.max_seconds),
    };
    let messages = vec![Message::user_text(args.task.clone())];
    let end = match drive(
        &session,
        &model,
        messages,
        Default::default(),
        budget,
        style,
    ) {
        Ok(e) => e,
        Err(e) => {
            drop(gate);
            // Closing also sends the final checkpoint to the witnesses.
            if let Some(w) = crate::session::abort(session, &e) {
                crate::errln!(
                    "stele: {}",
                    terminal_safe(&format!("{w:#}"), Newlines::Escape)
                );
            }
            return Err(e);
        }
    };
    // The VM stops (and the guest's last closes are logged) inside the session.
    session.release_sandbox();
    finish(&gate, &end, &model, style)?;
    if !matches!(end, RunEnd::Paused(_)) {
        session.attest()?;
    }
    let id = gate.session_id().to_string();
    drop(gate);
    let db = session.db.clone();
    session.close()?;
    Ok(RunReport {
        session: id,
        end,
        db,
    })
}

/// Run the agent in an open session from `messages` until it ends.
pub(crate) fn drive(
    session: &OpenSession,
    model: &Model,
    messages: Vec<Message>,
    large: crate::payloads::LargeValues,
    budget: Budget,
    style: ProgressStyle,
) -> anyhow::Result<RunEnd> {
    // A tool that runs for more than a second shows how long it has run
    // (on a terminal; held while an approval is asked).
    let mut running: Option<super::ticker::Ticker> = None;
    let mut on = |p: crate::agent::Progress<'_>| {
        if matches!(p, crate::agent::Progress::ToolResult { .. }) {
            running = None;
        }
        progress::print(style, p);
        if let (ProgressStyle::Human, crate::agent::Progress::ToolCall { name, .. }) = (style, p) {
            running = Some(super::ticker::Ticker::start(&format!("{name} running")));
        }
    };
    let end = crate::session::drive(session, model, messages, large, budget, &mut on);
    progress::end_retry_line();
    end
}

pub(crate) fn finish(
    gate: &Gate,
    end: &RunEnd,
    model: &Model,
    style: ProgressStyle,
) -> anyhow::Result<()> {
    crate::session::record_end(gate, end)?;
    match style {
        ProgressStyle::Json => crate::outln!(
            "{}",
            crate::terminal_safe::json_line(&crate::session::end_event(gate, end))
        ),
        ProgressStyle::Human => match end {
            // The model's words, shown escaped: they cannot drive the terminal.
            RunEnd::Answered(a) | RunEnd::Stopped(a) => {
                crate::errln!("\n{}", terminal_safe(a, Newlines::Keep))
            }
            RunEnd::BudgetExhausted(w) => {
                crate::errln!("stopped: {}", terminal_safe(w, Newlines::Keep))
            }
            RunEnd::ModelDenied(w) => crate::errln!(
                "stopped: the model request was denied: {}",
                super::denial_words::model_denied(
                    gate.bundle(),
                    &gate.actor().principal,
                    &gate.actor().teams,
                    crate::provider::config::model_endpoint(&model.provider.describe())
                        .ok()
                        .as_ref(),
                    w
                )
            ),
            RunEnd::Refused { .. } => {
                crate::errln!("stopped: {}", terminal_safe(&end.detail(), Newlines::Keep))
            }
            RunEnd::Paused(w) => crate::errln!(
                "paused: {}\nthe session is kept; continue later with `stele session resume {}`",
                terminal_safe(w, Newlines::Keep),
                gate.session_id()
            ),
        },
    }
    Ok(())
}
