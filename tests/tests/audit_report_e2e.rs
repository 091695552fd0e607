#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `stele audit report` on a live log: the reviewer's report of a real
//! session (the demo's workspace, policy and scripted model, run with
//! `stele run`) names the files read, the denial with its rule and the
//! approval with its approver and the exact text shown; it is the report
//! `stele-verify --report` gives for an export of the same session (the
//! same JSON apart from the verification facts); text from the log is
//! quoted, never markup or a line of its own; an unknown session fails
//! naming it; a closed pipe is no panic.
//!
//! Needs `target/<profile>/stele` and `stele-verify` (`cargo build -p
//! stele-runtime --bin stele -p stele-verify`).

mod e2e_common;

use std::process::{Command, Output, Stdio};

use e2e_common::demo_session::{ok, verify_bin, DemoSession};
use stele_tests::{sandbox_available, stele_bin, Stele};

/// Hostile text in the task as given (it is recorded as the session's
/// task payload): markup, attribute breaks, a backtick run, forged lines.
const HOSTILE_TASK: &str = "Organise the receipts in receipts/ by client, total each client in \
reports/by-client.csv, and leave a short summary for Acme in outbox/. \
<script>alert(1)</script> \"><img src=x onerror=alert(1)> a```b\n# Forged heading\n- forged line";

/// The report tests' session (e2e_common::demo_session), with
/// [`HOSTILE_TASK`] as its task, and `stele audit report` on its log.
struct Session(DemoSession);

impl std::ops::Deref for Session {
    type Target = DemoSession;
    fn deref(&self) -> &DemoSession {
        &self.0
    }
}

impl Session {
    /// `stele audit report ARGS… --db … --key …`.
    fn report(&self, args: &[&str]) -> Output {
        let mut all: Vec<String> = vec!["audit".into(), "report".into()];
        all.extend(args.iter().map(|a| a.to_string()));
        all.extend(self.log_args());
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.s.run(&all).unwrap()
    }
}

fn demo_session() -> Session {
    Session(e2e_common::demo_session::demo_session(HOSTILE_TASK, &[]))
}

/// The report's JSON without its verification facts (which say how it was
/// verified: an export, or the live log).
fn without_verification(mut v: serde_json::Value) -> serde_json::Value {
    v.as_object_mut().unwrap().remove("verification");
    v
}

