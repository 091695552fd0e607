#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! RFC 3161 stamps on demand and while a session runs, with a real TSA
//! (`openssl ts -reply`, verify/tests/tsa):
//!
//! - `stele audit timestamp` stamps the newest checkpoint now; the token is
//!   stored, exported and checked by `stele-verify --tsa-cert` (and refused
//!   under another TSA's certificate);
//! - `[tsa] every_secs = N`: a `stele run` session longer than N seconds
//!   stamps checkpoints *before* its end, then its last one at the end;
//! - a bad `[tsa]` table (no url, an unreadable or non-PEM cert,
//!   `every_secs = 0`) stops `audit timestamp` and `stele run` at their
//!   start, naming the field, with nothing written.
//!
//! Needs `target/<profile>/stele` and `stele-verify`.

#[path = "../../verify/tests/tsa/mod.rs"]
mod tsa;

use std::path::{Path, PathBuf};
use std::process::Output;

use stele_tests::{sandbox_available, stele_bin, Stele};

fn ok(o: &Output, what: &str) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{what} failed ({:?}): {out}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// A state folder, a key, a log, and a configuration naming the TSA.
struct Setup {
    d: tempfile::TempDir,
    s: Stele,
    db: PathBuf,
    key: PathBuf,
    config: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let d = tempfile::tempdir().unwrap();
        let s = Stele::new(&d.path().join("state"));
        let (db, key) = (d.path().join("state/audit.db"), d.path().join("log.key"));
        let config = d.path().join("config.toml");
        let x = Self {
            d,
            s,
            db,
            key,
            config,
        };
        let k = x.key.to_str().unwrap().to_string();
        ok(
            &x.run(&["keys", "init", "--key", &k, "--origin", "test.example/tsa"]),
            "keys init",
        );
        x
    }

    fn run(&self, args: &[&str]) -> Output {
        let managed = self.d.path().join("no-managed.toml");
        self.s
            .run_env(
                args,
                &[
                    ("STELE_CONFIG", self.config.to_str().unwrap()),
                    ("STELE_MANAGED_CONFIG", managed.to_str().unwrap()),
                ],
            )
            .unwrap()
    }

    /// `stele audit SUB --db DB --key KEY`.
    fn audit(&self, sub: &str) -> Output {
        self.run(&[
            "audit",
            sub,
            "--db",
            self.db.to_str().unwrap(),
            "--key",
            self.key.to_str().unwrap(),
        ])
    }

    fn configure(&self, tsa: &tsa::Tsa, extra: &str) {
        std::fs::write(
            &self.config,
            format!(
                "[tsa]\nurl = \"{}\"\ncert = \"{}\"\n{extra}",
                tsa.url,
                tsa.ca_path.display()
            ),
        )
        .unwrap();
    }

    fn vkey(&self) -> String {
        let out = ok(
            &self.run(&["keys", "show", "--key", self.key.to_str().unwrap()]),
            "keys show",
        );
        out.lines()
            .find(|l| l.contains('+'))
            .unwrap()
            .trim()
            .to_string()
    }

    /// The stored tokens' checkpoint sizes, and the newest checkpoint's.
    fn stamped_sizes(&self) -> (Vec<u64>, u64) {
        let store = stele_audit::Store::open(&self.db).unwrap();
        let newest = store.latest_checkpoint().unwrap().unwrap().0;
        let mut st = store
            .conn()
            .prepare("SELECT size FROM timestamps ORDER BY size")
            .unwrap();
        let sizes = st
            .query_map([], |r| r.get::<_, i64>(0))
            .unwrap()
            .map(|r| r.unwrap() as u64)
            .collect();
        (sizes, newest)
    }

    /// Export the whole log and check its tokens with `stele-verify
    /// --tsa-cert CERT`; the exit status and the report.
    fn verify_export(&self, cert: &Path, out: &str) -> (Option<i32>, String) {
        let bundle = self.d.path().join(out);
        ok(
            &self.run(&[
                "audit",
                "export",
                "--since",
                "2000-01-01T00:00:00Z",
                "--until",
                "2100-01-01T00:00:00Z",
                "--out",
                bundle.to_str().unwrap(),
                "--db",
                self.db.to_str().unwrap(),
                "--key",
                self.key.to_str().unwrap(),
            ]),
            "audit export",
        );
        let v = std::process::Command::new(stele_bin().with_file_name("stele-verify"))
            .arg(&bundle)
            .args(["--key", &self.vkey(), "--tsa-cert"])
            .arg(cert)
            .output()
            .unwrap();
        (
            v.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&v.stdout),
                String::from_utf8_lossy(&v.stderr)
            ),
        )
    }
}

