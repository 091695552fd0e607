#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The runtime sends its checkpoints to a real `stele witness serve` at
//! session start and end and stores the cosignatures; a rolled-back audit
//! database is caught by the witness and the next session is refused before
//! the agent acts. An unreachable witness is a warning, unless a quorum is
//! required.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::json;
use stele_tests::mock_model::{MockModel, Turn};
use stele_tests::{sandbox_available, stele_bin, Stele};

const WITNESS: &str = "witness-a.stele.invalid";

/// The finance template, its model endpoint pin moved to the mock on this machine.
fn finance_policy() -> PathBuf {
    stele_tests::mock_template("finance")
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A log key, a witness key, and a workspace.
struct Setup {
    dir: tempfile::TempDir,
    stele: Stele,
    ws: PathBuf,
    config: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let stele = Stele::new(&dir.path().join("state"));
    let o = stele
        .run(&["keys", "init", "--origin", "witness-e2e.stele.invalid/log"])
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let wkey = dir.path().join("witness.key");
    let o = stele
        .run(&[
            "keys",
            "init",
            "--key",
            wkey.to_str().unwrap(),
            "--origin",
            WITNESS,
        ])
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(ws.join("receipts")).unwrap();
    std::fs::write(ws.join("receipts/r1.txt"), "Client: Acme\n").unwrap();
    stele_tests_share(&ws);
    let config = dir.path().join("config.toml");
    Setup {
        dir,
        stele,
        ws,
        config,
    }
}

fn stele_tests_share(p: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let m = std::fs::metadata(p).unwrap();
    let mode = if m.is_dir() { 0o777 } else { 0o666 };
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    if m.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            stele_tests_share(&e.unwrap().path());
        }
    }
}

/// A running `stele witness serve` on an OS-chosen port.
struct WitnessServer {
    child: Child,
    url: String,
    vkey: String,
}

impl Drop for WitnessServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_witness(s: &Setup) -> WitnessServer {
    let wkey = s.dir.path().join("witness.key");
    let log_vkey = stdout(&s.stele.run(&["keys", "show"]).unwrap());
    let vkey = stdout(
        &s.stele
            .run(&["witness", "vkey", "--key", wkey.to_str().unwrap()])
            .unwrap(),
    );
    let mut child = Command::new(stele_bin())
        .args(["witness", "serve", "--listen", "127.0.0.1:0", "--key"])
        .arg(&wkey)
        .args(["--log", &log_vkey, "--state"])
        .arg(s.dir.path().join("witness-state.json"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    assert!(line.contains("listening on"), "{line}");
    // Keep draining its stderr so it never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while err.read_line(&mut sink).unwrap_or(0) > 0 {
            sink.clear();
        }
    });
    WitnessServer {
        child,
        url: format!("http://{addr}"),
        vkey,
    }
}

fn write_config(s: &Setup, url: &str, vkey: &str, quorum: u32) {
    std::fs::write(
        &s.config,
        format!(
            "witness_quorum = {quorum}\n\n[[witness]]\nname = {WITNESS:?}\nurl = {url:?}\nkey = {vkey:?}\n"
        ),
    )
    .unwrap();
}

/// One `stele run` that lists the receipts and answers.
fn run_session(s: &Setup, mock: &MockModel) -> std::process::Output {
    mock.push(
        Turn::new()
            .tool_use("t1", "file_list", json!({"path": "receipts"}))
            .into(),
    );
    mock.push(
        Turn::new()
            .tool_use("t2", "final_answer", json!({"answer": "one receipt"}))
            .into(),
    );
    s.stele
        .run_env(
            &[
                "run",
                "--workspace",
                s.ws.to_str().unwrap(),
                "--policy",
                finance_policy().to_str().unwrap(),
                "--user",
                "alice",
                "--model",
                "anthropic:claude-sonnet-4-5",
                "List the receipts",
            ],
            &[
                ("ANTHROPIC_API_KEY", "sk-ant-test-witness"),
                ("ANTHROPIC_BASE_URL", &mock.base_url()),
                ("STELE_CONFIG", s.config.to_str().unwrap()),
            ],
        )
        .unwrap()
}

