#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What a reviewer does with an export, end to end: export a session with a
//! separate export key, run the printed verify line as printed, ask
//! `stele-verify` for its report and open the HTML in a real (headless)
//! Chromium; `--json`; and neither `stele` nor `stele-verify` panics when
//! its reader goes away (`| head -1`).
//!
//! Needs `target/<profile>/stele` and `stele-verify` (`cargo build -p
//! stele-runtime --bin stele -p stele-verify`), and Debian's `chromium`
//! (`scripts/setup` installs it).

mod e2e_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use e2e_common::demo_session::{ok, verify_bin};
use stele_tests::{sandbox_available, stele_bin, Stele};

/// A log with a little in it, an export of it (manifest signed by a
/// separate export key), and the printed verify line.
struct Exported {
    _d: tempfile::TempDir,
    s: Stele,
    out: PathBuf,
    verify_line: String,
}

fn export_simple() -> Exported {
    let d = tempfile::tempdir().unwrap();
    let s = Stele::new(&d.path().join("state"));
    ok(
        &s.run(&["keys", "init", "--origin", "audit.test.invalid/review"])
            .unwrap(),
        "keys init",
    );
    let ek = d.path().join("export.key");
    ok(
        &s.run(&[
            "keys",
            "init",
            "--origin",
            "export.test.invalid",
            "--key",
            ek.to_str().unwrap(),
        ])
        .unwrap(),
        "keys init export",
    );
    ok(&s.run(&["audit", "init"]).unwrap(), "audit init");
    ok(&s.run(&["audit", "show"]).unwrap(), "audit show");
    let out = d.path().join("export");
    let printed = ok(
        &s.run(&[
            "audit",
            "export",
            "--out",
            out.to_str().unwrap(),
            "--export-key",
            ek.to_str().unwrap(),
        ])
        .unwrap(),
        "audit export",
    );
    let verify_line = printed
        .lines()
        .find_map(|l| l.strip_prefix("verify with: "))
        .unwrap_or_else(|| panic!("no verify line in {printed}"))
        .to_string();
    Exported {
        _d: d,
        s,
        out,
        verify_line,
    }
}

/// Run a printed command line (single-quoted arguments) as a shell would.
fn run_line(line: &str, extra: &[&str]) -> Output {
    let mut args: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '\'' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    args.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        args.push(cur);
    }
    assert_eq!(args[0], "stele-verify", "{line}");
    Command::new(verify_bin())
        .args(&args[1..])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn the_printed_verify_line_verifies_an_export_signed_with_an_export_key() {
    let e = export_simple();
    assert!(e.verify_line.contains("--export-key"), "{}", e.verify_line);
    let o = run_line(&e.verify_line, &[]);
    let out = ok(&o, "the printed verify line");
    assert!(out.starts_with("OK: export of"), "{out}");
    // Without the export key it fails: the line must carry it.
    let without: String = e
        .verify_line
        .split(" --export-key")
        .next()
        .unwrap()
        .to_string();
    let o = run_line(&without, &[]);
    assert_eq!(o.status.code(), Some(3));
}

