//! A server session's events printed as `stele run` prints its own: the
//! same human lines (through the runtime's progress printer, so model text
//! and tool output are escaped the same way) or, with `--json`, the same
//! JSON lines. Events only a server has (a step waiting in the approvals
//! queue) get lines of their own.

use std::time::Duration;

use serde_json::{json, Value};
use stele_protocol::{DecisionEvent, SessionEvent, StopAction, ToolStatus};
use stele_runtime::agent::progress::{self, Decision, Progress, ProgressStyle};
use stele_runtime::gate::approval::{terminal_safe, Newlines};
use stele_runtime::provider::ToolResultStatus;
use stele_runtime::{errln, outln};

/// How a session ended, as its `end` event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `answered` or `stopped`.
    Done,
    /// `budget_exhausted`.
    Budget,
    /// `model_denied`.
    ModelDenied,
    /// `refused`.
    Refused,
    /// `paused` (resumable).
    Paused,
    /// An outcome this stele does not know.
    Other,
}

impl Outcome {
    /// The outcome named in an `end` event.
    pub fn of(name: &str) -> Outcome {
        match name {
            "answered" | "stopped" => Outcome::Done,
            "budget_exhausted" => Outcome::Budget,
            "model_denied" => Outcome::ModelDenied,
            "refused" => Outcome::Refused,
            "paused" => Outcome::Paused,
            _ => Outcome::Other,
        }
    }

    /// The exit status `stele run` gives the same end (docs/exit-codes.md).
    pub fn exit_code(self) -> u8 {
        use stele_runtime::cli::exit;
        match self {
            Outcome::Done => exit::OK,
            Outcome::Budget => exit::BUDGET,
            Outcome::ModelDenied => exit::MODEL_DENIED,
            Outcome::Refused => exit::MODEL_REFUSED,
            Outcome::Paused => exit::PAUSED,
            Outcome::Other => exit::FAILURE,
        }
    }
}

/// Prints one session's events in order; remembers what a later line needs.
#[derive(Debug)]
pub struct Printer {
    style: ProgressStyle,
    /// The server's URL, for the lines that say where to act.
    server: String,
    /// The last question asked (the answer line quotes it).
    last_shown: String,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

impl Printer {
    /// A printer in `style` for a session on `server`.
    pub fn new(style: ProgressStyle, server: &str) -> Printer {
        Printer {
            style,
            server: server.trim_end_matches('/').to_string(),
            last_shown: String::new(),
        }
    }

    /// Print an event the server sent (its JSON text); returns it typed, or
    /// `None` when this stele does not know it (printed as it came with
    /// `--json`, named on a line otherwise).
    pub fn event(&mut self, raw: &str) -> Option<SessionEvent> {
        let value: Option<Value> = serde_json::from_str(raw).ok();
        let typed = value
            .as_ref()
            .and_then(|v| serde_json::from_value::<SessionEvent>(v.clone()).ok());
        match (self.style, &value) {
            (ProgressStyle::Json, Some(v)) => {
                outln!("{}", stele_runtime::terminal_safe::json_line(v))
            }
            (ProgressStyle::Json, None) => {
                outln!("{}", stele_runtime::terminal_safe::json_text(raw))
            }
            (ProgressStyle::Human, _) => match &typed {
                Some(e) => self.human(e),
                None => errln!(
                    "   (an event this stele does not know: {})",
                    stele_runtime::terminal_safe::line(&raw.chars().take(120).collect::<String>())
                ),
            },
        }
        typed
    }

