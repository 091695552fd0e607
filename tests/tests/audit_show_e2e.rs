#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `stele audit show` reads as a reviewer needs it: filtered by session the
//! id is said once (not on every line), a `file.open` line says which action
//! was decided (read, write, list), an approval line who answered and how,
//! a decision line the rule that decided it (or that no rule permits it).
//! `session show` reads the same way.

mod e2e_common;

use std::time::Duration;

use e2e_common::{policy, run_bounded, run_command, setup, workspace, EXEC_NEEDS_APPROVAL};
use serde_json::json;
use stele_tests::mock_model::{MockModel, Turn, Wire};
use stele_tests::{leaves_json, sandbox_available};

fn text(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn audit_show_says_the_action_the_approver_and_the_rule() {
    if !sandbox_available("audit_show_says_the_action_the_approver_and_the_rule") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let s = setup(d.path());
    let ws = workspace(d.path());
    std::fs::create_dir_all(ws.join("hr")).unwrap();
    std::fs::write(ws.join("hr/salaries.txt"), "secret\n").unwrap();
    let bundle = policy(d.path(), Wire::Anthropic, EXEC_NEEDS_APPROVAL);
    let mock = MockModel::start().unwrap();
    for t in [
        Turn::new().tool_use("r", "file_read", json!({"path": "receipts/r1.txt"})),
        Turn::new().tool_use(
            "w",
            "file_write",
            json!({"path": "reports/t.csv", "content": "x\n"}),
        ),
        Turn::new().tool_use("h", "file_read", json!({"path": "hr/salaries.txt"})),
        Turn::new().tool_use("x", "exec", json!({"argv": ["python3", "-c", "print(1)"]})),
        Turn::new().tool_use("f", "final_answer", json!({"answer": "done"})),
    ] {
        mock.push(t.into());
    }
    let c = run_command(
        &s,
        &ws,
        &bundle,
        Wire::Anthropic,
        &mock,
        &["--approve", "allow"],
        "Work",
    );
    let o = run_bounded(c, Duration::from_secs(180));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let leaves = leaves_json(&s, &s.state.join("audit.db")).unwrap();
    let id = leaves
        .iter()
        .rev()
        .find(|l| l["kind"] == "session.start")
        .unwrap()["session"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Filtered by session: the id once, at the top; lines carry #n only.
    let shown = text(&s.run(&["audit", "show", "--session", &id]).unwrap());
    let mut lines = shown.lines();
    assert_eq!(lines.next().unwrap(), format!("session {id}"));
    let body: Vec<&str> = lines.collect();
    assert!(body.len() > 5, "{shown}");
    assert!(
        body.iter().all(|l| !l.contains(&id)),
        "the id repeated: {shown}"
    );
    assert!(body.iter().any(|l| l.contains("  #1  ")), "{shown}");

    // file.open lines say which action was decided, and by which rule.
    let read = body
        .iter()
        .find(|l| l.contains("file.open") && l.contains("path=receipts/r1.txt"))
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(read.contains("action=file.read"), "{read}");
    assert!(read.contains("allow by finance.read-receipts"), "{read}");
    let write = body
        .iter()
        .find(|l| l.contains("file.open") && l.contains("path=reports/t.csv"))
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(write.contains("action=file.write"), "{write}");
    assert!(write.contains("allow by finance.write-reports"), "{write}");
    // A denial names its rule, or says that none permits it.
    let denied = body
        .iter()
        .find(|l| l.contains("path=hr/salaries.txt") && l.contains("deny"))
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(
        denied.contains("deny by ") || denied.contains("deny (no rule permits it)"),
        "{denied}"
    );
    // The approval: who answered, how, and for which entry.
    let grant = body
        .iter()
        .find(|l| l.contains("approval.grant"))
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(
        grant.contains("granted by alice (flag) for entry "),
        "{grant}"
    );
    let asked = body
        .iter()
        .find(|l| l.contains("approval.request"))
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(asked.contains("by test.exec-needs-approval"), "{asked}");

    // Unfiltered: each line names its session.
    let all = text(&s.run(&["audit", "show"]).unwrap());
    assert!(
        all.lines()
            .filter(|l| l.contains("file.open"))
            .all(|l| l.contains(&format!("session={id}#"))),
        "{all}"
    );
    // session show: the same lines, the id said once.
    let ss = text(&s.run(&["session", "show", &id]).unwrap());
    assert_eq!(ss.matches(&id).count(), 1, "{ss}");
    assert!(ss.contains("action=file.write"), "{ss}");

    filters_answer_a_reviewers_questions(&s, &leaves);
}

/// The seqs `stele audit show ARGS --json` prints.
fn shown_seqs(s: &stele_tests::Stele, args: &[&str]) -> Vec<u64> {
    let mut all = vec!["audit", "show", "--json"];
    all.extend_from_slice(args);
    text(&s.run(&all).unwrap())
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// `--path`, `--decision`, `--principal`, `--since`, `--until` keep exactly
/// the entries the leaves say they should (computed here from the leaves,
/// not by stele), and a bad value is named before anything is read.
fn filters_answer_a_reviewers_questions(s: &stele_tests::Stele, leaves: &[serde_json::Value]) {
    let path_of = |l: &serde_json::Value| l["target"]["path"].as_str().map(str::to_string);
    let expect = |f: &dyn Fn(&serde_json::Value) -> bool| -> Vec<u64> {
        leaves
            .iter()
            .filter(|l| f(l))
            .map(|l| l["seq"].as_u64().unwrap())
            .collect()
    };
    // Everything about hr/ (the denied read), by whole path components.
    let hr = expect(&|l| path_of(l).is_some_and(|p| p == "hr" || p.starts_with("hr/")));
    assert!(!hr.is_empty());
    assert_eq!(shown_seqs(s, &["--path", "hr/"]), hr);
    assert!(shown_seqs(s, &["--path", "h"]).is_empty());
    // Every denial.
    let denied = expect(&|l| l["decision"]["effect"] == "deny");
    assert!(!denied.is_empty());
    assert_eq!(shown_seqs(s, &["--decision", "deny"]), denied);
    // Reads under receipts/ allowed for the session's principal.
    let who = leaves
        .iter()
        .find(|l| l["kind"] == "session.start")
        .unwrap()["actor"]["principal"]
        .as_str()
        .unwrap()
        .to_string();
    let reads = expect(&|l| {
        l["kind"] == "file.open"
            && l["actor"]["principal"] == who.as_str()
            && l["decision"]["effect"] == "allow"
            && path_of(l).is_some_and(|p| p.starts_with("receipts/"))
    });
    assert!(!reads.is_empty());
    assert_eq!(
        shown_seqs(
            s,
            &[
                "--kind",
                "file.open",
                "--principal",
                &who,
                "--decision",
                "allow",
                "--path",
                "receipts"
            ]
        ),
        reads
    );
    assert!(shown_seqs(s, &["--principal", "mallory"]).is_empty());
    // A time window: from the session's start up to (not including) its end.
    let ts = |kind: &str| {
        leaves.iter().find(|l| l["kind"] == kind).unwrap()["ts"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (start, end) = (ts("session.start"), ts("session.end"));
    let window = expect(&|l| {
        let t = l["ts"].as_str().unwrap();
        t >= start.as_str() && t < end.as_str() && l["seq"].as_u64().unwrap() < leaves.len() as u64
    });
    assert_eq!(shown_seqs(s, &["--since", &start, "--until", &end]), window);
    assert!(shown_seqs(s, &["--since", "2999-01-01"]).is_empty());
    // Bad values are named, exit non-zero, and nothing is read or recorded.
    let reads = |s: &stele_tests::Stele| {
        leaves_json(s, &s.state.join("audit.db"))
            .unwrap()
            .iter()
            .filter(|l| l["kind"] == "audit.read")
            .count()
    };
    let before = reads(s);
    for (flag, value) in [
        ("--since", "last tuesday"),
        ("--until", "2026-13-01"),
        ("--decision", "maybe"),
        ("--path", "/etc/passwd"),
        ("--path", "receipts/../hr"),
        ("--kind", "file.opne"),
    ] {
        let o = s.run(&["audit", "show", flag, value]).unwrap();
        assert!(!o.status.success(), "{flag} {value} was accepted");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(flag), "{flag} {value}: {err}");
    }
    // `leaves_json` itself records one read; the refused commands none.
    assert_eq!(reads(s), before + 1);
}
