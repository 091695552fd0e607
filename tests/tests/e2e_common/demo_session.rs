//! A log holding one demo-like session, for the report tests
//! (`audit_report_e2e`, `review_report_e2e`, `period_report_e2e`): the
//! demo's workspace, finance policy and scripted model, run with `stele
//! run` — minus the script's first step (listing the workspace root,
//! refused until the root is a resource: issue 13), with the outbox rule's
//! four eyes relaxed so that the flag's approver (the principal) can
//! answer, and the Acme letter removed so that it is written afresh.

use std::path::PathBuf;
use std::process::Output;

use stele_tests::{stele_bin, Stele};

/// The run's task in the report tests that do not test the task's text.
pub const TASK: &str = "Organise the receipts in receipts/ by client, total each client in \
reports/by-client.csv, and leave a short summary for Acme in outbox/.";

/// A log holding one finished session.
pub struct DemoSession {
    /// Holds everything below.
    pub d: tempfile::TempDir,
    /// The state folder and how to run `stele` in it.
    pub s: Stele,
    /// The demo's folder (workspace, policy, script, state).
    pub demo: PathBuf,
    /// The audit database.
    pub db: PathBuf,
    /// The log's signing key.
    pub key: PathBuf,
    /// The session's id, as `stele run` printed it.
    pub id: String,
}

impl DemoSession {
    /// `--db DB --key KEY`.
    pub fn log_args(&self) -> Vec<String> {
        vec![
            "--db".into(),
            self.db.display().to_string(),
            "--key".into(),
            self.key.display().to_string(),
        ]
    }
}

/// The stdout of `o`, after checking it succeeded (`what` names it).
pub fn ok(o: &Output, what: &str) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{what} failed ({:?}): {out}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// `stele-verify` beside `stele`.
pub fn verify_bin() -> PathBuf {
    let b = stele_bin().with_file_name("stele-verify");
    assert!(
        b.exists(),
        "{} is missing: build it with `cargo build -p stele-verify`",
        b.display()
    );
    b
}

/// Run the demo-like session with `task`, `env` added to `stele run`'s
/// environment.
pub fn demo_session(task: &str, env: &[(&str, &str)]) -> DemoSession {
    let d = tempfile::tempdir().unwrap();
    let s = Stele::new(&d.path().join("state"));
    let demo = d.path().join("demo");
    let _ = s.run(&["demo", "--dir", demo.to_str().unwrap()]).unwrap();
    let script = demo.join("script.json");
    let mut turns: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&script).unwrap()).unwrap();
    if turns[0].to_string().contains(r#""path":".""#) {
        turns.remove(0);
        let first = turns[0].as_object_mut().unwrap();
        first.remove("expect_tool_result_contains");
        first.remove("expect_tool_result_status");
    }
    std::fs::write(&script, serde_json::to_string(&turns).unwrap()).unwrap();
    let rules = demo.join("policy/teams/finance/finance.cedar");
    let text = std::fs::read_to_string(&rules).unwrap();
    let relaxed = text.replace("context.approval.approver != principal &&", "");
    assert_ne!(
        text, relaxed,
        "the finance template's four-eyes rule changed"
    );
    std::fs::write(&rules, relaxed).unwrap();
    let _ = std::fs::remove_file(demo.join("workspace/outbox/acme-summary.txt"));
    let (db, key) = (demo.join("state/audit.db"), demo.join("state/log.key"));
    let o = s
        .run_env(
            &[
                "run",
                "--workspace",
                demo.join("workspace").to_str().unwrap(),
                "--policy",
                demo.join("policy").to_str().unwrap(),
                "--model",
                &format!("scripted:{}", script.display()),
                "--approve",
                "allow",
                "--db",
                db.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
                task,
            ],
            env,
        )
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        o.status.success(),
        "stele run: {err}\n{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let id = err
        .split("session ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or_else(|| panic!("no session id in {err}"))
        .to_string();
    DemoSession {
        d,
        s,
        demo,
        db,
        key,
        id,
    }
}
