#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Figures for `stele serve` (issue 18, docs/server.md "Measured"), taken
//! through the real server: the `stele` binary next to this example
//! (`target/<profile>/stele`) as a separate process, on a log already
//! holding `--entries` entries (1,000,000 by default), with the real gate,
//! log and process sandbox, the finance policy, and a scripted model over
//! the real Anthropic wire (`stele_tests::mock_model`). Real HTTP on
//! loopback (reqwest).
//!
//! - start to ready: process spawn → first 200 from `/readyz`;
//! - with `--sessions` (50) sessions running at once: `GET /api/v1/sessions`
//!   p50/p99 and `POST /api/v1/approvals/{id}` p50/p99 (each session asks
//!   `--asks` times: a letter in outbox/, four-eyes);
//! - event latency: from a tool decision's audit entry (its `ts`) to an SSE
//!   client receiving the `decision` event naming that entry (each session
//!   makes `--denials` refused writes), with one client per session and
//!   with `--clients` (200) clients spread over the sessions; every client
//!   must receive every event of its session;
//! - memory (the server's RSS): per session while every session is in a
//!   model call (running) and while every session is parked on an approval
//!   (idle), and with the `--clients` streams held.
//!
//! ```sh
//! scripts/bench-server [--json] [--sessions N] [--clients N] [--entries N]
//! # = cargo build --release -p stele-cli -p stele-tests --example server_bench &&
//! #   target/release/examples/server_bench …
//! ```

#[path = "../tests/e2e_common/mod.rs"]
mod e2e_common;
#[path = "../tests/server_support/mod.rs"]
mod server_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use server_support::{runtime, Server};
use stele_tests::mock_model::{Reply, Turn};

#[derive(Debug, Clone)]
struct Args {
    sessions: usize,
    clients: usize,
    entries: u64,
    requests: usize,
    asks: usize,
    denials: usize,
    json: bool,
}

fn args() -> Args {
    let mut a = Args {
        sessions: 50,
        clients: 200,
        entries: 1_000_000,
        requests: 500,
        asks: 2,
        denials: 3,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--json" {
            a.json = true;
            continue;
        }
        let v = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let n = |v: &str| -> u64 {
            v.parse()
                .unwrap_or_else(|_| panic!("{flag}: {v:?} is not a number"))
        };
        match flag.as_str() {
            "--sessions" => a.sessions = n(&v).max(1) as usize,
            "--clients" => a.clients = n(&v).max(1) as usize,
            "--entries" => a.entries = n(&v),
            "--requests" => a.requests = n(&v).max(1) as usize,
            "--asks" => a.asks = n(&v).max(1) as usize,
            "--denials" => a.denials = n(&v).max(1) as usize,
            other => panic!(
                "unknown argument {other:?} (--sessions --clients --entries --requests --asks --denials --json)"
            ),
        }
    }
    a
}

/// p-th percentile in milliseconds.
fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Resident set size of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Unix time in µs of an entry's `ts` (`2026-12-07T07:05:46.420179Z`).
fn ts_micros(ts: &str) -> i64 {
    let (date, time) = ts.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    let frac = format!("{frac:0<6}");
    let micros: i64 = frac[..6].parse().unwrap();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1_000_000) + micros
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// Tool results in a model request's conversation: how far its session is.
fn tool_results(body: &Value) -> usize {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|b| b["type"] == "tool_result")
        .count()
}

/// One event as a client received it: (id, event, when in µs).
type Received = Vec<(u64, Value, i64)>;

/// Follow a session's event stream to its end, stamping each event on arrival.
async fn follow(http: reqwest::Client, url: String, token: String) -> Received {
    let mut r = http.get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut buf = String::new();
    let mut out = Vec::new();
    while let Some(chunk) = r.chunk().await.unwrap() {
        let at = now_micros();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut id, mut data) = (None, String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            if let Some(id) = id {
                out.push((id, serde_json::from_str(&data).unwrap(), at));
            }
        }
    }
    out
}

#[derive(Debug, Default)]
struct Phase {
    rss_before_kib: u64,
    rss_running_kib: u64,
    rss_idle_kib: u64,
    list_ms: Vec<f64>,
    approve_ms: Vec<f64>,
    event_ms: Vec<f64>,
    clients: usize,
    events_per_session: usize,
}

