#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! External synchrony, as a crash shows it: a read-heavy command that then
//! writes and connects is killed (`kill -9` of stele) at points spread over
//! its run. Reads are appended without waiting for the disk; every write
//! to the host and every connection waits for durability of its own entry,
//! which covers everything ordered before it. So after each crash, every
//! file that reached the host and every connection the service saw has its
//! intent in the log, and every read the program made before them is in the
//! log before that intent (SECURITY.md, "Durability").

use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stele_tests::{leaves_json, stele_bin, Stele};

const INPUTS: usize = 300;
const OUTPUTS: usize = 40;

/// Reads every input, then writes the outputs one by one, connecting to
/// the service through stele's proxy after every fourth.
const PROGRAM: &str = r#"
import os, socket, sys
root, port = "/workspace", int(sys.argv[1])
for f in sorted(os.listdir(root + "/in")):
    with open(root + "/in/" + f, "rb") as fh:
        fh.read()
for i in range(int(sys.argv[2])):
    with open(root + "/out/o%d.txt" % i, "w") as fh:
        fh.write("x")
    if i % 4 == 3:
        s = socket.create_connection(("127.0.0.1", 3128), timeout=30)
        s.sendall(("CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (port, port)).encode())
        s.recv(100)
        s.sendall(b"wrote %d" % i)
        s.close()
"#;

/// Counts connections that reached it.
fn service() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let n = Arc::new(AtomicUsize::new(0));
    let seen = n.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            seen.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut b = [0u8; 64];
                let _ = s.read(&mut b);
            });
        }
    });
    (port, n)
}

struct Run {
    _dir: tempfile::TempDir,
    s: Stele,
    ws: PathBuf,
    bundle: PathBuf,
}

impl Run {
    fn new(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let s = Stele::new(&dir.path().join("state"));
        let o = s
            .run(&["keys", "init", "--origin", "sync.stele.invalid/log"])
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(ws.join("in")).unwrap();
        std::fs::create_dir_all(ws.join("out")).unwrap();
        for i in 0..INPUTS {
            std::fs::write(ws.join(format!("in/f{i:04}.txt")), format!("input {i}")).unwrap();
        }
        std::fs::write(ws.join("prog.py"), PROGRAM).unwrap();
        stele_tests::share(&ws).unwrap();
        let bundle = dir.path().join("bundle");
        std::fs::create_dir_all(bundle.join("org")).unwrap();
        std::fs::write(
            bundle.join("schema.cedarschema"),
            s.run(&["policy", "schema"]).unwrap().stdout,
        )
        .unwrap();
        std::fs::write(bundle.join("members.toml"), "[users]\n").unwrap();
        std::fs::write(
            bundle.join("org/org.cedar"),
            format!(
                r#"
@id("org.files")
permit (principal, action in [Action::"file.read", Action::"file.write", Action::"file.list"], resource is File);
@id("org.exec")
permit (principal, action == Action::"exec", resource is Program);
@id("org.net")
permit (principal, action == Action::"net.connect", resource)
when {{ resource has address && resource.address == "127.0.0.1" && resource.port == {port} }};
"#
            ),
        )
        .unwrap();
        Run {
            _dir: dir,
            s,
            ws,
            bundle,
        }
    }