fn cosignatures(db: &Path) -> Vec<(u64, String)> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c
        .prepare("SELECT size, witness FROM cosignatures ORDER BY size")
        .unwrap();
    st.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn copy_db(from_dir: &Path, to_dir: &Path) {
    std::fs::create_dir_all(to_dir).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let name = format!("audit.db{suffix}");
        let _ = std::fs::remove_file(to_dir.join(&name));
        if from_dir.join(&name).exists() {
            std::fs::copy(from_dir.join(&name), to_dir.join(&name)).unwrap();
        }
    }
}

#[test]
fn checkpoints_are_cosigned_and_a_rolled_back_database_is_refused() {
    if !sandbox_available("checkpoints_are_cosigned_and_a_rolled_back_database_is_refused") {
        return;
    }
    let s = setup();
    let w = start_witness(&s);
    write_config(&s, &w.url, &w.vkey, 0);
    let mock = MockModel::start().unwrap();
    let db = s.stele.state.join("audit.db");

    // Session 1: cosigned at start and at end; the cosignatures are stored.
    let o = run_session(&s, &mock);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(&format!("cosigned by {WITNESS}")), "{err}");
    let cos = cosignatures(&db);
    assert!(cos.len() >= 2, "start and end cosigned: {cos:?}");
    assert!(cos.iter().all(|(_, n)| n == WITNESS));
    let end_size = cos.last().unwrap().0;
    let size = s.stele.run(&["audit", "verify"]).unwrap();
    assert!(
        size.status.success(),
        "{}",
        String::from_utf8_lossy(&size.stderr)
    );
    // The export carries the cosignature on the final checkpoint.
    let out = s.dir.path().join("export");
    let e = s
        .stele
        .run(&["audit", "export", "--out", out.to_str().unwrap()])
        .unwrap();
    assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
    let mut found = false;
    for entry in walk(&out) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        if text.contains(&format!("\u{2014} {WITNESS} ")) {
            found = true;
        }
    }
    assert!(
        found,
        "no cosigned checkpoint in the export (size {end_size})"
    );

    // Keep a copy of the database, run session 2 (the witness moves on).
    let saved = s.dir.path().join("saved");
    copy_db(&s.stele.state, &saved);
    let o = run_session(&s, &mock);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let requests_before = mock.requests().len();

    // Roll the database back: the next session is refused before it acts.
    copy_db(&saved, &s.stele.state);
    let o = run_session(&s, &mock);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("ROLLBACK DETECTED") || err.contains("FORK"),
        "{err}"
    );
    assert!(err.contains(WITNESS), "names the witness: {err}");
    assert!(err.contains("refusing to append further actions"), "{err}");
    assert_eq!(
        mock.requests().len(),
        requests_before,
        "the model was never asked: nothing happened"
    );
    // The refusal is on record in the (rolled-back) log, and the session ended.
    let tail = s
        .stele
        .run(&["audit", "tail", "-n", "5", "--json"])
        .unwrap();
    let tail = String::from_utf8_lossy(&tail.stdout);
    assert!(tail.contains("refused by witnessing"), "{tail}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn an_unreachable_witness_is_a_warning_unless_a_quorum_is_required() {
    if !sandbox_available("an_unreachable_witness_is_a_warning_unless_a_quorum_is_required") {
        return;
    }
    let s = setup();
    // A witness that was started (for its key) and then stopped: nothing listens.
    let w = start_witness(&s);
    let (url, vkey) = (w.url.clone(), w.vkey.clone());
    drop(w);
    let mock = MockModel::start().unwrap();

    write_config(&s, &url, &vkey, 0);
    let o = run_session(&s, &mock);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("warning") && err.contains("unreachable"),
        "{err}"
    );
    assert!(err.contains(WITNESS), "{err}");
    let asked = mock.requests().len();
    assert_eq!(asked, 2, "the session ran");

    write_config(&s, &url, &vkey, 1);
    let o = run_session(&s, &mock);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("quorum not met"), "{err}");
    assert_eq!(
        mock.requests().len(),
        asked,
        "refused before the agent acted"
    );
}
