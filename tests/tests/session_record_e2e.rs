#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What `session.start` says about a session: the task as the person gave
//! it (a payload commitment, so it can be redacted like any body), the
//! model and the provider endpoint it was sent to, and the client that
//! opened the session.

mod e2e_common;

use std::time::Duration;

use e2e_common::{last_session, of_session, run_bounded, run_command};
use serde_json::{json, Value};
use stele_tests::mock_model::{MockModel, Turn, Wire};
use stele_tests::{leaves_json, sandbox_available};

const TASK: &str = "Total the receipts per client.\nPut the totals in reports/.";

fn payload_body(db: &std::path::Path, commit: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(commit.strip_prefix("sha256s:").unwrap())
        .unwrap();
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT body FROM payloads WHERE cmt = ?1", [raw], |r| {
        r.get(0)
    })
    .unwrap()
}

#[test]
fn session_start_records_the_task_the_model_and_the_client() {
    if !sandbox_available("session_start_records_the_task_the_model_and_the_client") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ws = e2e_common::workspace(dir.path());
    let s = e2e_common::setup(dir.path());
    let policy = e2e_common::policy(dir.path(), Wire::Anthropic, "");
    let mock = MockModel::start().unwrap();
    mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "done"}))
            .into(),
    );
    let c = run_command(&s, &ws, &policy, Wire::Anthropic, &mock, &[], TASK);
    let o = run_bounded(c, Duration::from_secs(90));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let db = s.state.join("audit.db");
    let leaves = leaves_json(&s, &db).unwrap();
    let id = last_session(&leaves);
    let start: Value = of_session(&leaves, &id)[0].clone();
    assert_eq!(start["kind"], "session.start");
    let d = &start["data"];
    assert_eq!(d["client"]["kind"], "cli", "{d}");
    assert_eq!(d["client"]["command"], "run", "{d}");
    assert_eq!(d["model"], "anthropic:claude-sonnet-4-5", "{d}");
    assert_eq!(d["model_base_url"], mock.base_url(), "{d}");
    // The task is a commitment, not a plain field.
    assert!(d.get("task").is_none(), "{d}");
    assert!(!start.to_string().contains("Total the receipts"), "{start}");
    assert_eq!(d["task_bytes"], TASK.len(), "{d}");
    let task = start["payload"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["role"] == "task")
        .expect("a task payload");
    let commit = task["commit"].as_str().unwrap();
    assert_eq!(payload_body(&db, commit).as_deref(), Some(TASK.as_bytes()));
    // Redactable like any body: erased, and the log still verifies.
    let o = s
        .run(&[
            "audit",
            "redact",
            commit,
            "--reason",
            "test: erase the task",
            "--db",
            db.to_str().unwrap(),
        ])
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(payload_body(&db, commit), None);
    let o = s
        .run(&["audit", "verify", "--db", db.to_str().unwrap()])
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}
