#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A session that moves between machines (two state folders, two logs with
//! their own keys): paused on A, exported, imported on B, resumed on B to
//! its end. Both logs verify; the moved session's export from B verifies
//! with stele-verify across both logs; A refuses to resume it; a tampered
//! file, an untrusted key and a second import are refused; an export whose
//! earlier slice is altered, missing or not the one the import recorded (a
//! manifest re-signed by B's own key, the strongest forger) fails.

mod e2e_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use e2e_common::{of_session, run_bounded, run_command};
use serde_json::{json, Value};
use stele_tests::mock_model::{MockModel, Reply, Turn, Wire};
use stele_tests::{intents_closed_once, leaves_json, sandbox_available, Stele};

const LIMIT: Duration = Duration::from_secs(90);
const WIRE: Wire = Wire::Anthropic;

/// One machine: its state folder (log and key) and its workspace.
struct Machine {
    s: Stele,
    ws: PathBuf,
}

impl Machine {
    fn new(dir: &Path, origin: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let ws = e2e_common::workspace(dir);
        let s = Stele::new(&dir.join("state"));
        let o = s.run(&["keys", "init", "--origin", origin]).unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        Self { s, ws }
    }

    fn db(&self) -> PathBuf {
        self.s.state.join("audit.db")
    }

    fn vkey(&self) -> String {
        let o = self.s.run(&["keys", "show"]).unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stdout).trim().to_string()
    }

    fn stele(&self, args: &[&str], mock: &MockModel) -> Output {
        let mut c = Command::new(stele_tests::stele_bin());
        c.args(args)
            .env("STELE_STATE_DIR", &self.s.state)
            .env("USER", "alice")
            .envs(e2e_common::env(WIRE, mock));
        run_bounded(c, LIMIT)
    }

    fn leaves(&self) -> Vec<Value> {
        leaves_json(&self.s, &self.db()).unwrap()
    }

    fn verifies(&self) {
        let o = self
            .s
            .run(&["audit", "verify", "--db", self.db().to_str().unwrap()])
            .unwrap();
        assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn verify_cmd(bundle: &Path, key: &str) -> Output {
    Command::new(e2e_common::demo_session::verify_bin())
        .arg(bundle)
        .args(["--key", key])
        .output()
        .unwrap()
}

/// Rewrite the manifest of the folder bundle `dir` over its files as they
/// are now, signed with `key_file` (the exporting log's own key).
fn resign(dir: &Path, key_file: &Path, vkey: &str) {
    use stele_attest::dsse::Envelope;
    use stele_attest::intoto::{Statement, Subject};
    let mpath = dir.join("manifest.intoto.jsonl");
    let env = Envelope::from_json(&std::fs::read(&mpath).unwrap()).unwrap();
    let verifier = stele_attest::NoteVerifier::parse(vkey).unwrap();
    let st = Statement::open(&env, &verifier, "https://stele.dev/audit-export/v1").unwrap();
    let files = stele_audit::export::list_files(dir).unwrap();
    let subjects: Vec<Subject> = files
        .iter()
        .filter(|f| *f != "manifest.intoto.jsonl")
        .map(|f| {
            let b = std::fs::read(dir.join(f)).unwrap();
            Subject::sha256(f.clone(), &stele_audit::export::layout::sha256(&b))
        })
        .collect();
    let signer = stele_attest::load_key_file(key_file).unwrap();
    let env = Statement::new(subjects, &st.predicate_type, st.predicate)
        .sign(&signer)
        .unwrap();
    std::fs::write(&mpath, env.to_json().unwrap() + "\n").unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    for f in stele_audit::export::list_files(from).unwrap() {
        let dst = to.join(&f);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&f), dst).unwrap();
    }
}