struct Bench {
    srv: Server,
    a: Args,
    alice: String,
    bob: String,
    /// When the first model turn of each session in the current phase is released.
    release_at: Arc<Mutex<Instant>>,
    pid: u32,
}

impl Bench {
    async fn get(&self, token: &str, path: &str) -> Value {
        let r = self
            .srv
            .http
            .get(self.srv.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json().await.unwrap()
    }

    async fn pending(&self) -> Vec<Value> {
        self.get(&self.bob, "/api/v1/approvals").await["approvals"]
            .as_array()
            .unwrap()
            .clone()
    }

    async fn wait<F: Fn() -> bool>(&self, what: &str, f: F) {
        let began = Instant::now();
        while !f() {
            assert!(
                began.elapsed() < Duration::from_secs(600),
                "{what} never happened\n{}",
                self.srv.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `sessions` sessions, `per` event clients each.
    async fn phase(&self, per: usize, api: bool) -> Phase {
        let n = self.a.sessions;
        let mut p = Phase {
            rss_before_kib: rss_kib(self.pid),
            clients: n * per,
            ..Phase::default()
        };
        let began = Instant::now();
        *self.release_at.lock().unwrap() =
            began + Duration::from_millis(2000 + 150 * n as u64).min(Duration::from_secs(30));
        let before = self.srv.mock.requests().len();
        let mut clients = Vec::new();
        for _ in 0..n {
            let r = self
                .srv
                .http
                .post(self.srv.url("/api/v1/sessions"))
                .bearer_auth(&self.alice)
                .json(&json!({"workspace": "books", "task": "bench"}))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            assert_eq!(status, 201, "{body}\n{}", self.srv.stderr());
            let id = body["id"].as_str().unwrap().to_string();
            for _ in 0..per {
                let url = self.srv.url(&format!("/api/v1/sessions/{id}/events"));
                clients.push((
                    id.clone(),
                    tokio::spawn(follow(self.srv.http.clone(), url, self.alice.clone())),
                ));
            }
        }
        // Running: every session is in its first model call (held open by the model).
        let mock = &self.srv.mock;
        self.wait("every session's first model call", || {
            mock.requests()[before..]
                .iter()
                .filter(|r| tool_results(&r.json()) == 0)
                .count()
                >= n
        })
        .await;
        p.rss_running_kib = rss_kib(self.pid);
        // Idle: every session parked on an approval.
        let began_wait = Instant::now();
        loop {
            if self.pending().await.len() >= n {
                break;
            }
            assert!(
                began_wait.elapsed() < Duration::from_secs(600),
                "{}",
                self.srv.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        p.rss_idle_kib = rss_kib(self.pid);
        if api {
            for _ in 0..self.a.requests {
                let t = Instant::now();
                let r = self
                    .srv
                    .http
                    .get(self.srv.url("/api/v1/sessions"))
                    .bearer_auth(&self.alice)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await.unwrap();
                p.list_ms.push(ms(t.elapsed()));
            }
        }
        // Answer every ask (bob, a finance approver), timing each answer.
        let mut answered = 0;
        while answered < n * self.a.asks {
            let pending = self.pending().await;
            if pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            for a in pending {
                let t = Instant::now();
                let r = self
                    .srv
                    .http
                    .post(self.srv.url(&format!(
                        "/api/v1/approvals/{}",
                        a["approval_id"].as_str().unwrap()
                    )))
                    .bearer_auth(&self.bob)
                    .json(&json!({"shown_sha256": a["shown_sha256"], "outcome": "granted"}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let _ = r.bytes().await;
                assert_eq!(status, 200, "{}", self.srv.stderr());
                p.approve_ms.push(ms(t.elapsed()));
                answered += 1;
            }
        }
        // Every client saw every event of its session, and the decisions'
        // entries give the latency.
        let mut got: HashMap<String, Vec<Received>> = HashMap::new();
        for (id, c) in clients {
            got.entry(id).or_default().push(c.await.unwrap());
        }
        let db = rusqlite::Connection::open_with_flags(
            self.srv.s.state.join("audit.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let ts = |seq: u64| -> i64 {
            let leaf: Vec<u8> = db
                .query_row(
                    "SELECT leaf FROM entries WHERE seq = ?1",
                    [seq as i64],
                    |r| r.get(0),
                )
                .unwrap();
            let l: Value = serde_json::from_slice(&leaf).unwrap();
            assert_eq!(l["kind"], "policy.decision", "entry {seq}: {l}");
            ts_micros(l["ts"].as_str().unwrap())
        };
        for (id, per_client) in &got {
            let ids = |r: &Received| r.iter().map(|e| e.0).collect::<Vec<_>>();
            let want = ids(&per_client[0]);
            for r in per_client {
                assert_eq!(ids(r), want, "session {id}: a client missed events");
                assert_eq!(r.last().unwrap().1["event"], "end", "session {id}: no end");
                let denials = r
                    .iter()
                    .filter(|e| e.1["event"] == "decision" && e.1["decision"] == "deny")
                    .count();
                assert_eq!(denials, self.a.denials, "session {id}: {r:?}");
            }
            let first = want[0];
            assert!(
                want.iter().enumerate().all(|(i, x)| *x == first + i as u64),
                "session {id}: ids not contiguous: {want:?}"
            );
            p.events_per_session = want.len();
            for r in per_client {
                for (_, e, at) in r {
                    if e["event"] == "decision" && e["decision"] == "deny" {
                        let seq = e["audit_entry"].as_u64().unwrap();
                        p.event_ms.push((at - ts(seq)) as f64 / 1000.0);
                    }
                }
            }
        }
        p
    }
}

fn main() {
    let a = args();
    let say = |s: String| {
        if !a.json {
            println!("{s}");
        }
    };
    let mut srv = Server::prepare_with(
        "",
        &format!("max_sessions = {}\n", a.sessions + 8),
        "127.0.0.1:0",
        reqwest::Client::new(),
    );
    // The log the server opens already holds `entries` entries.
    let db = srv.s.state.join("audit.db");
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{s}", db.display()));
    }
    let key = srv.s.state.join("keys/log.key");
    let signer = stele_runtime::cli::state::file_key(&key).unwrap();
    let t = Instant::now();
    if a.entries > 0 {
        stele_audit::bench::prefill(&db, a.entries, signer).unwrap();
    }
    let prefill_s = t.elapsed().as_secs_f64();
    say(format!(
        "log prefilled with {} entries in {prefill_s:.1} s",
        a.entries
    ));
    // The scripted model: `asks` letters to outbox/ (four-eyes asks), then
    // `denials` writes to receipts/ (refused), then the answer. The first
    // turn is held open until the phase's release time (sessions running).
    let release_at = Arc::new(Mutex::new(Instant::now()));
    let (asks, denials) = (a.asks, a.denials);
    let held = release_at.clone();
    srv.mock.respond_with(move |req| {
        let n = tool_results(&req.json());
        let turn = if n < asks {
            Turn::new().tool_use(
                &format!("w{n}"),
                "file_write",
                json!({"path": format!("outbox/bench-{n}.txt"), "content": "Dear Acme"}),
            )
        } else if n < asks + denials {
            Turn::new().tool_use(
                &format!("d{n}"),
                "file_write",
                json!({"path": format!("receipts/forged-{n}.txt"), "content": "x"}),
            )
        } else {
            Turn::new().tool_use("f", "final_answer", json!({"answer": "done"}))
        };
        let hold = held
            .lock()
            .unwrap()
            .saturating_duration_since(Instant::now());
        if n == 0 && !hold.is_zero() {
            Reply::PingStall {
                turn,
                after_events: 1,
                hold,
                every: Duration::from_millis(500),
            }
        } else {
            turn.into()
        }
    });
    srv.spawn();
    let started = srv.started;
    say(format!(
        "start to ready (spawn → 200 from /readyz, {} entries in the log): {:.1} ms",
        a.entries,
        ms(started)
    ));
    // What the server itself says (from its start to listening).
    let server_ready_ms: f64 = srv
        .stderr()
        .split("ready after ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(f64::NAN);
    let pid = srv.pid().unwrap();
    let rss_ready = rss_kib(pid);
    let (alice, bob) = (srv.token("alice"), srv.token("bob"));
    let bench = Bench {
        srv,
        a: a.clone(),
        alice,
        bob,
        release_at,
        pid,
    };
    let rt = runtime();
    let (one, many) = rt.block_on(async {
        let one = bench.phase(1, true).await;
        let per = a.clients.div_ceil(a.sessions);
        let many = bench.phase(per, false).await;
        (one, many)
    });
    let log_entries_after: i64 = rusqlite::Connection::open_with_flags(
        bench.srv.s.state.join("audit.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap()
    .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
    .unwrap();
    let per_kib = |rss: u64, base: u64| (rss as f64 - base as f64) / a.sessions as f64;
    let figures = json!({
        "entries": a.entries,
        "log_entries_after": log_entries_after,
        "sessions": a.sessions,
        "start_to_ready_ms": ms(started),
        "server_ready_ms": server_ready_ms,
        "rss_ready_kib": rss_ready,
        "rss_before_sessions_kib": one.rss_before_kib,
        "list_sessions_ms": {"p50": pct(&one.list_ms, 0.5), "p99": pct(&one.list_ms, 0.99), "n": one.list_ms.len()},
        "approve_ms": {"p50": pct(&one.approve_ms, 0.5), "p99": pct(&one.approve_ms, 0.99), "n": one.approve_ms.len()},
        "event_ms": {"clients": one.clients, "p50": pct(&one.event_ms, 0.5), "p99": pct(&one.event_ms, 0.99), "n": one.event_ms.len()},
        "rss_per_running_session_kib": per_kib(one.rss_running_kib, one.rss_before_kib),
        "rss_per_idle_session_kib": per_kib(one.rss_idle_kib, one.rss_before_kib),
        "many_clients": {
            "clients": many.clients,
            "every_client_got_every_event": true,
            "events_per_session": many.events_per_session,
            "event_ms": {"p50": pct(&many.event_ms, 0.5), "p99": pct(&many.event_ms, 0.99), "n": many.event_ms.len()},
            "rss_kib": many.rss_idle_kib,
            "rss_before_kib": many.rss_before_kib,
            "rss_growth_kib": many.rss_idle_kib as f64 - many.rss_before_kib as f64,
        },
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&figures).unwrap());
        return;
    }
    let f = &figures;
    let x = |v: &Value| format!("{:.2}", v.as_f64().unwrap_or(f64::NAN));
    println!(
        "  (the server's own count, its start to listening: {:.0} ms)",
        server_ready_ms
    );
    println!(
        "{} sessions at once, {} entries in the log ({} after), the server's RSS {:.1} MiB when ready",
        a.sessions,
        a.entries,
        log_entries_after,
        rss_ready as f64 / 1024.0
    );
    println!(
        "  GET /api/v1/sessions ({} requests, 1 client): p50 {} ms, p99 {} ms",
        f["list_sessions_ms"]["n"],
        x(&f["list_sessions_ms"]["p50"]),
        x(&f["list_sessions_ms"]["p99"])
    );
    println!(
        "  POST /api/v1/approvals/ID ({} answers): p50 {} ms, p99 {} ms",
        f["approve_ms"]["n"],
        x(&f["approve_ms"]["p50"]),
        x(&f["approve_ms"]["p99"])
    );
    println!(
        "  decision entry → SSE client ({} clients, {} events): p50 {} ms, p99 {} ms (goal p50 ≤ 20 ms)",
        one.clients,
        f["event_ms"]["n"],
        x(&f["event_ms"]["p50"]),
        x(&f["event_ms"]["p99"])
    );
    println!(
        "  RSS per session: running (in a model call) {:.0} KiB, idle (parked on an approval) {:.0} KiB",
        f["rss_per_running_session_kib"].as_f64().unwrap(),
        f["rss_per_idle_session_kib"].as_f64().unwrap()
    );
    let m = &f["many_clients"];
    println!(
        "  {} event-stream clients held, every one got all {} events of its session: decision → client p50 {} ms, p99 {} ms; RSS {:.1} MiB ({:+.1} MiB over the phase: {} sessions and their clients)",
        m["clients"],
        m["events_per_session"],
        x(&m["event_ms"]["p50"]),
        x(&m["event_ms"]["p99"]),
        m["rss_kib"].as_f64().unwrap() / 1024.0,
        m["rss_growth_kib"].as_f64().unwrap() / 1024.0,
        a.sessions
    );
}
