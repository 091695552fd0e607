#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The guide's minimum working team (`policies/minimal`) really runs an
//! agent: the model is asked, built-in tools are called, Python runs in the
//! sandbox over the mediated workspace, and the recipe "approve writes to a
//! folder" asks before each write to `outbox/` — and refusing the approval
//! leaves nothing written there.

mod e2e_common;

use std::time::Duration;

use e2e_common::{env, run_bounded, setup};
use serde_json::json;
use stele_tests::leaves_json;
use stele_tests::mock_model::{MockModel, Turn, Wire};

fn run_minimal(
    approve: &str,
) -> (
    tempfile::TempDir,
    std::process::Output,
    Vec<serde_json::Value>,
) {
    let d = tempfile::tempdir().unwrap();
    let s = setup(d.path());
    let ws = d.path().join("ws");
    for f in ["work", "outbox"] {
        std::fs::create_dir_all(ws.join(f)).unwrap();
    }
    stele_tests::share(&ws).unwrap();
    let mock = MockModel::start().unwrap();
    mock.push(
        Turn::new()
            .tool_use(
                "w",
                "file_write",
                json!({"path": "work/in.txt", "content": "3\n4\n"}),
            )
            .into(),
    );
    let py = "n = sum(int(l) for l in open('work/in.txt'))\nopen('work/sum.txt', 'w').write(str(n))\nprint(n)\n";
    mock.push(
        Turn::new()
            .tool_use("x", "exec", json!({"argv": ["python3", "-c", py]}))
            .into(),
    );
    mock.push(
        Turn::new()
            .tool_use(
                "o",
                "file_write",
                json!({"path": "outbox/letter.txt", "content": "total 7\n"}),
            )
            .into(),
    );
    mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "done"}))
            .into(),
    );
    // The template pins Anthropic's API; the mock on this machine is allowed in this copy.
    let policy = stele_tests::mock_template("minimal");
    let mut c = std::process::Command::new(stele_tests::stele_bin());
    c.args(["run", "--workspace", ws.to_str().unwrap()])
        .args(["--policy", policy.to_str().unwrap()])
        .args(["--user", "alice", "--model", "anthropic:claude-sonnet-4-5"])
        .args(["--approve", approve])
        .arg("Add up work/in.txt and send the total")
        .env("STELE_STATE_DIR", &s.state)
        .env("USER", "alice")
        .envs(env(Wire::Anthropic, &mock));
    let o = run_bounded(c, Duration::from_secs(180));
    let leaves = leaves_json(&s, &s.state.join("audit.db")).unwrap();
    (d, o, leaves)
}

#[test]
fn the_minimum_working_team_runs_and_asks_before_outbox_writes() {
    let (d, o, leaves) = run_minimal("allow");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let ws = d.path().join("ws");
    assert_eq!(
        std::fs::read_to_string(ws.join("work/sum.txt")).unwrap(),
        "7"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("outbox/letter.txt")).unwrap(),
        "total 7\n"
    );
    // The outbox write was asked for, granted, then allowed by the permit.
    let asked: Vec<&serde_json::Value> = leaves
        .iter()
        .filter(|l| l["kind"] == "approval.request")
        .collect();
    assert_eq!(asked.len(), 1, "{asked:#?}");
    assert_eq!(
        asked[0]["decision"]["policies"],
        json!(["dev.outbox-needs-approval"])
    );
    assert!(leaves.iter().any(|l| l["kind"] == "approval.grant"));
    assert!(
        leaves
            .iter()
            .any(|l| l["target"]["path"] == "outbox/letter.txt"
                && l["decision"]["effect"] == "allow"),
        "no allowed write to outbox/letter.txt"
    );
}

#[test]
fn refusing_the_approval_leaves_the_outbox_empty() {
    let (d, o, leaves) = run_minimal("deny");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ws = d.path().join("ws");
    assert_eq!(
        std::fs::read_to_string(ws.join("work/sum.txt")).unwrap(),
        "7"
    );
    assert!(!ws.join("outbox/letter.txt").exists());
    assert!(leaves.iter().any(|l| l["kind"] == "approval.deny"));
}
