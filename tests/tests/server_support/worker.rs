//! A real `stele worker` for the server's end-to-end tests: its own state
//! folder and log key (`stele keys init` with its own origin), the mock
//! model's environment, claiming from a [`Server`] with a worker token.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use stele_tests::mock_model::Wire;
use stele_tests::Stele;

use super::Server;
use crate::e2e_common;

/// A running worker.
pub struct Worker {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub s: Stele,
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
}

impl Worker {
    /// Start worker `name` (at most `capacity` sessions) on `srv` with `token`;
    /// back once it claims.
    pub fn start(srv: &Server, name: &str, token: &str, capacity: u32) -> Worker {
        let dir = tempfile::tempdir().unwrap();
        let s = Stele::new(&dir.path().join("state"));
        let o = s
            .run(&[
                "keys",
                "init",
                "--origin",
                &format!("{name}.e2e.stele.invalid/log"),
            ])
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut child = Command::new(stele_tests::stele_bin())
            .args([
                "worker", "--server", &srv.base, "--token", token, "--name", name,
            ])
            .args(["--capacity", &capacity.to_string()])
            .env("STELE_STATE_DIR", &s.state)
            .env("USER", "not-a-member")
            .envs(e2e_common::env(Wire::Anthropic, &srv.mock))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = String::new();
        loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!("stele worker ended before claiming:\n{seen}");
            };
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("claiming from") {
                break;
            }
        }
        let err = Arc::new(Mutex::new(seen));
        let e = err.clone();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                let mut e = e.lock().unwrap();
                e.push_str(&l);
                e.push('\n');
            }
        });
        Worker {
            name: name.to_string(),
            dir,
            s,
            child: Some(child),
            stderr: err,
        }
    }

    /// What it printed so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Send `signal` and wait (at most `limit`); how it exited.
    pub fn signal(&mut self, signal: &str, limit: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("the worker is not running");
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &c.id().to_string()])
            .status();
        let began = Instant::now();
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if began.elapsed() > limit {
                let _ = c.kill();
                panic!(
                    "stele worker did not end within {limit:?} of SIG{signal}:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its log's leaves (stop it first).
    pub fn leaves(&self) -> Vec<Value> {
        stele_tests::leaves_json(&self.s, &self.s.state.join("audit.db")).unwrap()
    }

    /// The sessions started in its log.
    pub fn sessions(&self) -> Vec<String> {
        self.leaves()
            .iter()
            .filter(|l| l["kind"] == "session.start")
            .map(|l| l["session"]["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// `stele audit verify` passes on its state folder.
    pub fn verify(&self) {
        let o = self.s.run(&["audit", "verify"]).unwrap();
        assert!(
            o.status.success(),
            "worker {}: {}{}",
            self.name,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A free port on the loopback (a test that restarts a server where its
/// workers call).
pub fn free_listen() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

impl Server {
    /// A second `stele serve` on this one's configuration (so on the same
    /// store) with its own state folder (its own log and key), listening
    /// on `listen`; not started ([`Server::spawn`]). Its accounts and
    /// tokens are this one's: they are in the shared store.
    pub fn twin(&self, listen: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let s = e2e_common::setup(dir.path());
        Server {
            dir,
            s,
            ws: self.ws.clone(),
            config: self.config.clone(),
            mock: stele_tests::mock_model::MockModel::start().unwrap(),
            base: String::new(),
            http: self.http.clone(),
            started: Duration::ZERO,
            child: None,
            stderr: Arc::new(Mutex::new(String::new())),
            listen: listen.to_string(),
            env: self.env.clone(),
        }
    }
}