#[test]
fn json_result_has_the_documented_shape_and_failures_are_json_too() {
    let e = export_simple();
    let o = run_line(&e.verify_line, &["--json"]);
    let out = ok(&o, "--json");
    assert_eq!(out.lines().count(), 1, "one JSON object: {out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // docs/review-report.md, "stele-verify --json".
    assert_eq!(v["schema"], "https://stele.dev/stele-verify/v1");
    assert_eq!(v["result"], "verified");
    for (k, is) in [
        ("origin", "string"),
        ("entries", "number"),
        ("root", "string"),
        ("selection", "string"),
        ("selected", "number"),
        ("sessions", "number"),
        ("checkpoints", "array"),
        ("witnesses", "array"),
        ("anchors", "array"),
        ("payloads", "object"),
        ("redactions", "array"),
        ("proofs", "number"),
        ("policies", "array"),
        ("unfinished", "array"),
        ("derived_files", "string"),
        ("exporter", "string"),
    ] {
        let got = match &v[k] {
            serde_json::Value::String(_) => "string",
            serde_json::Value::Number(_) => "number",
            serde_json::Value::Array(_) => "array",
            serde_json::Value::Object(_) => "object",
            _ => "other",
        };
        assert_eq!(got, is, "{k} in {v}");
    }
    assert!(v["entries"].as_u64().unwrap() > 0);
    // A tampered export: exit 3 and a JSON failure naming the file.
    std::fs::write(e.out.join("SUMMARY.md"), "# nothing to see\n").unwrap();
    let o = run_line(&e.verify_line, &["--json"]);
    assert_eq!(o.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["result"], "failed");
    assert_eq!(v["file"], "SUMMARY.md");
    assert!(v["reason"].as_str().unwrap().contains("differs"), "{v}");
    // An unreadable input: exit 4, JSON too.
    let o = Command::new(verify_bin())
        .args(["/nonexistent/export", "--key", "x", "--json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["result"], "unreadable");
}

/// Run `program args` with its standard output a pipe whose reader is
/// already gone: every write fails with EPIPE.
fn with_closed_stdout(program: &Path, args: &[&str], state: Option<&Path>) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut c = Command::new(program);
    c.args(args).stdout(writer).stderr(Stdio::piped());
    if let Some(s) = state {
        c.env("STELE_STATE_DIR", s).env("USER", "alice");
    }
    c.output().unwrap()
}

/// Run `line | head -1` in bash with pipefail: the exit status is the
/// writer's.
fn piped_to_head(line: &str) -> std::process::ExitStatus {
    Command::new("bash")
        .args([
            "-c",
            &format!("set -o pipefail; {line} | head -1 >/dev/null"),
        ])
        .status()
        .unwrap()
}

#[test]
fn a_closed_pipe_is_no_panic_for_stele_or_stele_verify() {
    let e = export_simple();
    let line = e
        .verify_line
        .replacen("stele-verify", verify_bin().to_str().unwrap(), 1);
    let key = line
        .split("--key '")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap()
        .to_string();
    let ekey = line
        .split("--export-key '")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap()
        .to_string();
    let out = e.out.to_str().unwrap();
    let report = e.out.with_file_name("r.md");
    let verify_cases: Vec<Vec<&str>> = vec![
        vec![out, "--key", &key, "--export-key", &ekey],
        vec![out, "--key", &key, "--export-key", &ekey, "--json"],
        vec![out, "--key", &key, "--export-key", &ekey, "--report", "md"],
        vec![
            out,
            "--key",
            &key,
            "--export-key",
            &ekey,
            "--report",
            "html",
            "--out",
            report.to_str().unwrap(),
        ],
    ];
    for args in &verify_cases {
        let o = with_closed_stdout(&verify_bin(), args, None);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "stele-verify {args:?}: {err}");
        assert_eq!(o.status.code(), Some(0), "stele-verify {args:?}: {err}");
    }
    let stele_cases: [&[&str]; 4] = [
        &["audit", "show"],
        &["audit", "tail", "-n", "5", "--json"],
        &["audit", "verify"],
        &["keys", "show"],
    ];
    for args in stele_cases {
        let o = with_closed_stdout(&stele_bin(), args, Some(&e.s.state));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "stele {args:?}: {err}");
        assert_eq!(o.status.code(), Some(0), "stele {args:?}: {err}");
    }
    // As a reviewer types it.
    assert!(piped_to_head(&line).success(), "{line} | head -1");
    let st = format!(
        "STELE_STATE_DIR='{}' USER=alice '{}' audit show",
        e.s.state.display(),
        stele_bin().display()
    );
    assert!(piped_to_head(&st).success(), "{st} | head -1");
    // Any other write error is not passed off as success.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = Command::new(verify_bin())
        .args(&verify_cases[0])
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(74),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = Command::new(stele_bin())
        .args(["audit", "show"])
        .env("STELE_STATE_DIR", &e.s.state)
        .env("USER", "alice")
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(74),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn chromium() -> PathBuf {
    let c = PathBuf::from("/usr/bin/chromium");
    assert!(
        c.exists(),
        "/usr/bin/chromium is missing: run scripts/setup (installs Debian's chromium)"
    );
    c
}

#[test]
fn the_demo_sessions_html_report_shows_files_denial_and_approval_in_chromium() {
    if !sandbox_available(
        "the_demo_sessions_html_report_shows_files_denial_and_approval_in_chromium",
    ) {
        return;
    }
    // A demo-like session (e2e_common::demo_session: the demo's script
    // minus its first step, the outbox rule's four eyes relaxed).
    let x = e2e_common::demo_session::demo_session(e2e_common::demo_session::TASK, &[]);
    let (d, s, db, key, session) = (&x.d, &x.s, &x.db, &x.key, &x.id);
    let out = d.path().join("demo-export");
    let printed = ok(
        &s.run(&[
            "audit",
            "export",
            "--db",
            db.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--session",
            session,
            "--out",
            out.to_str().unwrap(),
        ])
        .unwrap(),
        "audit export",
    );
    let line = printed
        .lines()
        .find_map(|l| l.strip_prefix("verify with: "))
        .unwrap();
    let html = d.path().join("review.html");
    ok(
        &run_line(line, &["--report", "html", "--out", html.to_str().unwrap()]),
        "--report html",
    );
    let page = std::fs::read_to_string(&html).unwrap();
    // Self-contained: nothing to load.
    for outside in ["src=", "href=", "<script", "@import", "url("] {
        assert!(
            !page.contains(outside),
            "the report loads something ({outside})"
        );
    }
    let o = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            &format!("--user-data-dir={}", d.path().join("chromium").display()),
            "--dump-dom",
        ])
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    let dom = ok(&o, "chromium --dump-dom");
    let section = |id: &str| -> String {
        let start = dom
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no #{id} in the DOM"));
        let end = dom[start..].find("</table>").unwrap() + start;
        dom[start..end].to_string()
    };
    let files = section("files");
    for f in [
        "receipts/2026-03-02-acme-coffee.pdf",
        "receipts/2026-03-04-acme-taxi.pdf",
        "reports/by-client.csv",
        "outbox/acme-summary.txt",
    ] {
        assert!(files.contains(f), "the files read and written lack {f}");
    }
    let denials = section("denials");
    assert!(denials.contains("hr/salaries.csv"), "{denials}");
    assert!(
        denials.contains("denied by default: no policy permits it"),
        "the denial's rule: {denials}"
    );
    let start = dom
        .find("class=\"approval\"")
        .expect("an approval in the DOM");
    let approval = &dom[start..start + dom[start..].find("</div>").unwrap()];
    assert!(approval.contains("finance.outbox-four-eyes"), "{approval}");
    assert!(
        approval.contains("class=\"approver\">alice<"),
        "approved by alice: {approval}"
    );
    assert!(approval.contains("flag"), "the method: {approval}");
    assert!(approval.contains("granted"), "{approval}");
    // The exact text shown, decoded: the letter itself.
    assert!(approval.contains("| Dear Acme,"), "{approval}");
    assert!(
        approval.contains("Write file: outbox/acme-summary.txt"),
        "{approval}"
    );
    let task = section("session");
    assert!(task.contains("alice"), "{task}");
    assert!(dom.contains("Organise the receipts"), "the task as given");
    // A screenshot renders too (a non-empty PNG).
    let png = d.path().join("review.png");
    let o = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            &format!("--user-data-dir={}", d.path().join("chromium").display()),
            &format!("--screenshot={}", png.display()),
            "--window-size=1200,2000",
        ])
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    ok(&o, "chromium --screenshot");
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "{} bytes",
        bytes.len()
    );
}
