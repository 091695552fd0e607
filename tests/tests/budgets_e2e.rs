#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The agent loop's limits through the `stele` binary: a step budget ends a
//! run that would go on (exit 2, the session ended as `timeout`), and a long
//! tool output is cut for the model while the log keeps all of it.

mod e2e_common;

use std::path::PathBuf;
use std::time::Duration;

use e2e_common::{last_session, of_session, run_bounded, run_command};
use serde_json::json;
use stele_tests::mock_model::{MockModel, Turn, Wire};
use stele_tests::{intents_closed_once, leaves_json, sandbox_available, Stele};

const LIMIT: Duration = Duration::from_secs(90);

/// A workspace, a log, the finance policy and a mock model.
struct Case {
    _dir: tempfile::TempDir,
    ws: PathBuf,
    s: Stele,
    policy: PathBuf,
    mock: MockModel,
}

impl Case {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            ws: e2e_common::workspace(dir.path()),
            s: e2e_common::setup(dir.path()),
            policy: e2e_common::policy(dir.path(), Wire::Anthropic, ""),
            mock: MockModel::start().unwrap(),
            _dir: dir,
        }
    }

    /// `stele run TASK` with `extra` flags, bounded in time.
    fn run(&self, extra: &[&str], task: &str) -> std::process::Output {
        let c = run_command(
            &self.s,
            &self.ws,
            &self.policy,
            Wire::Anthropic,
            &self.mock,
            extra,
            task,
        );
        run_bounded(c, LIMIT)
    }

    /// The last session's leaves, every intent closed once, and its id.
    fn log(&self) -> (Vec<serde_json::Value>, String) {
        let leaves = leaves_json(&self.s, &self.s.state.join("audit.db")).unwrap();
        let id = last_session(&leaves);
        intents_closed_once(&leaves, &id).unwrap();
        (leaves, id)
    }
}

#[test]
fn a_step_budget_ends_a_run_that_would_go_on() {
    if !sandbox_available("a_step_budget_ends_a_run_that_would_go_on") {
        return;
    }
    let c = Case::new();
    // A model that never finishes: it lists the receipts again and again.
    for i in 0..6 {
        c.mock.push(
            Turn::new()
                .tool_use(&format!("l{i}"), "file_list", json!({"path": "receipts"}))
                .into(),
        );
    }
    let o = c.run(&["--max-steps", "3"], "Summarise the receipts");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(10), "{err}");
    assert_eq!(c.mock.requests().len(), 3, "three model turns, no more");
    let (leaves, id) = c.log();
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
    let c = Case::new();
    let n = 300_000;
    let py = format!("import sys\nsys.stdout.write('x' * {n})\n");
    c.mock.push(
        Turn::new()
            .tool_use("big", "exec", json!({"argv": ["python3", "-c", py]}))
            .into(),
    );
    c.mock.push(
        Turn::new()
            .tool_use("done", "final_answer", json!({"answer": "done"}))
            .into(),
    );
    let o = c.run(&[], "Print a lot");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The model saw a cut output, and was told where the rest is.
    let seen = c.mock.requests()[1].text();
    assert!(seen.contains("output truncated"), "{}", &seen[..200]);
    assert!(seen.contains("audit log"));
    assert!(
        seen.matches('x').count() < n / 2,
        "the model got most of the output"
    );
    // The log's result commits to all of it.
    let (leaves, id) = c.log();
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
