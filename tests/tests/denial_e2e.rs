#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The `stele` binary end to end against the mock model: a file-tool denial
//! reaches the model as a structured error naming the rule and its layer;
//! file entries of a built-in tool call name its intent; one-shot changes
//! made in the sandbox (mkdir, rename, unlink, rmdir, symlink, chmod) each
//! have one intent before and one result after.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use stele_tests::mock_model::{MockModel, Turn};
use stele_tests::{intents_closed_once, leaves_json, sandbox_available, Stele};

const KEY: &str = "sk-ant-test-denial-0123456789";
/// Linux errno values (this crate does not depend on libc).
const EACCES: i64 = 13;
const ENOTEMPTY: i64 = 39;

/// The finance bundle, with deletion under reports/ permitted to the team
/// when `tidy` (so renames and removals there can happen).
fn policy(dir: &Path, tidy: bool) -> PathBuf {
    let dst = stele_tests::template_for_mock("finance", &dir.join("policy"));
    if tidy {
        let f = dst.join("teams/finance/finance.cedar");
        let mut text = std::fs::read_to_string(&f).unwrap();
        text.push_str(
            "\n@id(\"finance.tidy-reports\")\npermit (principal in Team::\"finance\", \
             action == Action::\"file.delete\", resource is File)\n\
             when { resource.path like \"reports/*\" };\n",
        );
        std::fs::write(f, text).unwrap();
    }
    dst
}

fn workspace(dir: &Path) -> PathBuf {
    let ws = dir.join("ws");
    for d in ["receipts", "reports/audit-export"] {
        std::fs::create_dir_all(ws.join(d)).unwrap();
    }
    std::fs::write(
        ws.join("receipts/r1.txt"),
        "Client: Acme\nAmount: 10.50 EUR\n",
    )
    .unwrap();
    stele_tests::share(&ws).unwrap();
    ws
}

fn run(dir: &Path, ws: &Path, policy: &Path, mock: &MockModel, task: &str) -> Stele {
    let s = Stele::new(&dir.join("state"));
    let o = s
        .run(&["keys", "init", "--origin", "denial.stele.invalid/log"])
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = s
        .run_env(
            &[
                "run",
                "--workspace",
                ws.to_str().unwrap(),
                "--policy",
                policy.to_str().unwrap(),
                "--user",
                "alice",
                "--model",
                "anthropic:claude-sonnet-4-5",
                task,
            ],
            &[
                ("ANTHROPIC_API_KEY", KEY),
                ("ANTHROPIC_BASE_URL", &mock.base_url()),
            ],
        )
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    s
}

/// The content of tool result `id` in the `i`th request the model received.
fn tool_result(mock: &MockModel, i: usize, id: &str) -> String {
    let body = mock.requests()[i].json();
    for m in body["messages"].as_array().unwrap() {
        for c in m["content"].as_array().into_iter().flatten() {
            if c["type"] == "tool_result" && c["tool_use_id"] == id {
                return match &c["content"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
            }
        }
    }
    panic!("no tool result {id} in request {i}")
}

/// The session's leaves, checked: every intent closed once, every result
/// pointing at an earlier intent.
fn session_leaves(s: &Stele) -> (Vec<Value>, String) {
    let leaves = leaves_json(s, &s.state.join("audit.db")).unwrap();
    let id = leaves
        .iter()
        .find(|l| l["kind"] == "session.start")
        .unwrap()["session"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    intents_closed_once(&leaves, &id).unwrap();
    (leaves, id)
}

fn seq(l: &Value) -> u64 {
    l["seq"].as_u64().unwrap()
}

#[test]
fn a_file_tool_denial_reaches_the_model_with_its_rule_and_layer() {
    if !sandbox_available("a_file_tool_denial_reaches_the_model_with_its_rule_and_layer") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let ws = workspace(d.path());
    let policy = policy(d.path(), false);
    let mock = MockModel::start().unwrap();
    let blocked = "reports/audit-export/x.csv";
    mock.push(
        Turn::new()
            .tool_use(
                "w1",
                "file_write",
                json!({"path": blocked, "content": "a\n"}),
            )
            .into(),
    );
    mock.push(
        Turn::new()
            .tool_use("r1", "file_read", json!({"path": "receipts/r1.txt"}))
            .into(),
    );
    mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "done"}))
            .into(),
    );
    let s = run(d.path(), &ws, &policy, &mock, "Write the export");
    assert!(!ws.join(blocked).exists());

    // What the model received for the denied write: the rule, its layer,
    // the action, the path and the audit entry that records the refusal.
    let told: Value = serde_json::from_str(&tool_result(&mock, 1, "w1")).unwrap();
    assert_eq!(told["error"], "denied_by_policy", "{told}");
    assert_eq!(
        told["policies"],
        json!(["project.no-audit-exports"]),
        "{told}"
    );
    assert_eq!(told["layer"], "project", "{told}");
    assert_eq!(told["action"], "file.write");
    assert_eq!(told["path"], blocked);
    assert!(tool_result(&mock, 2, "r1").contains("Acme"));

    let (leaves, _) = session_leaves(&s);
    let entry = &leaves[told["audit_entry"].as_u64().unwrap() as usize];
    assert_eq!(entry["kind"], "policy.decision", "{entry}");
    assert_eq!(entry["target"]["path"], blocked);
    assert_eq!(
        entry["decision"]["policies"],
        json!(["project.no-audit-exports"])
    );
    assert_eq!(entry["decision"]["layer"], "project");

    // The file entries of each built-in tool call name its tool.intent.
    for (call, path) in [("w1", blocked), ("r1", "receipts/r1.txt")] {
        let intent = leaves
            .iter()
            .find(|l| l["kind"] == "tool.intent" && l["data"]["tool_use_id"] == call)
            .unwrap();
        let files: Vec<&Value> = leaves
            .iter()
            .filter(|l| l["target"]["path"] == path && l["data"]["op"].is_string())
            .collect();
        assert!(!files.is_empty(), "no file entries for {call}");
        for f in files {
            assert_eq!(f["data"]["tool_call"], seq(intent), "{f}");
            assert!(seq(f) > seq(intent));
        }
    }
}

