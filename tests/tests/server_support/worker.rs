//! A real `stele worker` for the server's end-to-end tests: its own state
//! folder and log key (`stele keys init` with its own origin), the mock
//! model's environment, claiming from a [`Server`] with a worker token.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stele_tests::mock_model::{Turn, Wire};
use stele_tests::postgres::TempCluster;
use stele_tests::Stele;

use super::api::get;
use super::{parse_sse, Server};
use crate::e2e_common;

/// `stele worker` on the state `s`, back once it claims; what it prints is
/// added to `err`.
fn spawn(
    srv: &Server,
    base: &str,
    s: &Stele,
    (name, token, capacity): (&str, &str, u32),
    err: &Arc<Mutex<String>>,
) -> Child {
    let mut child = Command::new(stele_tests::stele_bin())
        .args(["worker", "--server", base, "--token", token, "--name", name])
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
    loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.kill();
            panic!(
                "stele worker ended before claiming:\n{}",
                err.lock().unwrap()
            );
        };
        let mut e = err.lock().unwrap();
        e.push_str(&line);
        e.push('\n');
        if line.contains("claiming from") {
            break;
        }
    }
    let e = err.clone();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            let mut e = e.lock().unwrap();
            e.push_str(&l);
            e.push('\n');
        }
    });
    child
}

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
        Self::start_at(srv, &srv.base, name, token, capacity)
    }

    /// [`Worker::start`] calling `base` (a proxy in front of several
    /// servers) with `srv`'s model.
    pub fn start_at(srv: &Server, base: &str, name: &str, token: &str, capacity: u32) -> Worker {
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
        let err = Arc::new(Mutex::new(String::new()));
        let child = spawn(srv, base, &s, (name, token, capacity), &err);
        Worker {
            name: name.to_string(),
            dir,
            s,
            child: Some(child),
            stderr: err,
        }
    }

    /// Start it again on the same state (after it stopped), calling `srv`.
    pub fn restart(&mut self, srv: &Server, token: &str, capacity: u32) {
        assert!(
            self.child.is_none(),
            "worker {} is still running",
            self.name
        );
        let child = spawn(
            srv,
            &srv.base,
            &self.s,
            (&self.name, token, capacity),
            &self.stderr,
        );
        self.child = Some(child);
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

/// A load balancer without stickiness: each request goes to the next
/// server in turn (a real HTTP proxy on its own thread and runtime).
pub struct Alternate {
    /// Its base URL.
    pub base: String,
    /// How many requests each server took.
    pub taken: Arc<Vec<std::sync::atomic::AtomicUsize>>,
}

impl Alternate {
    /// Start one in front of `backends` (base URLs).
    pub fn start(backends: &[String]) -> Alternate {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let backends: Arc<Vec<String>> = Arc::new(backends.to_vec());
        let taken: Arc<Vec<AtomicUsize>> =
            Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
        let next = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let counts = taken.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(format!("http://{}", l.local_addr().unwrap()))
                    .unwrap();
                let http = reqwest::Client::new();
                let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
                    let (backends, counts, next, http) =
                        (backends.clone(), counts.clone(), next.clone(), http.clone());
                    async move {
                        let i = next.fetch_add(1, Ordering::SeqCst) % backends.len();
                        counts[i].fetch_add(1, Ordering::SeqCst);
                        let method =
                            reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap();
                        let path = req
                            .uri()
                            .path_and_query()
                            .map_or("/".to_string(), |p| p.as_str().to_string());
                        let mut out = http.request(method, format!("{}{path}", backends[i]));
                        for h in ["authorization", "content-type"] {
                            if let Some(v) = req.headers().get(h) {
                                out = out.header(h, v.to_str().unwrap());
                            }
                        }
                        let body = axum::body::to_bytes(req.into_body(), 1 << 24)
                            .await
                            .unwrap();
                        let r = match out.body(body.to_vec()).send().await {
                            Ok(r) => r,
                            Err(_) => {
                                return axum::http::Response::builder()
                                    .status(502)
                                    .body(axum::body::Body::empty())
                                    .unwrap()
                            }
                        };
                        let status = r.status().as_u16();
                        let ct = r
                            .headers()
                            .get("content-type")
                            .map(|v| v.to_str().unwrap_or("").to_string());
                        let bytes = r.bytes().await.unwrap_or_default();
                        let mut b = axum::http::Response::builder().status(status);
                        if let Some(ct) = ct {
                            b = b.header("content-type", ct);
                        }
                        b.body(axum::body::Body::from(bytes.to_vec())).unwrap()
                    }
                });
                axum::serve(l, app).await.unwrap();
            });
        });
        Alternate {
            base: rx.recv().unwrap(),
            taken,
        }
    }

    /// How many requests each server took.
    pub fn counts(&self) -> Vec<usize> {
        self.taken
            .iter()
            .map(|c| c.load(std::sync::atomic::Ordering::SeqCst))
            .collect()
    }
}

