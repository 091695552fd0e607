//! What a person (or a machine, with `--json`) sees while the agent works.
//!
//! On a terminal: one short line per step, model text, tool call, tool
//! result, denial, configured approval answer and stop reason; while a model
//! request is being retried, one line that is updated in place (state,
//! attempt, next try, time waited of the patience). Everything from the model
//! is shown escaped (never interpreted by the terminal). Without a terminal,
//! the same lines, one per retry, with no control characters at all. With
//! `--json`: one JSON object per line on stdout, each with an `event` field
//! (`step`, `text`, `tool_call`, `tool_result`, `decision`, `retry`, `stop`,
//! `end`).

use std::time::Duration;

use serde_json::{json, Value};

use crate::gate::approval::{terminal_safe, ApprovalEvent, Approver, Newlines, Observed};
use crate::provider::ToolResultStatus;

/// One progress event.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// A model turn starts.
    Step(u32),
    /// The model said something.
    Text(&'a str),
    /// The model calls a tool.
    ToolCall {
        /// stele's id for the call.
        id: &'a str,
        /// Tool name.
        name: &'a str,
        /// Arguments.
        input: &'a serde_json::Value,
    },
    /// A tool returned.
    ToolResult {
        /// Tool name.
        name: &'a str,
        /// Ok or error (denials are errors).
        status: ToolResultStatus,
        /// What the model sees.
        text: &'a str,
    },
    /// Policy or an approver decided something a person should know.
    Decision(Decision<'a>),
    /// A model request failed and is retried after `wait`.
    Retry {
        /// The attempt that failed (1-based).
        attempt: u32,
        /// The wait before the next attempt.
        wait: Duration,
        /// Why it failed.
        reason: &'a str,
        /// Time since the first failed attempt.
        elapsed: Duration,
        /// How long failures are ridden out before the run pauses.
        patience: Duration,
    },
    /// A reply stopped for a reason other than finishing its turn or calling tools.
    Stop {
        /// The stop reason (`max_tokens`, `refusal`, `content_filter`, `pause_turn`).
        reason: &'a str,
        /// What stele does: `continue` (limit raised, model asked to go on), `resume`
        /// (the paused turn is sent again), `end`.
        action: &'a str,
        /// The output-token limit the reply had.
        max_tokens: u32,
    },
}

/// A decision reported as progress.
#[derive(Debug, Clone, Copy)]
pub enum Decision<'a> {
    /// An action was refused (by policy, or because its approval was refused).
    Denied {
        /// What was refused: a tool name, or `model.request`.
        subject: &'a str,
        /// The structured denial (`reason`, `policies`, `layer`, `audit_entry`).
        detail: &'a Value,
    },
    /// An approver is asked; `shown` is exactly what it sees (and what the
    /// log's approval entry hashes).
    Asked {
        /// The text shown.
        shown: &'a str,
    },
    /// An approver answered.
    Answered {
        /// The text that was shown.
        shown: &'a str,
        /// Granted or refused.
        outcome: stele_policy::ApprovalOutcome,
        /// Who answered.
        approver: &'a str,
        /// How (`tty`, `flag`).
        method: &'a str,
    },
}

/// How progress is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressStyle {
    /// Short human lines on stderr.
    Human,
    /// One JSON object per line on stdout.
    Json,
}

/// `s` on one line, escaped for a terminal, cut to `n` characters.
fn short(s: &str, n: usize) -> String {
    let one_line = terminal_safe(&s.replace('\n', " ⏎ "), Newlines::Escape);
    if one_line.chars().count() <= n {
        one_line
    } else {
        format!("{}…", one_line.chars().take(n).collect::<String>())
    }
}

/// The structured denial in a tool result's text, if it is one: a policy's, or stele's own
/// refusal of a call it does not run (unknown tool, cut or invalid input).
pub fn denial_in(text: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(text).ok()?;
    let kind = v.get("error").and_then(Value::as_str)?;
    let refused = matches!(
        kind,
        "denied_by_policy" | "unknown_tool" | "input_cut" | "input_not_object"
    ) && v.get("audit_entry").is_some();
    refused.then_some(v)
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

fn outcome_name(o: stele_policy::ApprovalOutcome) -> &'static str {
    match o {
        stele_policy::ApprovalOutcome::Granted => "granted",
        stele_policy::ApprovalOutcome::Refused => "refused",
    }
}