    fn human(&mut self, e: &SessionEvent) {
        match e {
            SessionEvent::Start {
                session,
                principal,
                policy,
                ..
            } => errln!(
                "stele: session {} on {} for {} (policy {})",
                terminal_safe(session, Newlines::Escape),
                terminal_safe(&self.server, Newlines::Escape),
                terminal_safe(principal, Newlines::Escape),
                terminal_safe(policy, Newlines::Escape)
            ),
            SessionEvent::Step { n } => progress::print(self.style, Progress::Step(*n)),
            SessionEvent::Text { text } => progress::print(self.style, Progress::Text(text)),
            SessionEvent::ToolCall { id, tool, input } => progress::print(
                self.style,
                Progress::ToolCall {
                    id,
                    name: tool,
                    input,
                },
            ),
            SessionEvent::ToolResult { tool, status, text } => progress::print(
                self.style,
                Progress::ToolResult {
                    name: tool,
                    status: match status {
                        ToolStatus::Ok => ToolResultStatus::Ok,
                        ToolStatus::Error => ToolResultStatus::Error,
                    },
                    text,
                },
            ),
            SessionEvent::Decision(d) => self.decision(d),
            SessionEvent::ApprovalRequested {
                approval_id,
                shown,
                requester,
                deadline,
                ..
            } => errln!(
                "   ? waiting for approval {} in the server's approvals queue (asked for {}, \
                 refused unanswered at {}):\n{}\n   an approver answers it at {}/api/v1/approvals",
                terminal_safe(approval_id, Newlines::Escape),
                terminal_safe(requester, Newlines::Escape),
                terminal_safe(deadline, Newlines::Escape),
                indent(&terminal_safe(shown, Newlines::Keep)),
                terminal_safe(&self.server, Newlines::Escape)
            ),
            SessionEvent::Retry {
                attempt,
                wait_ms,
                reason,
                elapsed_ms,
                patience_ms,
                ..
            } => progress::print(
                self.style,
                Progress::Retry {
                    attempt: *attempt,
                    wait: ms(*wait_ms),
                    reason,
                    elapsed: ms(*elapsed_ms),
                    patience: ms(*patience_ms),
                },
            ),
            SessionEvent::Stop {
                reason,
                action,
                max_tokens,
            } => progress::print(
                self.style,
                Progress::Stop {
                    reason,
                    action: match action {
                        StopAction::Continue => "continue",
                        StopAction::Resume => "resume",
                        StopAction::End => "end",
                    },
                    max_tokens: *max_tokens,
                },
            ),
            SessionEvent::End {
                session,
                outcome,
                detail,
                ..
            } => {
                progress::end_retry_line();
                let detail = terminal_safe(detail, Newlines::Keep);
                match Outcome::of(outcome) {
                    Outcome::Done => errln!("\n{detail}"),
                    Outcome::ModelDenied => {
                        errln!("stopped: the model request was denied: {detail}")
                    }
                    Outcome::Budget | Outcome::Refused | Outcome::Other => {
                        errln!("stopped: {detail}")
                    }
                    Outcome::Paused => errln!(
                        "paused: {detail}\nsession {} is kept on the server, paused and resumable",
                        terminal_safe(session, Newlines::Escape)
                    ),
                }
            }
        }
    }

    fn decision(&mut self, d: &DecisionEvent) {
        let p = match d {
            DecisionEvent::Deny {
                subject,
                reason,
                policies,
                layer,
                audit_entry,
            } => {
                let detail = json!({
                    "reason": reason, "policies": policies, "layer": layer,
                    "audit_entry": audit_entry,
                });
                progress::print(
                    self.style,
                    Progress::Decision(Decision::Denied {
                        subject,
                        detail: &detail,
                    }),
                );
                return;
            }
            DecisionEvent::Ask { shown } => {
                self.last_shown = shown.clone();
                return;
            }
            DecisionEvent::Granted { approver, method } => {
                (stele_policy::ApprovalOutcome::Granted, approver, method)
            }
            DecisionEvent::Refused { approver, method } => {
                (stele_policy::ApprovalOutcome::Refused, approver, method)
            }
        };
        let (outcome, approver, method) = p;
        progress::print(
            self.style,
            Progress::Decision(Decision::Answered {
                shown: &self.last_shown,
                outcome,
                approver,
                // The server's answers come over the API (`web`, `token`):
                // never a prompt this terminal already showed.
                method: if method == "tty" { "remote" } else { method },
            }),
        );
    }
}

/// Each line of `text` indented under the line that introduces it.
fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("     | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_map_to_the_exit_codes_of_stele_run() {
        use stele_runtime::cli::exit;
        for (name, code) in [
            ("answered", exit::OK),
            ("stopped", exit::OK),
            ("budget_exhausted", exit::BUDGET),
            ("model_denied", exit::MODEL_DENIED),
            ("refused", exit::MODEL_REFUSED),
            ("paused", exit::PAUSED),
            ("something new", exit::FAILURE),
        ] {
            assert_eq!(Outcome::of(name).exit_code(), code, "{name}");
        }
    }

    #[test]
    fn a_question_is_indented_and_escaped() {
        let shown = indent(&terminal_safe("Run rm\n\x1b]0;x\x07", Newlines::Keep));
        assert!(shown.starts_with("     | Run rm\n     | "), "{shown}");
        assert!(!shown.contains('\x1b'), "{shown:?}");
    }
}