// Shared by the worker end-to-end tests.

/// A migrated PostgreSQL database for one server; None (said loudly) when
/// the machine has no PostgreSQL.
pub fn database(cluster: &TempCluster, name: &str) -> String {
    let url = cluster.create_db(name).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = e2e_common::setup(dir.path());
    let policy = e2e_common::policy(dir.path(), Wire::Anthropic, "");
    let cfg = dir.path().join("server.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\npolicy = {policy:?}\ndb = {:?}\n[store]\nurl = {url:?}\n",
            s.state.join("audit.db")
        ),
    )
    .unwrap();
    let o = s
        .run(&["serve", "--migrate", "--config", cfg.to_str().unwrap()])
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    url
}

/// A server on `url` whose sessions run on workers, leases of `lease` seconds.
pub fn server(url: &str, extra: &str, lease: u64) -> Server {
    server_on(url, extra, lease, "127.0.0.1:0")
}

/// [`server`] listening on `listen`.
pub fn server_on(url: &str, extra: &str, lease: u64, listen: &str) -> Server {
    let srv = Server::start_on(
        extra,
        &format!("[store]\nurl = {url:?}\n[workers]\nrun = \"remote\"\nlease_secs = {lease}\n"),
        listen,
    );
    let config = srv.config.to_str().unwrap().to_string();
    let o = srv
        .s
        .run(&[
            "user", "add", "ada", "--team", "ops", "--role", "admin", "--config", &config,
        ])
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    srv
}

/// The whole event stream of an ended session.
pub async fn events(srv: &Server, token: &str, id: &str) -> Vec<(u64, Value)> {
    let r = get(srv, token, &format!("/api/v1/sessions/{id}/events")).await;
    assert_eq!(r.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(60), r.text())
        .await
        .expect("the event stream did not end with the session")
        .unwrap();
    parse_sse(&body)
}

/// Wait (at most 30 s) until session `id` has an event `kind`.
pub async fn wait_event(srv: &Server, token: &str, id: &str, kind: &str) {
    let began = std::time::Instant::now();
    loop {
        let mut r = get(srv, token, &format!("/api/v1/sessions/{id}/events")).await;
        let mut body = String::new();
        while let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_millis(300), r.chunk()).await
        {
            body.push_str(&String::from_utf8_lossy(&chunk));
        }
        if parse_sse(&body).iter().any(|(_, e)| e["event"] == kind) {
            return;
        }
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "session {id}: no {kind} event\n{}",
            srv.stderr()
        );
    }
}

/// Every event once, numbered 1, 2, … in order, one start and one end.
pub fn once_in_order(id: &str, evs: &[(u64, Value)]) {
    let ns: Vec<u64> = evs.iter().map(|(n, _)| *n).collect();
    let want: Vec<u64> = (1..=evs.len() as u64).collect();
    assert_eq!(ns, want, "session {id}: {evs:?}");
    for kind in ["start", "end"] {
        let n = evs.iter().filter(|(_, e)| e["event"] == kind).count();
        assert_eq!(n, 1, "session {id}: {kind} events: {evs:?}");
    }
    assert_eq!(evs.last().unwrap().1["event"], "end", "{evs:?}");
}

pub fn sleep_then_finish(srv: &Server, n: usize) {
    for _ in 0..n {
        srv.mock.push(
            Turn::new()
                .tool_use(
                    "x",
                    "exec",
                    json!({"argv": ["python3", "-c", "import time; time.sleep(1)"]}),
                )
                .into(),
        );
        srv.mock.push(
            Turn::new()
                .tool_use("f", "final_answer", json!({"answer": "done"}))
                .into(),
        );
    }
}

/// One turn that runs a command sleeping `secs`, then a final answer.
pub fn sleep_secs_then_finish(srv: &Server, secs: u32) {
    srv.mock.push(
        Turn::new()
            .tool_use(
                "x",
                "exec",
                json!({"argv": ["python3", "-c", &format!("import time; time.sleep({secs})")]}),
            )
            .into(),
    );
    srv.mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "done"}))
            .into(),
    );
}