/// The event as one JSON object.
pub fn to_json(p: Progress<'_>) -> Value {
    match p {
        Progress::Step(n) => json!({"event": "step", "n": n}),
        Progress::Text(t) => json!({"event": "text", "text": t}),
        Progress::ToolCall { id, name, input } => {
            json!({"event": "tool_call", "id": id, "tool": name, "input": input})
        }
        Progress::ToolResult { name, status, text } => {
            json!({"event": "tool_result", "tool": name, "status": status, "text": text})
        }
        Progress::Decision(Decision::Denied { subject, detail }) => json!({
            "event": "decision", "decision": "deny", "subject": subject,
            "reason": detail.get("reason"), "policies": detail.get("policies"),
            "layer": detail.get("layer"), "audit_entry": detail.get("audit_entry"),
        }),
        Progress::Decision(Decision::Asked { shown }) => {
            json!({"event": "decision", "decision": "ask", "shown": shown})
        }
        Progress::Decision(Decision::Answered {
            outcome,
            approver,
            method,
            ..
        }) => json!({
            "event": "decision", "decision": outcome_name(outcome),
            "approver": approver, "method": method,
        }),
        Progress::Retry {
            attempt,
            wait,
            reason,
            elapsed,
            patience,
        } => {
            let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            let next = time::OffsetDateTime::now_utc() + wait;
            json!({
                "event": "retry", "state": "waiting", "attempt": attempt,
                "wait_ms": ms(wait), "reason": reason,
                "elapsed_ms": ms(elapsed), "patience_ms": ms(patience),
                "next_try_at": next.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            })
        }
        Progress::Stop {
            reason,
            action,
            max_tokens,
        } => json!({"event": "stop", "reason": reason, "action": action, "max_tokens": max_tokens}),
    }
}

/// The event as a short line for a terminal, or nothing when the person has
/// already seen it (a prompt they answered, a denial printed as a decision).
pub fn to_line(p: Progress<'_>) -> Option<String> {
    Some(match p {
        Progress::Step(n) => format!("── step {n}"),
        Progress::Text(t) => format!("   model: {}", short(t, 160)),
        Progress::ToolCall { name, input, .. } => {
            format!(
                "   → {} {}",
                short(name, 60),
                short(&input.to_string(), 120)
            )
        }
        // A denial was printed as its decision, just before.
        Progress::ToolResult { text, .. } if denial_in(text).is_some() => return None,
        Progress::ToolResult { name, status, text } => {
            let mark = match status {
                ToolResultStatus::Ok => "✓",
                ToolResultStatus::Error => "✗",
            };
            format!("   {mark} {}: {}", short(name, 60), short(text, 120))
        }
        Progress::Decision(Decision::Denied { subject, detail }) => {
            let reason = detail.get("reason").and_then(Value::as_str).unwrap_or("");
            let what = match detail.get("error").and_then(Value::as_str) {
                Some("denied_by_policy") | None => "denied",
                Some(_) => "refused",
            };
            format!("   ✗ {what} {}: {}", short(subject, 60), short(reason, 160))
        }
        // The prompt itself shows the question; a configured answer is
        // reported once, with its answer.
        Progress::Decision(Decision::Asked { .. }) => return None,
        Progress::Decision(Decision::Answered { method: "tty", .. }) => return None,
        Progress::Decision(Decision::Answered {
            shown,
            outcome,
            approver,
            ..
        }) => format!(
            "   ? approval {} by {}: {}",
            outcome_name(outcome),
            short(approver, 60),
            short(shown.lines().next().unwrap_or(""), 120)
        ),
        Progress::Retry {
            attempt,
            wait,
            reason,
            elapsed,
            patience,
        } => format!(
            "   … waiting for the model: attempt {attempt} failed ({}); next try in {:.1}s, waited {} of {}",
            short(reason, 100),
            wait.as_secs_f64(),
            clock(elapsed),
            clock(patience)
        ),
        Progress::Stop {
            reason,
            action,
            max_tokens,
        } => match action {
            "continue" => format!(
                "   ! the reply was cut at the output limit ({max_tokens} tokens): asking the model to go on with a higher limit"
            ),
            "resume" => format!("   ! the provider paused the turn ({}); continuing it", short(reason, 40)),
            _ => format!("   ! the model stopped: {}", short(reason, 40)),
        },
    })
}

