#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `stele audit report --since … --until …`, the period evidence report,
//! on a real session (the demo's workspace, policy and scripted model):
//! denials by rule, approvals by approver, logging start and stop, the
//! clock's state, the export that backs it (written with `--export` and
//! verified by `stele-verify`); an empty window; bad time arguments named
//! with a non-zero exit and nothing written.
//!
//! With `[tsa]` configured, the session's end is timestamped by a real
//! TSA (`openssl ts -reply`, verify/tests/tsa), the period export carries
//! the token and `stele-verify --tsa-cert` checks it.
//!
//! Needs `target/<profile>/stele` and `stele-verify`.

mod e2e_common;
#[path = "../../verify/tests/tsa/mod.rs"]
mod tsa;

use std::path::PathBuf;
use std::process::Output;

use e2e_common::demo_session::{ok, DemoSession};
use stele_tests::{sandbox_available, stele_bin};

/// The report tests' session (e2e_common::demo_session) and `stele audit
/// report` on its log.
struct Demo {
    x: DemoSession,
    /// A scratch folder for what the tests write.
    dir: PathBuf,
}

impl std::ops::Deref for Demo {
    type Target = DemoSession;
    fn deref(&self) -> &DemoSession {
        &self.x
    }
}

impl Demo {
    fn report(&self, args: &[&str]) -> Output {
        let mut all: Vec<String> = vec!["audit".into(), "report".into()];
        all.extend(args.iter().map(|a| a.to_string()));
        all.extend(self.log_args());
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.s.run(&all).unwrap()
    }
}

/// The demo run with `stele run` (its four-eyes rule relaxed so the
/// flag's approver, the principal, can answer).
fn demo() -> Demo {
    demo_with(&[])
}

fn demo_with(env: &[(&str, &str)]) -> Demo {
    let x = e2e_common::demo_session::demo_session(
        "Organise the receipts by client and leave a summary for Acme in outbox/.",
        env,
    );
    Demo {
        dir: x.d.path().to_path_buf(),
        x,
    }
}

fn today() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    stele_audit::clock::ts_of_ns(now)[..10].to_string()
}

#[test]
fn the_period_report_answers_the_auditors_questions_and_names_its_export() {
    if !sandbox_available("the_period_report_answers_the_auditors_questions") {
        return;
    }
    let x = demo();
    let day = today();
    let out = ok(
        &x.report(&["--since", &day, "--until", &day, "--format", "json"]),
        "audit report --since --until --format json",
    );
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    stele_tests::check_json_shape("review-report", &r).unwrap();
    assert!(
        r["selection"].as_str().unwrap().starts_with("period "),
        "{}",
        r["selection"]
    );
    let p = &r["period"];
    assert!(p["entries"].as_u64().unwrap() > 10, "{p}");
    // The run's session (and any `stele demo` recorded while setting up).
    let sessions = r["sessions"].as_array().unwrap();
    assert!(
        sessions.iter().any(|s| s["principal"] == "alice"),
        "{sessions:?}"
    );
    // The demo's denial of hr/salaries.csv, grouped under its rule.
    let rules = p["denials_by_rule"].as_array().unwrap();
    assert!(!rules.is_empty(), "{p}");
    assert!(rules.iter().all(|x| x["count"].as_u64().unwrap() >= 1));
    // The approval answered with the flag, by the principal.
    let people = p["approvals_by_approver"].as_array().unwrap();
    assert!(
        people
            .iter()
            .any(|a| a["approver"] == "alice" && a["granted"].as_u64().unwrap() >= 1),
        "{people:?}"
    );
    // Logging started and stopped; the clock's state recorded when it started.
    let logging: Vec<&str> = p["logging"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert!(logging.contains(&"log.close"), "{logging:?}");
    assert!(
        logging
            .iter()
            .any(|k| *k == "log.genesis" || *k == "log.open"),
        "{logging:?}"
    );
    let clock = p["clock_states"].as_array().unwrap();
    assert!(clock.iter().any(|c| c["reason"] == "log.open"), "{clock:?}");
    assert!(
        clock.iter().any(|c| c["reason"] == "session.start"),
        "{clock:?}"
    );
    assert!(
        p["export_command"]
            .as_str()
            .unwrap()
            .starts_with("stele audit export --since "),
        "{p}"
    );
    // Markdown and HTML carry the same sections.
    let md = ok(&x.report(&["--since", &day, "--until", &day]), "md");
    for h in [
        "## Period",
        "### Findings",
        "### Denials by rule",
        "### Approvals by approver",
        "### Payload erasures",
        "### Logging started and stopped",
        "### Clock",
    ] {
        assert!(md.contains(h), "{h} missing from the Markdown");
    }
    let html = ok(
        &x.report(&["--since", &day, "--until", &day, "--format", "html"]),
        "html",
    );
    for id in [
        "denials-by-rule",
        "approvals-by-approver",
        "erasures",
        "logging",
        "gaps",
        "clock",
    ] {
        assert!(
            html.contains(&format!("id=\"{id}\"")),
            "table {id} missing from the HTML"
        );
    }
    // --export: the signed bundle of the period, verified by stele-verify.
    let bundle = x.dir.join("period.tar");
    let o = x.report(&[
        "--since",
        &day,
        "--until",
        &day,
        "--out",
        x.dir.join("report.md").to_str().unwrap(),
        "--export",
        bundle.to_str().unwrap(),
    ]);
    ok(&o, "audit report --export");
    assert!(x.dir.join("report.md").is_file());
    let vkey = ok(
        &x.s.run(&["keys", "show", "--key", x.key.to_str().unwrap()])
            .unwrap(),
        "keys show",
    );
    let vkey = vkey
        .lines()
        .find(|l| l.contains('+'))
        .unwrap()
        .trim()
        .to_string();
    let v = std::process::Command::new(stele_bin().with_file_name("stele-verify"))
        .arg(&bundle)
        .args(["--key", &vkey])
        .output()
        .unwrap();
    let text = ok(&v, "stele-verify of the period export");
    assert!(text.contains(&format!("{day}T00:00:00.000000Z")), "{text}");
}

#[test]
fn an_empty_window_and_bad_time_arguments() {
    if !sandbox_available("an_empty_window_and_bad_time_arguments") {
        return;
    }
    let x = demo();
    let out = ok(
        &x.report(&[
            "--since",
            "2001-01-01",
            "--until",
            "2001-01-02T00:00:00Z",
            "--format",
            "json",
        ]),
        "empty window",
    );
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["period"]["entries"], 0);
    assert_eq!(r["sessions"].as_array().unwrap().len(), 0);
    let target = x.dir.join("never.md");
    for (args, names) in [
        (vec!["--since", "yesterday"], "--since \"yesterday\""),
        (vec!["--since", "2026-02-30"], "--since \"2026-02-30\""),
        (
            vec!["--since", "2026-12-02", "--until", "2026-12-01"],
            "is not after",
        ),
        (
            vec!["--since", "2026-12-01", "--until", "soon"],
            "--until \"soon\"",
        ),
        (vec!["--until", "2026-12-01"], "--since"),
        (vec!["--session", "s", "--since", "2026-12-01"], "--session"),
    ] {
        let mut a = args.clone();
        a.extend(["--out", target.to_str().unwrap()]);
        let o = x.report(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} was accepted");
        assert!(err.contains(names), "{args:?}: {err}");
        assert!(!target.exists(), "{args:?} wrote a report");
    }
}

