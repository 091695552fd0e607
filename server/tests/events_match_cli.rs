#![allow(clippy::unwrap_used, clippy::panic)]
//! The server streams the CLI's `--json` events: every event the runtime
//! prints (`progress::to_json`, `session::start_event`/`end_event`) is a
//! `stele_protocol::SessionEvent`, and serialises back to the same JSON, so
//! the protocol type and the printed shape cannot drift apart.

use std::time::Duration;

use serde_json::{json, Value};
use stele_protocol::SessionEvent;
use stele_runtime::agent::progress::{to_json, Decision, Progress};
use stele_runtime::provider::ToolResultStatus;

fn same(v: Value) {
    let typed: SessionEvent = serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("not a protocol event: {e}: {v}"));
    assert_eq!(serde_json::to_value(&typed).unwrap(), v);
}

#[test]
fn every_progress_event_is_a_protocol_event() {
    let input = json!({"path": "receipts"});
    let denial = json!({"error": "denied_by_policy", "reason": "exec of curl", "policies": ["org.x"],
        "layer": "org", "audit_entry": 7});
    let bare = json!({"error": "unknown_tool", "audit_entry": 9});
    let events = [
        Progress::Step(1),
        Progress::Text("hello"),
        Progress::ToolCall {
            id: "call-1-1",
            name: "file_list",
            input: &input,
        },
        Progress::ToolResult {
            name: "exec",
            status: ToolResultStatus::Ok,
            text: "42",
        },
        Progress::ToolResult {
            name: "exec",
            status: ToolResultStatus::Error,
            text: "no",
        },
        Progress::Decision(Decision::Denied {
            subject: "exec",
            detail: &denial,
        }),
        Progress::Decision(Decision::Denied {
            subject: "frobnicate",
            detail: &bare,
        }),
        Progress::Decision(Decision::Asked {
            shown: "Run in the sandbox: python3",
        }),
        Progress::Decision(Decision::Answered {
            shown: "x",
            outcome: stele_policy::ApprovalOutcome::Granted,
            approver: "bob",
            method: "token",
        }),
        Progress::Decision(Decision::Answered {
            shown: "x",
            outcome: stele_policy::ApprovalOutcome::Refused,
            approver: "system",
            method: "deadline",
        }),
        Progress::Retry {
            attempt: 2,
            wait: Duration::from_millis(1500),
            reason: "rate limited",
            elapsed: Duration::from_secs(3),
            patience: Duration::from_secs(300),
        },
        Progress::Stop {
            reason: "max_tokens",
            action: "continue",
            max_tokens: 4096,
        },
        Progress::Stop {
            reason: "pause_turn",
            action: "resume",
            max_tokens: 4096,
        },
        Progress::Stop {
            reason: "refusal",
            action: "end",
            max_tokens: 4096,
        },
    ];
    for p in events {
        same(to_json(p));
    }
}