/// Whether a retry line is on the terminal, to be updated or ended.
static RETRY_LINE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Print one event.
pub fn print(style: ProgressStyle, p: Progress<'_>) {
    use std::io::IsTerminal as _;
    use std::sync::atomic::Ordering;
    match style {
        ProgressStyle::Json => crate::outln!("{}", crate::terminal_safe::json_line(&to_json(p))),
        ProgressStyle::Human => {
            let Some(line) = to_line(p) else { return };
            let tty = std::io::stderr().is_terminal();
            if tty && matches!(p, Progress::Retry { .. }) {
                // One line, rewritten in place: carriage return, erase line.
                crate::errout!("\r\x1b[2K{line}");
                RETRY_LINE.store(true, Ordering::Relaxed);
                return;
            }
            if RETRY_LINE.swap(false, Ordering::Relaxed) {
                crate::errln!();
            }
            crate::errln!("{line}");
        }
    }
}

/// End a retry line left open on the terminal (before printing anything else).
pub fn end_retry_line() {
    if RETRY_LINE.swap(false, std::sync::atomic::Ordering::Relaxed) {
        crate::errln!();
    }
}

/// `inner`, with its questions and answers printed as decision events.
pub fn observe(inner: Box<dyn Approver>, style: ProgressStyle) -> Box<dyn Approver> {
    Box::new(Observed::new(inner, move |e: ApprovalEvent<'_>| {
        print(style, Progress::Decision(Decision::from(e)));
    }))
}

impl<'a> From<ApprovalEvent<'a>> for Decision<'a> {
    /// An approver's question or answer, as the decision progress reports.
    fn from(e: ApprovalEvent<'a>) -> Self {
        match e {
            ApprovalEvent::Asked { shown } => Decision::Asked { shown },
            ApprovalEvent::Answered { shown, answer } => Decision::Answered {
                shown,
                outcome: answer.outcome,
                approver: &answer.approver,
                method: &answer.method,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn model_text_cannot_drive_the_terminal() {
        let line = to_line(Progress::Text("hi\x1b]0;pwned\x07\x1b[2J\nthere")).unwrap();
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(line.contains("\\u{1b}]0;pwned"), "{line}");
        let v = json!({"cmd": "\u{9b}2J"});
        let line = to_line(Progress::ToolCall {
            id: "call-1-1",
            name: "exec\x1b[1m",
            input: &v,
        })
        .unwrap();
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }

    #[test]
    fn denials_are_one_line_and_json_events_are_typed() {
        let denial = r#"{"error":"denied_by_policy","policies":["p1"],"layer":"org","reason":"exec of curl","audit_entry":7}"#;
        let detail = denial_in(denial).unwrap();
        let d = Progress::Decision(Decision::Denied {
            subject: "exec",
            detail: &detail,
        });
        assert_eq!(to_line(d).unwrap(), "   ✗ denied exec: exec of curl");
        let r = Progress::ToolResult {
            name: "exec",
            status: ToolResultStatus::Error,
            text: denial,
        };
        assert!(to_line(r).is_none(), "not printed twice");
        let j = to_json(d);
        assert_eq!(j["event"], "decision");
        assert_eq!(j["decision"], "deny");
        assert_eq!(j["policies"][0], "p1");
        let retry = to_json(Progress::Retry {
            attempt: 1,
            wait: Duration::from_millis(1500),
            reason: "rate limited",
            elapsed: Duration::from_millis(200),
            patience: Duration::from_secs(300),
        });
        assert_eq!(retry["event"], "retry");
        assert_eq!(retry["attempt"], 1);
        assert_eq!(retry["wait_ms"], 1500);
        assert_eq!(retry["elapsed_ms"], 200);
        assert_eq!(retry["patience_ms"], 300_000);
        assert_eq!(retry["reason"], "rate limited");
        assert!(retry["next_try_at"].as_str().unwrap().ends_with('Z'));
        let line = to_line(Progress::Retry {
            attempt: 3,
            wait: Duration::from_secs(8),
            reason: "network error: connection refused\x1b[31m",
            elapsed: Duration::from_secs(75),
            patience: Duration::from_secs(300),
        })
        .unwrap();
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(
            line.contains("attempt 3")
                && line.contains("next try in 8.0s")
                && line.contains("1:15 of 5:00"),
            "{line}"
        );
        assert!(denial_in("plain output").is_none());
    }
}