#[test]
fn a_session_moves_between_machines_and_verifies_across_both_logs() {
    if !sandbox_available("a_session_moves_between_machines_and_verifies_across_both_logs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = Machine::new(&dir.path().join("a"), "a.stele.invalid/log");
    let b = Machine::new(&dir.path().join("b"), "b.stele.invalid/log");
    let policy = e2e_common::policy(&dir.path().join("a"), WIRE, "");
    let mock = MockModel::start().unwrap();

    // On A: one tool call, then the provider fails: the session pauses (exit 75).
    mock.push(
        Turn::new()
            .tool_use("r", "file_read", json!({"path": "receipts/r1.txt"}))
            .into(),
    );
    mock.push(Reply::Status {
        status: 401,
        retry_after: None,
        kind: "authentication_error".into(),
        message: "key revoked for the test".into(),
        code: None,
    });
    let c = run_command(&a.s, &a.ws, &policy, WIRE, &mock, &[], "Sum the receipts");
    let o = run_bounded(c, LIMIT);
    assert_eq!(o.status.code(), Some(75), "{}", text(&o.stderr));
    let id = e2e_common::last_session(&a.leaves());

    // Export from A: the session leaves A.
    let moved = dir.path().join("moved.tar");
    let o = a.stele(
        &["session", "export", &id, "--out", moved.to_str().unwrap()],
        &mock,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("left this machine"),
        "{}",
        text(&o.stdout)
    );
    let a_leaves = a.leaves();
    let end = of_session(&a_leaves, &id).last().copied().unwrap().clone();
    assert_eq!(end["kind"], "session.end", "{end}");
    assert_eq!(end["outcome"]["status"], "interrupted", "{end}");
    assert!(end["data"]["moved"].is_object(), "{end}");
    intents_closed_once(&a_leaves, &id).unwrap();
    // A refuses to continue it, and lists it as moved.
    let o = a.stele(&["session", "resume", &id], &mock);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("moved to another machine"),
        "{}",
        text(&o.stderr)
    );
    let o = a.stele(&["session", "list"], &mock);
    assert!(text(&o.stdout).contains("moved"), "{}", text(&o.stdout));
    a.verifies();
    // The file itself is a session bundle that verifies with A's key.
    let o = verify_cmd(&moved, &a.vkey());
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));

    // On B: refused without a trusted key, with the wrong key, tampered.
    let o = b.stele(&["session", "import", moved.to_str().unwrap()], &mock);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("no trusted key"),
        "{}",
        text(&o.stderr)
    );
    let o = b.stele(
        &[
            "session",
            "import",
            moved.to_str().unwrap(),
            "--vkey",
            &b.vkey(),
        ],
        &mock,
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("does not verify"),
        "{}",
        text(&o.stderr)
    );
    let tampered = dir.path().join("tampered.tar");
    let mut bytes = std::fs::read(&moved).unwrap();
    let at = bytes
        .windows(b"receipts/r1.txt".len())
        .position(|w| w == b"receipts/r1.txt")
        .unwrap();
    bytes[at] = b'R';
    std::fs::write(&tampered, &bytes).unwrap();
    let o = b.stele(
        &[
            "session",
            "import",
            tampered.to_str().unwrap(),
            "--vkey",
            &a.vkey(),
        ],
        &mock,
    );
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("does not verify") && err.contains("altered"),
        "{err}"
    );
    assert!(err.contains("FAILED: "), "names the file: {err}");
    assert!(of_session(&b.leaves(), &id).is_empty(), "nothing imported");

    // Imported with A's key into B's own workspace.
    let o = b.stele(
        &[
            "session",
            "import",
            moved.to_str().unwrap(),
            "--vkey",
            &a.vkey(),
            "--workspace",
            b.ws.to_str().unwrap(),
        ],
        &mock,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("fingerprint a.stele.invalid/log+"), "{out}");
    let o = b.stele(
        &[
            "session",
            "import",
            moved.to_str().unwrap(),
            "--vkey",
            &a.vkey(),
        ],
        &mock,
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("already in this log"),
        "{}",
        text(&o.stderr)
    );

    // Resumed on B to its end; the model sees what happened on A.
    let asked_before = mock.requests().len();
    mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "14.50 EUR"}))
            .into(),
    );
    let o = b.stele(&["session", "resume", &id], &mock);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let req = mock.requests()[asked_before].text();
    assert!(
        req.contains("Acme") && req.contains("10.50"),
        "A's tool result carried: {req}"
    );
    assert!(req.contains("Sum the receipts"), "{req}");
    let b_leaves = b.leaves();
    let mine = of_session(&b_leaves, &id);
    assert_eq!(mine[0]["kind"], "session.start");
    assert_eq!(mine[0]["session"]["n"], 0);
    let cont = &mine[0]["data"]["continues"];
    assert_eq!(cont["origin"], "a.stele.invalid/log", "{cont}");
    assert_eq!(cont["last"]["seq"], end["seq"], "{cont}");
    assert!(mine
        .iter()
        .any(|l| l["kind"] == "session.end" && l["outcome"]["status"] == "ok"));
    intents_closed_once(&b_leaves, &id).unwrap();
    b.verifies();
    a.verifies();

    // B's export of the session holds A's slice; stele-verify checks both.
    let exp = dir.path().join("b-export");
    let o = b.stele(
        &[
            "audit",
            "export",
            "--session",
            &id,
            "--out",
            exp.to_str().unwrap(),
        ],
        &mock,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(exp.join("earlier/0.tar").is_file());
    let bk = b.vkey();
    let o = verify_cmd(&exp, &bk);
    let shown = text(&o.stdout);
    assert!(o.status.success(), "{shown}{}", text(&o.stderr));
    assert!(
        shown.contains("moved from:   a.stele.invalid/log"),
        "{shown}"
    );

    let key_b = b.s.state.join("keys/log.key");
    let case = |name: &str, change: &dyn Fn(&Path)| -> String {
        let d = dir.path().join(name);
        copy_dir(&exp, &d);
        change(&d);
        resign(&d, &key_b, &bk);
        let o = verify_cmd(&d, &bk);
        assert!(!o.status.success(), "{name}: verified");
        text(&o.stdout) + &text(&o.stderr)
    };
    // A tampered earlier slice (one byte of a leaf in it): not the bundle imported.
    let err = case("altered", &|d| {
        let p = d.join("earlier/0.tar");
        let mut b = std::fs::read(&p).unwrap();
        let at = b.windows(5).position(|w| w == b"Acme\\").unwrap_or(600);
        b[at] ^= 1;
        std::fs::write(&p, b).unwrap();
    });
    assert!(
        err.contains("earlier/0.tar") && err.contains("not the bundle"),
        "{err}"
    );
    // Missing.
    let err = case("missing", &|d| {
        std::fs::remove_file(d.join("earlier/0.tar")).unwrap()
    });
    assert!(
        err.contains("earlier/0.tar") && err.contains("missing"),
        "{err}"
    );
    // A genuine bundle of the same session from A, but not the one imported
    // (exported again later: another checkpoint). The digest check catches it first.
    let again = dir.path().join("again.tar");
    let o = a.stele(
        &["session", "export", &id, "--out", again.to_str().unwrap()],
        &mock,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("had moved already"),
        "{}",
        text(&o.stdout)
    );
    let err = case("relinked", &|d| {
        std::fs::copy(&again, d.join("earlier/0.tar")).unwrap();
    });
    assert!(
        err.contains("earlier/0.tar") && err.contains("not the bundle"),
        "{err}"
    );

    // B refuses to export the session without the file it was imported
    // from, or with another in its place.
    let kept = b.s.state.join(format!("audit.db.imports/{id}.bundle.tar"));
    std::fs::copy(&again, &kept).unwrap();
    let x1 = dir.path().join("x1");
    let o = b.stele(
        &[
            "audit",
            "export",
            "--session",
            &id,
            "--out",
            x1.to_str().unwrap(),
        ],
        &mock,
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("is not the bundle session"),
        "{}",
        text(&o.stderr)
    );
    std::fs::remove_file(&kept).unwrap();
    let x2 = dir.path().join("x2");
    let o = b.stele(
        &[
            "audit",
            "export",
            "--session",
            &id,
            "--out",
            x2.to_str().unwrap(),
        ],
        &mock,
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("cannot be read"),
        "{}",
        text(&o.stderr)
    );
    assert!(!x1.exists() && !x2.exists(), "nothing half-written");
}