#[test]
fn a_configured_tsa_stamps_the_session_end_and_the_period_export_carries_it() {
    if !sandbox_available("a_configured_tsa_stamps_the_session_end") {
        return;
    }
    let t = tsa::Tsa::start("Acme", tsa::KeyKind::P256);
    let cfg = t.dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[tsa]\nurl = \"{}\"\ncert = \"{}\"\n",
            t.url,
            t.ca_path.display()
        ),
    )
    .unwrap();
    let x = demo_with(&[("STELE_CONFIG", cfg.to_str().unwrap())]);
    let day = today();
    let out = ok(
        &x.report(&["--since", &day, "--format", "json"]),
        "audit report --format json",
    );
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let stamps = r["period"]["timestamps"].as_array().unwrap();
    assert_eq!(stamps.len(), 1, "{}", r["period"]);
    assert!(stamps[0]["tsa"].as_str().unwrap().contains("Acme TSA"));
    let bundle = x.dir.join("period");
    ok(
        &x.report(&[
            "--since",
            &day,
            "--out",
            x.dir.join("r.md").to_str().unwrap(),
            "--export",
            bundle.to_str().unwrap(),
        ]),
        "report --export",
    );
    let size = stamps[0]["size"].as_u64().unwrap();
    assert!(bundle.join(format!("timestamps/{size}.tsr")).is_file());
    let vkey = ok(
        &x.s.run(&["keys", "show", "--key", x.key.to_str().unwrap()])
            .unwrap(),
        "keys show",
    );
    let vkey = vkey
        .lines()
        .find(|l| l.contains('+'))
        .unwrap()
        .trim()
        .to_string();
    let v = std::process::Command::new(stele_bin().with_file_name("stele-verify"))
        .arg(&bundle)
        .args(["--key", &vkey, "--tsa-cert"])
        .arg(&t.ca_path)
        .output()
        .unwrap();
    let text = ok(&v, "stele-verify --tsa-cert");
    assert!(text.contains("RFC 3161, verified"), "{text}");
    // Trusting another TSA: refused.
    let other = tsa::Tsa::start("Other", tsa::KeyKind::P256);
    let v = std::process::Command::new(stele_bin().with_file_name("stele-verify"))
        .arg(&bundle)
        .args(["--key", &vkey, "--tsa-cert"])
        .arg(&other.ca_path)
        .output()
        .unwrap();
    assert_eq!(
        v.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );
}