#[test]
fn audit_timestamp_stamps_the_newest_checkpoint_now_and_stele_verify_checks_it() {
    let t = tsa::Tsa::start("Acme", tsa::KeyKind::P256);
    let x = Setup::new();
    ok(&x.audit("init"), "audit init");
    // No [tsa]: refused, naming what is missing.
    let o = x.audit("timestamp");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no [tsa] table"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    x.configure(&t, "");
    let out = ok(&x.audit("timestamp"), "audit timestamp");
    let (sizes, newest) = x.stamped_sizes();
    assert_eq!(sizes, vec![newest], "{out}");
    assert!(
        out.contains(&format!("checkpoint {newest} timestamped")),
        "{out}"
    );
    assert!(out.contains("Acme TSA"), "{out}");
    // The log grows (a read is logged); a second stamp covers the new size.
    ok(&x.audit("show"), "audit show");
    ok(&x.audit("timestamp"), "audit timestamp");
    let (sizes, newest2) = x.stamped_sizes();
    assert!(newest2 > newest);
    assert_eq!(sizes, vec![newest, newest2]);
    let (code, report) = x.verify_export(&t.ca_path, "bundle");
    assert_eq!(code, Some(0), "{report}");
    assert!(report.contains("RFC 3161, verified"), "{report}");
    // Under another TSA's certificate the same tokens are refused.
    let other = tsa::Tsa::start("Other", tsa::KeyKind::P256);
    let (code, report) = x.verify_export(&other.ca_path, "bundle2");
    assert_eq!(code, Some(3), "{report}");
}

#[test]
fn a_tsa_that_fails_makes_audit_timestamp_fail_and_stores_nothing() {
    let t = tsa::Tsa::start("Acme", tsa::KeyKind::P256);
    let other = tsa::Tsa::start("Other", tsa::KeyKind::P256);
    let x = Setup::new();
    ok(&x.audit("init"), "audit init");
    // The TSA answers, but its tokens chain to another CA than the one trusted.
    std::fs::write(
        &x.config,
        format!(
            "[tsa]\nurl = \"{}\"\ncert = \"{}\"\n",
            t.url,
            other.ca_path.display()
        ),
    )
    .unwrap();
    let o = x.audit("timestamp");
    assert!(
        !o.status.success(),
        "a token of an untrusted TSA was accepted"
    );
    // Nobody listening.
    std::fs::write(
        &x.config,
        format!(
            "[tsa]\nurl = \"http://127.0.0.1:9/tsa\"\ncert = \"{}\"\ntimeout_secs = 2\n",
            t.ca_path.display()
        ),
    )
    .unwrap();
    let o = x.audit("timestamp");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unreachable"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let store = stele_audit::Store::open(&x.db).unwrap();
    let n: i64 = store
        .conn()
        .query_row("SELECT count(*) FROM timestamps", [], |r| r.get(0))
        .unwrap_or(0);
    assert_eq!(n, 0, "a token was stored");
}

/// The demo's workspace and policy, and a scripted model whose three tool
/// calls each run for `secs` seconds in the sandbox.
fn slow_session(x: &Setup, secs: f64) -> Output {
    let demo = x.d.path().join("demo");
    let _ = x.run(&["demo", "--dir", demo.to_str().unwrap()]);
    let step = serde_json::json!({"content": [
        {"type": "tool_use", "name": "exec", "input": {"argv": [
            "python3", "-c", format!("import time; time.sleep({secs})")
        ]}}
    ]});
    let script = serde_json::json!([
        step,
        step,
        step,
        {"content": [{"type": "tool_use", "name": "final_answer", "input": {"answer": "done"}}]}
    ]);
    let path = x.d.path().join("slow.json");
    std::fs::write(&path, script.to_string()).unwrap();
    x.run(&[
        "run",
        "--workspace",
        demo.join("workspace").to_str().unwrap(),
        "--policy",
        demo.join("policy").to_str().unwrap(),
        "--model",
        &format!("scripted:{}", path.display()),
        "--approve",
        "allow",
        "--db",
        x.db.to_str().unwrap(),
        "--key",
        x.key.to_str().unwrap(),
        "Wait a little, three times.",
    ])
}

