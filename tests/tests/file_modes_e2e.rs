#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Every file and folder stele creates on the host is private — folders
//! 0700 (0500 when read-only), files 0600 (0400) — whatever the umask
//! (issue 12, item 9). The main commands run under umask 0000 in a scratch
//! home (default state folder, nothing from the caller's environment):
//! `keys init`, `audit init`, `sandbox exec`, `run` with the mock model,
//! `demo`, `audit export` (folder and tar), a witness publishing its state,
//! the micro-VM image store, and the session attestations they leave. Then every path stele made is
//! checked. Workspaces are not stele's: they are shared with the sandbox's
//! user on purpose, inside a private folder.
//!
//! Files made by the audit crate (the database and its siblings, the
//! attestations folder) are listed apart: their modes are fixed in that
//! crate, so this test passes in full with both changes.

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::json;
use stele_tests::mock_model::{MockModel, Turn};
use stele_tests::{clean_command, share, stele_bin};

struct Env {
    _d: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    extra: Vec<(String, String)>,
}

impl Env {
    /// `stele ARGS` under umask 0000.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = clean_command("sh", &self.home);
        c.current_dir(&self.root)
            .args(["-c", "umask 0000; exec \"$0\" \"$@\""])
            .arg(stele_bin())
            .args(args)
            .envs(self.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    fn stele(&self, args: &[&str]) -> Output {
        let o = self.cmd(args).output().unwrap();
        assert!(
            o.status.success(),
            "stele {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }
}

struct Witness(Child);

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `stele witness serve` (under umask 0000) with its key and state under
/// the state folder; returns it and its URL.
fn start_witness(e: &Env, key: &Path, log_vkey: &str) -> (Witness, String) {
    let mut child = e
        .cmd(&[
            "witness",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--key",
            key.to_str().unwrap(),
            "--log",
            log_vkey,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("listening on"), "{line}");
    let addr = line.trim().rsplit(' ').next().unwrap().to_string();
    std::thread::spawn(move || {
        let mut sink = String::new();
        while err.read_line(&mut sink).unwrap_or(0) > 0 {
            sink.clear();
        }
    });
    (Witness(child), format!("http://{addr}"))
}

fn walk(p: &Path, out: &mut Vec<PathBuf>) {
    out.push(p.to_path_buf());
    if std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
        for e in std::fs::read_dir(p).unwrap() {
            walk(&e.unwrap().path(), out);
        }
    }
}

/// The audit crate's files: the database, its WAL, shared memory and lock
/// files, and the attestations folder with everything in it.
fn made_by_audit_crate(p: &Path) -> bool {
    p.components().any(|c| {
        let n = c.as_os_str().to_string_lossy();
        n.ends_with(".db")
            || n.ends_with(".db-wal")
            || n.ends_with(".db-shm")
            || n.ends_with(".db.lock")
            || n.ends_with(".db.attestations")
    })
}

#[test]
fn everything_stele_creates_is_private_under_umask_0000() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().canonicalize().unwrap();
    let home = root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut e = Env {
        _d: d,
        root: root.clone(),
        home: home.clone(),
        extra: Vec::new(),
    };
    let state = home.join(".local/state/stele");
    let ws = root.join("ws");
    std::fs::create_dir_all(ws.join("reports")).unwrap();
    share(&ws).unwrap();
    let w = ws.to_str().unwrap();

    // The log key, the log, and a witness key under the state folder.
    e.stele(&["keys", "init", "--origin", "modes.stele.invalid/log"]);
    e.stele(&["audit", "init"]);
    let wkey = state.join("witness/w.key");
    e.stele(&[
        "keys",
        "init",
        "--key",
        wkey.to_str().unwrap(),
        "--origin",
        "witness.modes.invalid/w",
    ]);
    let log_vkey = String::from_utf8_lossy(&e.stele(&["keys", "show"]).stdout)
        .trim()
        .to_string();
    let wvkey = String::from_utf8_lossy(
        &e.stele(&["witness", "vkey", "--key", wkey.to_str().unwrap()])
            .stdout,
    )
    .trim()
    .to_string();
    let (_witness, url) = start_witness(&e, &wkey, &log_vkey);
    // The configuration is the user's own file (stele never writes one):
    // kept beside the home, not under it, so that only stele's files are checked.
    let config = root.join("config.toml");
    std::fs::write(
        &config,
        format!("[[witness]]\nurl = {url:?}\nkey = {wvkey:?}\n"),
    )
    .unwrap();
    e.extra
        .push(("STELE_CONFIG".into(), config.to_str().unwrap().into()));

    // A sandboxed command, a run with the mock model, the demo.
    e.stele(&[
        "sandbox",
        "exec",
        "--workspace",
        w,
        "--",
        "python3",
        "-c",
        "open('reports/a.txt','w').write('a')",
    ]);
    let mock = MockModel::start().unwrap();
    mock.push(
        Turn::new()
            .tool_use(
                "t1",
                "file_write",
                json!({"path": "reports/b.txt", "content": "b"}),
            )
            .into(),
    );
    mock.push(
        Turn::new()
            .tool_use("t2", "final_answer", json!({"answer": "done"}))
            .into(),
    );
    e.extra
        .push(("ANTHROPIC_API_KEY".into(), "sk-ant-test-0123456789".into()));
    e.extra.push(("ANTHROPIC_BASE_URL".into(), mock.base_url()));
    // The default template pins Anthropic's API: a copy (outside the
    // home, so not checked here) that allows the mock on this machine.
    let policy = stele_tests::template_for_mock("strict-default", &root.join("policy"));
    e.stele(&[
        "run",
        "--policy",
        policy.to_str().unwrap(),
        "--workspace",
        w,
        "--model",
        "anthropic:claude-sonnet-4-5",
        "Write b",
    ]);
    e.stele(&["demo"]);
    let demo_base = home.join(".local/share/stele/demo");
    assert!(
        demo_base
            .join("run-1/workspace/reports/by-client.csv")
            .exists(),
        "the demo ran in its default folder"
    );

    // Exports: a folder and a tar file.
    let exports = root.join("exports");
    std::fs::create_dir_all(&exports).unwrap();
    e.stele(&[
        "audit",
        "export",
        "--out",
        exports.join("all").to_str().unwrap(),
    ]);
    e.stele(&[
        "audit",
        "export",
        "--out",
        exports.join("all.tar").to_str().unwrap(),
    ]);
    // The micro-VM image store as `vm image build` makes it (the build
    // itself stops at once: no apt-cache on this PATH).
    let o = Command::new("/bin/sh")
        .env_clear()
        .env("HOME", &home)
        .env("PATH", "/nonexistent")
        .current_dir(&root)
        .args(["-c", "umask 0000; exec \"$0\" \"$@\""])
        .arg(stele_bin())
        .args(["vm", "image", "build"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "the build needs apt-cache");
    assert!(
        state.join("vm/images").is_dir(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        state.join("witness/w.key.state.json").exists(),
        "the witness kept its state"
    );
    assert!(
        state.join("audit.db.attestations").exists(),
        "sessions were attested"
    );

    // Everything stele made: the folders it created in the empty home, the
    // state, the demo (but its workspace), the exports.
    let mut paths = Vec::new();
    walk(&home.join(".local"), &mut paths);
    walk(&exports.join("all"), &mut paths);
    paths.push(exports.join("all.tar"));
    let demo_ws = demo_base.join("run-1/workspace");
    let (mut runtime, mut audit_crate) = (Vec::new(), Vec::new());
    let mut checked = 0;
    for p in paths.iter().filter(|p| !p.starts_with(&demo_ws)) {
        let m = std::fs::symlink_metadata(p).unwrap();
        let mode = m.permissions().mode() & 0o7777;
        checked += 1;
        // No bits for group or others; no setuid, setgid or sticky bits.
        if mode & 0o7077 != 0 {
            let line = format!("{:o} {}", mode, p.display());
            if made_by_audit_crate(p) {
                audit_crate.push(line);
            } else {
                runtime.push(line);
            }
        }
    }
    assert!(checked > 40, "only {checked} paths checked");
    // The demo's workspace is the sandbox's, inside a private folder.
    let run1 = std::fs::metadata(demo_base.join("run-1"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(run1 & 0o777, 0o700);
    assert!(
        runtime.is_empty() && audit_crate.is_empty(),
        "readable by others:\n  made by the runtime/CLI:\n    {}\n  made by the audit crate:\n    {}",
        runtime.join("\n    "),
        audit_crate.join("\n    ")
    );
}
