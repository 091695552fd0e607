//! `stele chat`: an interactive session. Each line typed is a new request in
//! the same session, sandbox and audit trail; an empty line or `/exit` ends it.

use std::io::{BufRead as _, Write as _};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::run::{agent_for, apply_config, exit_code, finish, open_for, RunArgs};
use super::setup::{principal, OpenSession};
use crate::agent::progress::{self, ProgressStyle};
use crate::agent::{Agent, Budget, RunEnd};
use crate::gate::approval::{approver_for, terminal_safe, Newlines};
use crate::gate::{ApproveMode, Gate};
use crate::provider::{Content, Message, Role, ToolResultStatus};
use crate::tools::specs::FINAL_ANSWER;

/// Run `stele chat` (the `task` argument, if given, is the first message).
pub fn run(mut args: RunArgs) -> anyhow::Result<ExitCode> {
    apply_config(&mut args)?;
    args.client = super::run::Client::Chat;
    // A chat has a person at the keyboard: ask on the terminal unless told otherwise.
    let mode = args.approve.unwrap_or(ApproveMode::Prompt);
    let (session, model) = open_for(&args, approver_for(mode, &principal(args.user.as_deref())?))?;
    let gate = session.gate.clone();
    crate::errln!(
        "stele chat: session {} — an empty line or /exit ends it",
        gate.session_id()
    );
    let agent = match agent_for(&session, &model, Default::default()) {
        Ok(a) => a,
        Err(e) => return Err(abort(session, gate, e)),
    };
    let talked = converse(&args, &agent);
    // Whatever ended the chat (the person, the model, an error), its MCP
    // servers stop inside the session, each stop logged.
    let stopped = agent.tools.shutdown();
    // The VM stops (and the guest's last closes are logged) inside the session.
    drop(agent);
    session.release_sandbox();
    let last = match (talked, stopped) {
        (Ok(last), Ok(())) => last,
        (Err(e), stopped) => {
            if let Err(s) = stopped {
                crate::errln!(
                    "stele: stopping the MCP servers: {}",
                    terminal_safe(&format!("{s:#}"), Newlines::Escape)
                );
            }
            return Err(abort(session, gate, e));
        }
        (Ok(_), Err(s)) => return Err(abort(session, gate, s.into())),
    };
    let style = style_of(&args);
    finish(&gate, &last, &model, style)?;
    if !matches!(last, RunEnd::Paused(_)) {
        session.attest()?;
    }
    drop(gate);
    session.close()?;
    Ok(exit_code(&last))
}

fn style_of(args: &RunArgs) -> ProgressStyle {
    if args.json {
        ProgressStyle::Json
    } else {
        ProgressStyle::Human
    }
}

/// The conversation: one agent run per line typed, until the person ends
/// it or a run ends in a way that stops the chat. Returns how the last run
/// ended; an error of the agent, the terminal or the runtime ends the chat.
fn converse(args: &RunArgs, agent: &Agent) -> anyhow::Result<RunEnd> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let style = style_of(args);
    let mut messages: Vec<Message> = Vec::new();
    let mut first = (!args.task.is_empty()).then(|| args.task.clone());
    let mut last = RunEnd::Stopped(String::new());
    let stdin = std::io::stdin();
    loop {
        let line = match first.take() {
            Some(t) => t,
            None => {
                crate::errout!("you> ");
                let _ = std::io::stderr().flush();
                let mut l = String::new();
                if stdin.lock().read_line(&mut l)? == 0 {
                    break;
                }
                l.trim().to_string()
            }
        };
        if line.is_empty() || line == "/exit" {
            break;
        }
        push_user(&mut messages, line);
        let budget = Budget {
            max_steps: args.max_steps.unwrap_or(40),
            max_tokens: args.max_tokens,
            max_time: Duration::from_secs(args.max_seconds),
        };
        let mut on = |p: crate::agent::Progress<'_>| progress::print(style, p);
        last = rt.block_on(agent.run(&mut messages, budget, &mut on))?;
        progress::end_retry_line();
        match &last {
            // The model's words, never terminal commands.
            RunEnd::Answered(a) | RunEnd::Stopped(a) => {
                crate::outln!("stele> {}", terminal_safe(a, Newlines::Keep))
            }
            RunEnd::Paused(_)
            | RunEnd::ModelDenied(_)
            | RunEnd::BudgetExhausted(_)
            | RunEnd::Refused { .. } => break,
        }
    }
    Ok(last)
}

/// End a chat that failed: release the sandbox, end the session as an
/// error, close it (the final checkpoint goes to the witnesses); `e` back.
fn abort(session: OpenSession, gate: Arc<Gate>, e: anyhow::Error) -> anyhow::Error {
    // The log closes only once no gate holds it.
    drop(gate);
    if let Some(w) = crate::session::abort(session, &e) {
        crate::errln!(
            "stele: {}",
            terminal_safe(&format!("{w:#}"), Newlines::Escape)
        );
    }
    e
}

/// Add the user's next message. A `final_answer` call ending the previous
/// turn is answered first: every tool call needs a result on the wire.
fn push_user(messages: &mut Vec<Message>, text: String) {
    let mut content = Vec::new();
    if let Some(last) = messages.last().filter(|m| m.role == Role::Assistant) {
        for c in &last.content {
            if let Content::ToolUse { id, name, .. } = c {
                if name == FINAL_ANSWER {
                    content.push(Content::ToolResult {
                        tool_use_id: id.clone(),
                        content: "delivered to the user".into(),
                        status: ToolResultStatus::Ok,
                    });
                }
            }
        }
    }
    content.push(Content::Text(text));
    messages.push(Message {
        role: Role::User,
        content,
    });
}