#[test]
fn every_secs_stamps_a_running_session_before_its_end() {
    if !sandbox_available("every_secs_stamps_a_running_session_before_its_end") {
        return;
    }
    let t = tsa::Tsa::start("Acme", tsa::KeyKind::P256);
    let x = Setup::new();
    x.configure(&t, "every_secs = 1\n");
    let o = slow_session(&x, 1.6);
    ok(&o, "stele run");
    let err = String::from_utf8_lossy(&o.stderr);
    let (sizes, newest) = x.stamped_sizes();
    // At least one stamp while it ran (a size before the last), and the
    // last checkpoint at the end.
    assert!(
        sizes.len() >= 2 && sizes[0] < newest,
        "stamps at {sizes:?}, newest checkpoint {newest}: {err}"
    );
    assert_eq!(sizes.last(), Some(&newest), "{err}");
    assert!(
        err.matches("timestamped").count() >= 2,
        "each stamp is reported: {err}"
    );
    let (code, report) = x.verify_export(&t.ca_path, "bundle");
    assert_eq!(code, Some(0), "{report}");
    assert!(
        report.matches("RFC 3161, verified").count() >= 1,
        "{report}"
    );

    // Without every_secs the same session is stamped only at its end.
    let y = Setup::new();
    y.configure(&t, "");
    ok(&slow_session(&y, 1.6), "stele run");
    let (sizes, newest) = y.stamped_sizes();
    assert_eq!(sizes, vec![newest]);
}

#[test]
fn a_bad_tsa_table_stops_the_command_at_its_start_naming_the_field() {
    let t = tsa::Tsa::start("Acme", tsa::KeyKind::P256);
    let x = Setup::new();
    let not_pem = x.d.path().join("not.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let url = format!("url = \"{}\"\n", t.url);
    let cert = format!("cert = \"{}\"\n", t.ca_path.display());
    let cases = [
        (cert.clone(), "url"),
        (format!("url = \"\"\n{cert}"), "url"),
        (format!("url = \"ftp://tsa.example/\"\n{cert}"), "url"),
        (format!("{url}cert = \"/nonexistent/tsa.pem\"\n"), "cert"),
        (format!("{url}cert = \"{}\"\n", not_pem.display()), "cert"),
        (format!("{url}{cert}every_secs = 0\n"), "every_secs"),
        (format!("{url}{cert}timeout_secs = 0\n"), "timeout_secs"),
        (format!("{url}{cert}every_sec = 5\n"), "every_sec"),
    ];
    let sandbox = sandbox_available("a_bad_tsa_table_stops_stele_run_at_its_start");
    for (table, field) in cases {
        // A log made before the table is (every command reads the config).
        let _ = std::fs::remove_file(&x.config);
        let _ = std::fs::remove_file(&x.db);
        ok(&x.audit("init"), "audit init");
        std::fs::write(&x.config, format!("[tsa]\n{table}")).unwrap();
        let size = stele_audit::Store::open(&x.db).unwrap().size().unwrap();
        let o = x.audit("timestamp");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{table}: accepted");
        // The file (and line, or the table) and the field are named.
        assert!(
            err.contains(field)
                && err.contains("config")
                && (err.contains("[tsa]") || err.contains("line ")),
            "{table}: {err}"
        );
        if sandbox {
            let o = slow_session(&x, 0.0);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "{table}: stele run accepted it");
            assert!(err.contains(field), "{table}: {err}");
            // Refused before the session started: nothing was appended.
            let after = stele_audit::Store::open(&x.db).unwrap().size().unwrap();
            assert_eq!(after, size, "{table}: the session started: {err}");
        }
    }
}