#[test]
fn sandboxed_changes_have_one_intent_before_and_one_result_after() {
    if !sandbox_available("sandboxed_changes_have_one_intent_before_and_one_result_after") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let ws = workspace(d.path());
    let policy = policy(d.path(), true);
    let mock = MockModel::start().unwrap();
    let py = "\
import os
os.mkdir('reports/q1')
open('reports/q1/a.txt', 'w').write('x')
os.rename('reports/q1/a.txt', 'reports/q1/b.txt')
os.unlink('reports/q1/b.txt')
os.rmdir('reports/q1')
os.mkdir('reports/q2')
open('reports/q2/c.txt', 'w').write('y')
os.symlink('c.txt', 'reports/q2/l')
os.chmod('reports/q2/c.txt', 0o600)
try:
    os.rmdir('reports/q2')
except OSError as e:
    print('rmdir failed', e.errno)
try:
    os.unlink('receipts/r1.txt')
except OSError as e:
    print('unlink refused', e.errno)
";
    mock.push(
        Turn::new()
            .tool_use("x1", "exec", json!({"argv": ["python3", "-c", py]}))
            .into(),
    );
    mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "tidied"}))
            .into(),
    );
    let s = run(d.path(), &ws, &policy, &mock, "Tidy the reports");
    let out = tool_result(&mock, 1, "x1");
    assert!(
        out.contains(&format!("rmdir failed {}", ENOTEMPTY)),
        "{out}"
    );
    assert!(out.contains(&format!("unlink refused {}", EACCES)), "{out}");
    assert!(!ws.join("reports/q1").exists());
    assert!(ws.join("reports/q2/l").is_symlink());
    assert!(ws.join("receipts/r1.txt").exists());

    let (leaves, _) = session_leaves(&s);
    let exec = leaves.iter().find(|l| l["kind"] == "exec.start").unwrap();
    let exec_end = leaves
        .iter()
        .find(|l| l["kind"] == "exec.end")
        .map(seq)
        .unwrap();
    let changes = ["mkdir", "unlink", "rmdir", "rename", "symlink", "setattr"];
    let intents: Vec<&Value> = leaves
        .iter()
        .filter(|l| l["kind"] == "file.open")
        .filter(|l| changes.contains(&l["data"]["op"].as_str().unwrap_or("")))
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for i in &intents {
        let op = i["data"]["op"].as_str().unwrap();
        seen.insert(op);
        assert_eq!(i["data"]["exec"], seq(exec).to_string(), "{i}");
        let results: Vec<&Value> = leaves
            .iter()
            .filter(|l| l["refs"]["intent_seq"].as_u64() == Some(seq(i)))
            .collect();
        assert_eq!(results.len(), 1, "{op} at {}: {results:?}", seq(i));
        let r = results[0];
        assert_eq!(r["kind"], "file.close");
        assert_eq!(r["data"]["op"], op);
        assert!(
            seq(r) > seq(i) && seq(r) < exec_end,
            "{op}: result in order"
        );
    }
    for op in changes {
        assert!(seen.contains(op), "no {op} intent in {seen:?}");
    }
    // rename asks twice (delete the source, write the target): two intents.
    let renames = intents
        .iter()
        .filter(|i| i["data"]["op"] == "rename")
        .count();
    assert_eq!(renames, 2);
    // The failed rmdir is a result with its errno; the refused unlink is a
    // denial (a decision entry, no intent).
    let failed = leaves
        .iter()
        .find(|l| {
            l["kind"] == "file.close"
                && l["data"]["op"] == "rmdir"
                && l["outcome"]["status"] == "error"
        })
        .unwrap();
    assert_eq!(failed["outcome"]["code"], ENOTEMPTY);
    assert!(leaves.iter().any(|l| {
        l["kind"] == "policy.decision"
            && l["target"]["path"] == "receipts/r1.txt"
            && l["data"]["op"] == "unlink"
            && l["decision"]["effect"] == "deny"
    }));
}