    fn command(&self, port: u16) -> Command {
        let mut c = Command::new(stele_bin());
        c.args(["sandbox", "exec", "--workspace"])
            .arg(&self.ws)
            .arg("--policy")
            .arg(&self.bundle)
            .args([
                "--user",
                "alice",
                "--network",
                "proxy",
                "--backend",
                "process",
                "--approve",
                "deny",
                "--",
                "python3",
                "/workspace/prog.py",
            ])
            .arg(port.to_string())
            .arg(OUTPUTS.to_string())
            .env("STELE_STATE_DIR", &self.s.state)
            .env("USER", "alice")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    fn db(&self) -> PathBuf {
        self.s.state.join("audit.db")
    }
}

fn outputs_on_host(ws: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(ws.join("out"))
        .unwrap()
        .map(|e| format!("out/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    v.sort();
    v
}

/// What the crash left: every effect outside the sandbox has its intent,
/// after every read the program made before it.
fn check(run: &Run, connections: usize, label: &str) {
    let leaves = leaves_json(&run.s, &run.db()).unwrap();
    let op = |l: &serde_json::Value| l["data"]["op"].as_str().unwrap_or("").to_string();
    let path = |l: &serde_json::Value| l["target"]["path"].as_str().unwrap_or("").to_string();
    let seq = |l: &serde_json::Value| l["seq"].as_u64().unwrap();
    let reads: Vec<(String, u64)> = leaves
        .iter()
        .filter(|l| l["kind"] == "file.open" && op(l) == "open" && path(l).starts_with("in/"))
        .map(|l| (path(l), seq(l)))
        .collect();
    let creates: Vec<(String, u64)> = leaves
        .iter()
        .filter(|l| l["kind"] == "file.open" && op(l) == "create")
        .map(|l| (path(l), seq(l)))
        .collect();
    let connects: Vec<u64> = leaves
        .iter()
        .filter(|l| l["kind"] == "net.connect")
        .map(seq)
        .collect();
    let on_host = outputs_on_host(&run.ws);
    for f in &on_host {
        assert!(
            creates.iter().any(|(p, _)| p == f),
            "{label}: {f} reached the host but its intent is not in the log"
        );
    }
    assert!(
        connections <= connects.len(),
        "{label}: the service saw {connections} connections, the log has {} intents",
        connects.len()
    );
    let first_effect = creates
        .iter()
        .filter(|(p, _)| on_host.contains(p))
        .map(|(_, s)| *s)
        .chain(connects.iter().take(connections).copied())
        .min();
    if let Some(first) = first_effect {
        let mut read: Vec<&str> = reads.iter().map(|(p, _)| p.as_str()).collect();
        read.sort();
        read.dedup();
        assert_eq!(
            read.len(),
            INPUTS,
            "{label}: an effect happened (entry {first}) but only {} of the {INPUTS} reads before it are in the log",
            read.len()
        );
        let last_read = reads.iter().map(|(_, s)| *s).max().unwrap();
        assert!(
            last_read < first,
            "{label}: a read (entry {last_read}) is ordered after the first effect (entry {first})"
        );
    }
    let o = run
        .s
        .run(&["audit", "verify", "--db", run.db().to_str().unwrap()])
        .unwrap();
    assert!(
        o.status.success(),
        "{label}: the log does not verify after the crash: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn after_kill_9_every_write_and_connection_has_every_read_before_it() {
    if !stele_tests::sandbox_available(
        "after_kill_9_every_write_and_connection_has_every_read_before_it",
    ) {
        return;
    }
    let (port, seen) = service();
    // A whole run first: it must succeed and shows how long one takes.
    let whole = Run::new(port);
    let t = Instant::now();
    let o = whole.command(port).output().unwrap();
    let took = t.elapsed();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(outputs_on_host(&whole.ws).len(), OUTPUTS);
    let connections = seen.swap(0, Ordering::SeqCst);
    assert_eq!(connections, OUTPUTS / 4, "every connection went through");
    check(&whole, connections, "whole run");

    // Then crashes spread over the run (with some jitter from the clock).
    let points = 7u32;
    let mut effects_seen = 0;
    for k in 1..=points {
        let run = Run::new(port);
        let jitter = Duration::from_micros(u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_micros()
                % 20_000,
        ));
        let at = took * k / (points + 1) + jitter;
        seen.store(0, Ordering::SeqCst);
        let mut child = run.command(port).spawn().unwrap();
        std::thread::sleep(at);
        child.kill().unwrap();
        let _ = child.wait();
        // Connections still in flight settle before counting.
        std::thread::sleep(Duration::from_millis(200));
        let connections = seen.load(Ordering::SeqCst);
        if !outputs_on_host(&run.ws).is_empty() || connections > 0 {
            effects_seen += 1;
        }
        check(&run, connections, &format!("killed after {at:?}"));
    }
    eprintln!("{effects_seen} of {points} crashes came after some effects");
}
