#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The agent loop's limits through the `stele` binary: a step budget ends a
//! run that would go on (exit 2, the session ended as `timeout`), and a long
//! tool output is cut for the model while the log keeps all of it.

mod e2e_common;

use std::time::Duration;

use e2e_common::{last_session, of_session, run_bounded, run_command};
use serde_json::json;
use stele_tests::mock_model::{MockModel, Turn, Wire};
use stele_tests::{intents_closed_once, leaves_json, sandbox_available};

const LIMIT: Duration = Duration::from_secs(90);

#[test]
fn a_step_budget_ends_a_run_that_would_go_on() {
    if !sandbox_available("a_step_budget_ends_a_run_that_would_go_on") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ws = e2e_common::workspace(dir.path());
    let s = e2e_common::setup(dir.path());
    let policy = e2e_common::policy(dir.path(), Wire::Anthropic, "");
    let mock = MockModel::start().unwrap();
    // A model that never finishes: it lists the receipts again and again.
    for i in 0..6 {
        mock.push(
            Turn::new()
                .tool_use(&format!("l{i}"), "file_list", json!({"path": "receipts"}))
                .into(),
        );
    }
    let c = run_command(
        &s,
        &ws,
        &policy,
        Wire::Anthropic,
        &mock,
        &["--max-steps", "3"],
        "Summarise the receipts",
    );
    let o = run_bounded(c, LIMIT);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(mock.requests().len(), 3, "three model turns, no more");
    let leaves = leaves_json(&s, &s.state.join("audit.db")).unwrap();
    let id = last_session(&leaves);
    intents_closed_once(&leaves, &id).unwrap();
    let mine = of_session(&leaves, &id);
    let end = mine
        .iter()
        .find(|l| l["kind"] == "session.end")
        .expect("the session is ended, not left open");
    assert_eq!(end["outcome"]["status"], "timeout", "{end}");
    let calls = mine
        .iter()
        .filter(|l| l["kind"] == "tool.intent" && l["target"]["tool"] == "file_list")
        .count();
    assert_eq!(calls, 3, "each turn's tool call ran once");
}

#[test]
fn a_long_output_is_cut_for_the_model_and_kept_whole_in_the_log() {
    if !sandbox_available("a_long_output_is_cut_for_the_model_and_kept_whole_in_the_log") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ws = e2e_common::workspace(dir.path());
    let s = e2e_common::setup(dir.path());
    let policy = e2e_common::policy(dir.path(), Wire::Anthropic, "");
    let mock = MockModel::start().unwrap();
    let n = 300_000;
    let py = format!("import sys\nsys.stdout.write('x' * {n})\n");
    mock.push(
        Turn::new()
            .tool_use("big", "exec", json!({"argv": ["python3", "-c", py]}))
            .into(),
    );
    mock.push(
        Turn::new()
            .tool_use("done", "final_answer", json!({"answer": "done"}))
            .into(),
    );
    let c = run_command(&s, &ws, &policy, Wire::Anthropic, &mock, &[], "Print a lot");
    let o = run_bounded(c, LIMIT);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The model saw a cut output, and was told where the rest is.
    let seen = mock.requests()[1].text();
    assert!(seen.contains("output truncated"), "{}", &seen[..200]);
    assert!(seen.contains("audit log"));
    assert!(
        seen.matches('x').count() < n / 2,
        "the model got most of the output"
    );
    // The log's result commits to all of it.
    let leaves = leaves_json(&s, &s.state.join("audit.db")).unwrap();
    let id = last_session(&leaves);
    intents_closed_once(&leaves, &id).unwrap();
    let result = of_session(&leaves, &id)
        .into_iter()
        .find(|l| l["kind"] == "tool.result" && l["data"]["tool_use_id"] == "big")
        .unwrap();
    let largest = result["payload"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["size"].as_u64())
        .max()
        .unwrap();
    assert!(largest >= n as u64, "{result}");
}
