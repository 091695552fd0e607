//! What happens in a session, as events: one JSON object per line from
//! `stele run|chat|session resume --json`, and one server-sent event each
//! from `GET /api/v1/sessions/{id}/events`, tagged by `event`.

use serde::{Deserialize, Serialize};

/// A tool result's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ToolStatus {
    /// It ran.
    Ok,
    /// It failed or was refused.
    Error,
}

/// What stele does about a reply that stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum StopAction {
    /// The limit is raised and the model asked to go on.
    Continue,
    /// The paused turn is sent again.
    Resume,
    /// The run ends.
    End,
}

/// A decision a person should know about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum DecisionEvent {
    /// An action was refused (by policy, or because its approval was refused).
    Deny {
        /// What: a tool name, or `model.request`.
        subject: String,
        /// In words: the action and the rule that decided it.
        reason: Option<String>,
        /// The ids of the rules that decided it.
        policies: Option<Vec<String>>,
        /// The layer that decided (`org`, `team:NAME`, `project`).
        layer: Option<String>,
        /// The log entry recording the refusal.
        audit_entry: Option<u64>,
    },
    /// An approver is asked; `shown` is exactly what it sees.
    Ask {
        /// The text shown.
        shown: String,
    },
    /// The approver granted it.
    Granted {
        /// Who answered.
        approver: String,
        /// How (`tty`, `flag`, `token`).
        method: String,
    },
    /// The approver refused it.
    Refused {
        /// Who answered.
        approver: String,
        /// How.
        method: String,
    },
}

/// One event of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SessionEvent {
    /// The session started: the first event.
    Start {
        /// Session id (`stele session show ID`).
        session: String,
        /// The person it runs for.
        principal: String,
        /// The policy bundle's digest.
        policy: String,
        /// The audit database.
        log: String,
    },
    /// A model turn starts.
    Step {
        /// Its number (1-based).
        n: u32,
    },
    /// The model said something.
    Text {
        /// What it said.
        text: String,
    },
    /// The model calls a tool.
    ToolCall {
        /// stele's id for the call.
        id: String,
        /// The tool.
        tool: String,
        /// Its arguments.
        input: serde_json::Value,
    },
    /// A tool returned.
    ToolResult {
        /// The tool.
        tool: String,
        /// Ok or error (refusals are errors).
        status: ToolStatus,
        /// What the model sees.
        text: String,
    },
    /// Policy or an approver decided something.
    Decision(DecisionEvent),
    /// A step waits for a person's answer through the server's approvals queue.
    ApprovalRequested {
        /// `POST /api/v1/approvals/{approval_id}` answers it.
        approval_id: String,
        /// Exactly what the approver is shown.
        shown: String,
        /// SHA-256 (hex) of `shown`; the answer must echo it.
        shown_sha256: String,
        /// The person whose session asks.
        requester: String,
        /// When it is refused unanswered (RFC 3339).
        deadline: String,
    },
    /// A model request failed and is tried again.
    Retry {
        /// `waiting`.
        state: String,
        /// The attempt that failed (1-based).
        attempt: u32,
        /// The wait before the next attempt.
        wait_ms: u64,
        /// Why it failed.
        reason: String,
        /// Time since the first failed attempt.
        elapsed_ms: u64,
        /// How long failures are ridden out before the run pauses.
        patience_ms: u64,
        /// When the next attempt is made (RFC 3339).
        next_try_at: String,
    },
    /// A reply stopped for a reason other than finishing or calling tools.
    Stop {
        /// `max_tokens`, `refusal`, `content_filter`, `pause_turn`.
        reason: String,
        /// What stele does about it.
        action: StopAction,
        /// The output-token limit the reply had.
        max_tokens: u32,
    },
    /// The run ended: the last event.
    End {
        /// Session id.
        session: String,
        /// How: `answered`, `stopped`, `budget_exhausted`, `paused`, `model_denied`, `refused`.
        outcome: String,
        /// The answer, or why it stopped.
        detail: String,
        /// `stele session resume SESSION` continues it.
        resumable: bool,
    },
}

impl SessionEvent {
    /// The last event of a run.
    pub fn is_end(&self) -> bool {
        matches!(self, SessionEvent::End { .. })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn events_keep_their_field_names_and_round_trip() {
        let text = r#"{"event":"decision","decision":"deny","subject":"exec","reason":"exec of curl","policies":["org.x"],"layer":"org","audit_entry":7}"#;
        let deny: SessionEvent = serde_json::from_str(text).unwrap();
        assert_eq!(
            deny,
            SessionEvent::Decision(DecisionEvent::Deny {
                subject: "exec".into(),
                reason: Some("exec of curl".into()),
                policies: Some(vec!["org.x".into()]),
                layer: Some("org".into()),
                audit_entry: Some(7),
            })
        );
        let back: serde_json::Value = serde_json::to_value(&deny).unwrap();
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(text).unwrap()
        );
        assert_eq!(
            serde_json::to_value(SessionEvent::Step { n: 3 }).unwrap(),
            serde_json::json!({"event": "step", "n": 3})
        );
        let ask = serde_json::json!({"event": "approval_requested", "approval_id": "a-1",
            "shown": "Run x", "shown_sha256": "00", "requester": "alice",
            "deadline": "2026-01-01T00:00:00Z"});
        let ev: SessionEvent = serde_json::from_value(ask.clone()).unwrap();
        assert_eq!(serde_json::to_value(&ev).unwrap(), ask);
    }

    #[test]
    fn unknown_events_and_missing_fields_are_refused() {
        for bad in [
            r#"{"event":"launch_missiles"}"#,
            r#"{"event":"step"}"#,
            r#"{"event":"decision","decision":"maybe"}"#,
            r#"{"n":1}"#,
        ] {
            assert!(serde_json::from_str::<SessionEvent>(bad).is_err(), "{bad}");
        }
    }
}
