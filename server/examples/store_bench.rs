//! The store's figures on both engines (docs/scaling.md "Measured"): ops/s
//! and per-op latency p50/p99 of the server's hottest store calls, on
//! SQLite (`server.db`, WAL, synchronous=FULL, as `stele serve` opens it)
//! and on PostgreSQL (a temporary cluster with fsync on, over its Unix
//! socket, as `stele serve` connects to it).
//!
//!   scripts/bench-store [--ops 2000] [--tasks 8]
//!
//! Sequential figures are one caller (one request at a time); the
//! concurrent event figure is `--tasks` sessions appending at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use stele_protocol::ApprovalState;
use stele_server::auth::scopes::Scopes;
use stele_server::store::postgres::PgStore;
use stele_server::store::sqlite::SqliteStore;
use stele_server::store::{ApprovalRecord, Role, Store, User};
use stele_tests::postgres::{Durability, TempCluster};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| {
            v.parse().unwrap_or_else(|_| {
                eprintln!("store_bench: {name} takes a whole number, not {v:?}");
                std::process::exit(2)
            })
        })
}

/// One measured operation: its count, wall time and latencies.
struct Figure {
    op: String,
    n: usize,
    wall: Duration,
    lat: Vec<Duration>,
}

impl Figure {
    fn print(&mut self, engine: &str) {
        self.lat.sort();
        let pct = |p: f64| {
            let i = ((self.lat.len() as f64 - 1.0) * p).round() as usize;
            self.lat.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
        };
        println!(
            "{engine:<10} {:<34} {:>7} {:>10.0} {:>10.0} {:>10.0}",
            self.op,
            self.n,
            self.n as f64 / self.wall.as_secs_f64(),
            pct(0.5),
            pct(0.99)
        );
    }
}

async fn timed<F, Fut>(op: &'static str, n: usize, mut f: F) -> Figure
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut lat = Vec::with_capacity(n);
    let began = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        f(i).await;
        lat.push(t.elapsed());
    }
    Figure {
        op: op.to_string(),
        n,
        wall: began.elapsed(),
        lat,
    }
}

async fn bench(engine: &str, s: Arc<dyn Store>, ops: usize, tasks: usize) {
    let mut figures = Vec::new();
    figures.push(
        timed("approval add + settle (2 writes)", ops, |i| {
            let s = s.clone();
            async move {
                let id = format!("a{i}");
                s.add_approval(ApprovalRecord {
                    id: id.clone(),
                    session: "s".into(),
                    shown: "delete receipts/2024?".into(),
                    shown_sha256: "ab".repeat(32),
                    requester: "alice".into(),
                    deadline: i64::MAX,
                    state: ApprovalState::Pending,
                    approver: None,
                })
                .await
                .unwrap();
                assert!(s
                    .settle_approval(&id, ApprovalState::Granted, Some("bob"))
                    .await
                    .unwrap());
            }
        })
        .await,
    );
    let body = format!("{{\"type\":\"text\",\"text\":\"{}\"}}", "x".repeat(200));
    figures.push(
        timed("event append (1 session)", ops, |i| {
            let (s, body) = (s.clone(), body.clone());
            async move {
                s.append_event("seq", i as u64 + 1, &body).await.unwrap();
            }
        })
        .await,
    );
    // `tasks` sessions appending at once: throughput over all of them.
    let began = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let (s, body) = (s.clone(), body.clone());
        set.spawn(async move {
            let mut lat = Vec::new();
            for n in 1..=ops / tasks {
                let at = Instant::now();
                s.append_event(&format!("c{t}"), n as u64, &body)
                    .await
                    .unwrap();
                lat.push(at.elapsed());
            }
            lat
        });
    }
    let mut lat = Vec::new();
    while let Some(l) = set.join_next().await {
        lat.extend(l.unwrap());
    }
    figures.push(Figure {
        op: format!("event append ({tasks} sessions at once)"),
        n: lat.len(),
        wall: began.elapsed(),
        lat,
    });
    s.add_user(
        User {
            name: "alice".into(),
            teams: vec!["finance".into()],
            role: Role::Member,
            password_hash: None,
        },
        None,
        None,
    )
    .await
    .unwrap();
    s.add_token(
        "alice",
        "tokenhash",
        "api",
        Scopes::all(),
        (0, i64::MAX),
        None,
    )
    .await
    .unwrap();
    figures.push(
        timed("token lookup (every API request)", ops, |_| {
            let s = s.clone();
            async move {
                s.token("tokenhash", 1).await.unwrap();
            }
        })
        .await,
    );
    for i in 0..ops {
        s.enqueue("bench", &serde_json::json!({"i": i}), 0)
            .await
            .unwrap();
    }
    figures.push(
        timed("job claim + complete", ops, |_| {
            let s = s.clone();
            async move {
                let j = s.claim("w", 60, 1).await.unwrap().unwrap();
                assert!(s.complete(&j.lease, 2).await.unwrap());
            }
        })
        .await,
    );
    for f in &mut figures {
        f.print(engine);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let ops = arg("--ops", 2000);
    let tasks = arg("--tasks", 8).max(1);
    println!(
        "{:<10} {:<34} {:>7} {:>10} {:>10} {:>10}",
        "engine", "operation", "n", "ops/s", "p50 µs", "p99 µs"
    );
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("server.db")).unwrap();
    bench("sqlite", Arc::new(sqlite), ops, tasks).await;
    match TempCluster::start_with(Durability::Fsync).unwrap() {
        Some(cluster) => {
            let url = cluster.create_db("bench").unwrap();
            let pg = PgStore::connect(&url).await.unwrap();
            pg.migrate().await.unwrap();
            bench("postgres", Arc::new(pg), ops, tasks).await;
        }
        None => {
            println!("postgres   SKIPPED: PostgreSQL is not installed (scripts/setup-postgres)")
        }
    }
}