#[test]
fn the_live_report_of_a_session_is_the_export_report_and_names_what_happened() {
    if !sandbox_available("the_live_report_of_a_session_is_the_export_report") {
        return;
    }
    let x = demo_session();
    let out = ok(
        &x.report(&["--session", &x.id, "--format", "json"]),
        "audit report --format json",
    );
    let live: serde_json::Value = serde_json::from_str(&out).unwrap();
    stele_tests::check_json_shape("review-report", &live).unwrap();
    let v = &live["verification"];
    assert_eq!(v["source"], "live_log", "{v}");
    assert_eq!(v["result"], "verified");
    assert!(v["exporter"].is_null(), "no export manifest: {v}");
    assert_eq!(v["log_file"], x.db.display().to_string());
    assert_eq!(live["selection"], format!("session {}", x.id));
    let sessions = live["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{live}");
    let s = &sessions[0];
    assert_eq!(s["id"], x.id.as_str());
    assert_eq!(s["principal"], "alice");
    assert_eq!(s["task"]["state"], "present");
    assert_eq!(s["task"]["text"], HOSTILE_TASK, "the task as given");
    let files: Vec<(String, String)> = s["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["access"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (path, access) in [
        ("receipts/2026-03-02-acme-coffee.pdf", "read"),
        ("receipts/2026-03-04-acme-taxi.pdf", "read"),
        ("reports/by-client.csv", "write"),
        ("outbox/acme-summary.txt", "write"),
    ] {
        assert!(
            files.iter().any(|(p, a)| p == path && a == access),
            "{path} ({access}) not in {files:?}"
        );
    }
    let denial = s["denials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["target"].as_str().unwrap().contains("hr/salaries.csv"))
        .unwrap_or_else(|| panic!("no denial of hr/salaries.csv in {s}"));
    assert_eq!(denial["rule"]["effect"], "deny");
    assert!(
        denial["rule"]["reason"]
            .as_str()
            .unwrap()
            .contains("denied by default: no policy permits it"),
        "the denial's rule: {denial}"
    );
    let approval = &s["approvals"][0];
    assert_eq!(approval["answer"], "granted", "{approval}");
    assert_eq!(approval["approver"], "alice");
    assert_eq!(approval["method"], "flag");
    assert_eq!(approval["requester"], "alice");
    assert_eq!(approval["shown"]["state"], "present");
    let shown = approval["shown"]["text"].as_str().unwrap();
    assert!(
        shown.contains("Write file: outbox/acme-summary.txt") && shown.contains("Dear Acme,"),
        "the exact text shown, decoded: {shown}"
    );
    assert!(approval["rule"]["policies"]
        .to_string()
        .contains("finance.outbox-four-eyes"));

    // The same session exported and reported by stele-verify: the same
    // account, apart from how it was verified.
    let exp = x.d.path().join("export");
    let mut args = vec![
        "audit".to_string(),
        "export".into(),
        "--session".into(),
        x.id.clone(),
        "--out".into(),
        exp.display().to_string(),
    ];
    args.extend(x.log_args());
    let printed = ok(
        &x.s.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .unwrap(),
        "audit export",
    );
    let vkey = printed
        .split("--key '")
        .nth(1)
        .and_then(|t| t.split('\'').next())
        .unwrap_or_else(|| panic!("no key in {printed}"));
    let json = x.d.path().join("export-report.json");
    ok(
        &Command::new(verify_bin())
            .args([exp.to_str().unwrap(), "--key", vkey, "--report", "json"])
            .args(["--out", json.to_str().unwrap()])
            .output()
            .unwrap(),
        "stele-verify --report json",
    );
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(exported["verification"]["source"], "export");
    assert_eq!(
        without_verification(live.clone()),
        without_verification(exported),
        "stele audit report and stele-verify --report differ for the same session"
    );

    // The other forms: the same renderers, written whole to --out.
    let html = x.d.path().join("live.html");
    ok(
        &x.report(&[
            "--session",
            &x.id,
            "--format",
            "html",
            "--out",
            html.to_str().unwrap(),
        ]),
        "audit report --format html",
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Review of the audit log"), "{page}");
    assert!(page.contains("hr/salaries.csv"));
    let md = ok(&x.report(&["--session", &x.id]), "audit report (md)");
    assert!(md.starts_with("# Review of the audit log"), "{md}");
    assert!(md.contains("outbox/acme-summary.txt"), "{md}");
}

#[test]
fn text_from_the_log_is_quoted_in_the_live_report() {
    if !sandbox_available("text_from_the_log_is_quoted_in_the_live_report") {
        return;
    }
    let x = demo_session();
    let html = ok(
        &x.report(&["--session", &x.id, "--format", "html"]),
        "audit report --format html",
    );
    let lower = html.to_lowercase();
    for tag in ["<script", "<img", "onerror=alert(1)>"] {
        assert!(!lower.contains(tag), "{tag} from the task reached the page");
    }
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the task is shown, escaped"
    );
    let md = ok(&x.report(&["--session", &x.id]), "audit report (md)");
    assert!(md.contains("Forged heading"), "the task is shown");
    // Outside the report's own fenced blocks no line comes from the task;
    // inside, a block ends only at its own fence, longer than the task's
    // backtick run (as verify/src/account/escape_tests.rs checks).
    let mut fence: Option<String> = None;
    let mut fenced = 0;
    for line in md.lines() {
        match &fence {
            Some(f) if line == f => fence = None,
            Some(f) => {
                if line.contains("Forged heading") {
                    assert!(f.len() > 3, "the task's ``` closes its fence {f:?}");
                    fenced += 1;
                }
            }
            None if line.starts_with("```") && line.trim_start_matches('`') == "text" => {
                let f: String = line.chars().take_while(|c| *c == '`').collect();
                fence = Some(f);
            }
            None => {
                let l = line.trim_start();
                assert!(
                    !l.starts_with("# Forged") && !l.starts_with("- forged"),
                    "the task forged the line {line:?}"
                );
            }
        }
    }
    assert!(fence.is_none(), "a block was left open");
    assert!(fenced > 0, "the task is quoted in a block: {md}");
}

#[test]
fn an_unknown_session_fails_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let s = Stele::new(&d.path().join("state"));
    ok(
        &s.run(&["keys", "init", "--origin", "audit.test.invalid/report"])
            .unwrap(),
        "keys init",
    );
    ok(&s.run(&["audit", "init"]).unwrap(), "audit init");
    let o = s
        .run(&["audit", "report", "--session", "nope-no-such-session"])
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    // docs/exit-codes.md: 1, a failure not listed elsewhere (bad input).
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("no session nope-no-such-session"), "{err}");
    assert!(o.stdout.is_empty(), "nothing half-written");
    // And a log that is not there: not set up (78), naming the file.
    let o = s
        .run(&["audit", "report", "--db", "/nonexistent/audit.db"])
        .unwrap();
    assert_eq!(o.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/audit.db"));
}

#[test]
fn a_report_into_a_closed_pipe_is_no_panic() {
    let d = tempfile::tempdir().unwrap();
    let s = Stele::new(&d.path().join("state"));
    ok(
        &s.run(&["keys", "init", "--origin", "audit.test.invalid/report"])
            .unwrap(),
        "keys init",
    );
    ok(&s.run(&["audit", "init"]).unwrap(), "audit init");
    // Something to report.
    ok(&s.run(&["audit", "show"]).unwrap(), "audit show");
    for format in ["md", "html", "json"] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let o = Command::new(stele_bin())
            .args(["audit", "report", "--format", format])
            .env("STELE_STATE_DIR", &s.state)
            .env("USER", "alice")
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{format}: {err}");
        assert_eq!(o.status.code(), Some(0), "{format}: {err}");
    }
    let line = format!(
        "STELE_STATE_DIR='{}' USER=alice '{}' audit report",
        s.state.display(),
        stele_bin().display()
    );
    let st = Command::new("bash")
        .args([
            "-c",
            &format!("set -o pipefail; {line} | head -1 >/dev/null"),
        ])
        .status()
        .unwrap();
    assert!(st.success(), "{line} | head -1");
}