/// Killed on A while the model was answering: the export closes the open
/// request as interrupted (in the session, before the move), and B continues
/// from the conversation that request carried; nothing is re-run.
#[test]
fn a_killed_session_moves_with_its_open_request_closed_as_interrupted() {
    if !sandbox_available("a_killed_session_moves_with_its_open_request_closed_as_interrupted") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = Machine::new(&dir.path().join("a"), "a.stele.invalid/log");
    let b = Machine::new(&dir.path().join("b"), "b.stele.invalid/log");
    let policy = e2e_common::policy(&dir.path().join("a"), WIRE, "");
    let mock = MockModel::start().unwrap();
    mock.push(
        Turn::new()
            .tool_use("r", "file_read", json!({"path": "receipts/r2.txt"}))
            .into(),
    );
    mock.push(Reply::Stall {
        turn: Turn::new().text("never"),
        after_events: 0,
        hold: Duration::from_secs(120),
    });
    let mut c = run_command(&a.s, &a.ws, &policy, WIRE, &mock, &[], "Sum the receipts");
    let mut child = c
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while mock.requests().len() < 2 {
        assert!(started.elapsed() < LIMIT, "the run never asked twice");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let moved = dir.path().join("moved.tar");
    let o = a.stele(
        &[
            "session",
            "export",
            &moved_id(&a),
            "--out",
            moved.to_str().unwrap(),
        ],
        &mock,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let leaves = a.leaves();
    let id = moved_id(&a);
    let mine = of_session(&leaves, &id);
    let n = mine.len();
    assert_eq!(mine[n - 1]["kind"], "session.end", "{}", mine[n - 1]);
    assert_eq!(mine[n - 2]["kind"], "interrupted", "{}", mine[n - 2]);
    intents_closed_once(&leaves, &id).unwrap();
    a.verifies();

    let o = b.stele(
        &[
            "session",
            "import",
            moved.to_str().unwrap(),
            "--vkey",
            &a.vkey(),
            "--workspace",
            b.ws.to_str().unwrap(),
        ],
        &mock,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let asked_before = mock.requests().len();
    mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "4.00 EUR"}))
            .into(),
    );
    let o = b.stele(&["session", "resume", &id], &mock);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let asked: Vec<_> = mock.requests()[asked_before..].to_vec();
    assert_eq!(asked.len(), 1, "one request on B, nothing re-run");
    let req = asked[0].text();
    assert!(req.contains("Globex") && req.contains("4.00"), "{req}");
    let b_leaves = b.leaves();
    assert!(
        !of_session(&b_leaves, &id)
            .iter()
            .any(|l| l["kind"] == "tool.intent"),
        "B ran no tool"
    );
    intents_closed_once(&b_leaves, &id).unwrap();
    b.verifies();
}

/// The one session in A's log.
fn moved_id(a: &Machine) -> String {
    e2e_common::last_session(&a.leaves())
}
