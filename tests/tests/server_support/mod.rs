//! A real `stele serve` on 127.0.0.1 for the server's end-to-end tests:
//! its own state folder and key, the finance bundle for the mock model, a
//! workspace `books` for the finance team, accounts made with `stele user
//! add` and tokens with `stele token create`, the mock model over the real
//! wire. Stopped with SIGTERM; the log is read and verified afterwards.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use stele_tests::mock_model::{MockModel, Wire};
use stele_tests::Stele;

use crate::e2e_common;

pub mod api;
pub mod oidc;
pub mod shipping;
pub mod worker;

/// A running server and what it was set up with.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub s: Stele,
    pub ws: PathBuf,
    pub config: PathBuf,
    pub mock: MockModel,
    pub base: String,
    pub http: reqwest::Client,
    pub started: Duration,
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
    listen: String,
    /// More environment for the server process (e.g. `STELE_CONFIG`).
    pub env: Vec<(String, String)>,
}

/// Accounts every server has: alice and dave (finance members), bob (finance approver),
/// rita (finance reviewer), carol (ops approver).
pub const ACCOUNTS: &[(&str, &str, &str)] = &[
    ("alice", "finance", "member"),
    ("dave", "finance", "member"),
    ("bob", "finance", "approver"),
    ("rita", "finance", "reviewer"),
    ("carol", "ops", "approver"),
];

impl Server {
    /// Set up and start a server; `extra` Cedar is added to the finance team's policies.
    pub fn start(extra: &str, server_toml: &str) -> Server {
        Self::start_on(extra, server_toml, "127.0.0.1:0")
    }

    /// [`Server::start`] listening on `listen` (a test that must know the port first).
    pub fn start_on(extra: &str, server_toml: &str, listen: &str) -> Server {
        Self::start_with(extra, server_toml, listen, reqwest::Client::new())
    }

    /// [`Server::start_on`] with the test's own HTTP client (one that trusts a test certificate).
    pub fn start_with(
        extra: &str,
        server_toml: &str,
        listen: &str,
        http: reqwest::Client,
    ) -> Server {
        let mut server = Self::prepare_with(extra, server_toml, listen, http);
        server.spawn();
        server
    }

    /// Set up a server without starting it (a test adds to `env` first, then [`Server::spawn`]).
    pub fn prepare(extra: &str, server_toml: &str) -> Server {
        Self::prepare_with(extra, server_toml, "127.0.0.1:0", reqwest::Client::new())
    }

    /// [`Server::prepare`] listening on `listen` with the caller's HTTP client (the
    /// benchmark fills the log before [`Server::spawn`]).
    pub fn prepare_with(
        extra: &str,
        server_toml: &str,
        listen: &str,
        http: reqwest::Client,
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let ws = e2e_common::workspace(dir.path());
        std::fs::create_dir_all(ws.join("outbox")).unwrap();
        let s = e2e_common::setup(dir.path());
        let policy = e2e_common::policy(dir.path(), Wire::Anthropic, extra);
        let config = dir.path().join("server.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\npolicy = {policy:?}\nmodel = \"anthropic:claude-sonnet-4-5\"\n{server_toml}\n\
                 [workspace.books]\npath = {ws:?}\nteams = [\"finance\"]\n"
            ),
        )
        .unwrap();
        for (name, team, role) in ACCOUNTS {
            let o = s
                .run(&[
                    "user",
                    "add",
                    name,
                    "--team",
                    team,
                    "--role",
                    role,
                    "--config",
                    config.to_str().unwrap(),
                ])
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        let mock = MockModel::start().unwrap();
        Server {
            dir,
            s,
            ws,
            config,
            mock,
            base: String::new(),
            http,
            started: Duration::ZERO,
            child: None,
            stderr: Arc::new(Mutex::new(String::new())),
            listen: listen.to_string(),
            env: Vec::new(),
        }
    }

    /// Start (again) the server of this set-up and wait until it is ready.
    pub fn spawn(&mut self) {
        let began = Instant::now();
        let mut child = Command::new(stele_tests::stele_bin())
            .args(["serve", "--listen", &self.listen, "--config"])
            .arg(&self.config)
            .env("STELE_STATE_DIR", &self.s.state)
            // The principal comes from the token, never from $USER.
            .env("USER", "not-a-member")
            .envs(e2e_common::env(Wire::Anthropic, &self.mock))
            .envs(self.env.clone())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = String::new();
        let base = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!("stele serve ended before listening:\n{seen}");
            };
            seen.push_str(&line);
            seen.push('\n');
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        let err = self.stderr.clone();
        err.lock().unwrap().push_str(&seen);
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                let mut e = err.lock().unwrap();
                e.push_str(&l);
                e.push('\n');
            }
        });
        self.base = base;
        self.child = Some(child);
        // Ready: /readyz answers 200.
        let rt = runtime();
        rt.block_on(async {
            loop {
                if let Ok(r) = self.http.get(self.url("/readyz")).send().await {
                    if r.status() == 200 {
                        break;
                    }
                }
                assert!(began.elapsed() < Duration::from_secs(30), "never ready");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        self.started = began.elapsed();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A fresh API token for `user`, from `stele token create` (its
    /// default scopes).
    pub fn token(&self, user: &str) -> String {
        self.token_with(user, &[])
    }

    /// A fresh API token for `user` with `--scope scopes`.
    #[allow(dead_code)]
    pub fn token_scoped(&self, user: &str, scopes: &str) -> String {
        self.token_with(user, &["--scope", scopes])
    }

    fn token_with(&self, user: &str, more: &[&str]) -> String {
        let config = self.config.to_str().unwrap();
        let mut args = vec!["token", "create", "--user", user, "--config", config];
        args.extend_from_slice(more);
        let o = self.s.run(&args).unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    }

    /// The server process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the server printed so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Stop with SIGTERM and wait; then the log can be read.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let began = Instant::now();
            loop {
                if c.try_wait().unwrap().is_some() {
                    break;
                }
                if began.elapsed() > Duration::from_secs(20) {
                    let _ = c.kill();
                    panic!("stele serve did not stop on SIGTERM:\n{}", self.stderr());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Send `signal` (`KILL`, `TERM`) to the server and wait for it to end
    /// (at most `limit`); how it exited.
    pub fn signal(&mut self, signal: &str, limit: Duration) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("the server is not running");
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
                    "stele serve did not end within {limit:?} of SIG{signal}:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log's leaves (stop the server first).
    pub fn leaves(&self) -> Vec<Value> {
        stele_tests::leaves_json(&self.s, &self.s.state.join("audit.db")).unwrap()
    }

    /// `stele audit verify` passes.
    pub fn verify(&self) {
        let o = self.s.run(&["audit", "verify"]).unwrap();
        assert!(
            o.status.success(),
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// The state folder's server.db, for a test that must age a token.
    pub fn store(&self) -> PathBuf {
        self.s.state.join("server.db")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::io::stderr().flush();
    }
}

/// A runtime for a test's requests.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Server-sent events from a body: (id, event JSON).
pub fn parse_sse(body: &str) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    for block in body.split("\n\n") {
        let mut id = None;
        let mut data = String::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                id = Some(v.trim().parse().unwrap());
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        if let Some(id) = id {
            out.push((id, serde_json::from_str(&data).unwrap()));
        }
    }
    out
}

/// Leaves the server recorded for its own decisions of `action`.
pub fn server_decisions<'a>(leaves: &'a [Value], action: &str) -> Vec<&'a Value> {
    leaves
        .iter()
        .filter(|l| l["kind"] == "policy.decision" && l["data"]["server_action"] == action)
        .collect()
}
