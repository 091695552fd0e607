#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Figures, not a pass/fail test (run it on purpose: `cargo test -p
//! stele-tests --test server_shipping_figures -- --ignored --nocapture`):
//! four workers' logs shipped at once into one `stele serve` on a temporary
//! PostgreSQL cluster, each over HTTP in batches of 1,000 with its signed
//! checkpoint, as `stele worker` ships them. Prints the central ingest rate
//! (entries/s) and each batch's round trip p50/p99 under that load (the
//! shipping lag a caught-up worker sees), then the search time of a
//! principal's entries over a time range.

mod e2e_common;
mod server_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use server_support::api::{get, post};
use server_support::runtime;
use server_support::shipping::{b64, local_entries};
use server_support::worker::{database, server};
use stele_attest::{Checkpoint, Ed25519Signer, Signer as _};
use stele_audit::merkle::{leaf_hash, Frontier};
use stele_audit::{Actor, AuditLog, Event, EventKind, LogOptions};
use stele_tests::postgres::{Durability, TempCluster};

const WORKERS: usize = 4;
const PER_WORKER: usize = 25_000;
const BATCH: usize = 1000;

/// A log of `n` entries (appended concurrently: group commits), its leaves
/// and its key.
fn log(dir: &std::path::Path, origin: &str, n: usize) -> (Arc<Ed25519Signer>, Vec<Vec<u8>>) {
    let db = dir.join(format!("{}.db", origin.replace('/', "_")));
    let signer = Arc::new(Ed25519Signer::generate(origin).unwrap());
    let log = Arc::new(AuditLog::create(&db, signer.clone(), LogOptions::default()).unwrap());
    let rt = runtime();
    rt.block_on(async {
        for _ in 0..n / 500 {
            let appends = (0..500).map(|_| {
                let mut a = Actor::system();
                a.principal = "alice".into();
                a.teams = vec!["ops".into()];
                log.append(Event::new(EventKind::PolicyLoad, a))
            });
            for r in futures_util::future::join_all(appends).await {
                r.unwrap();
            }
        }
    });
    Arc::try_unwrap(log).unwrap().close().unwrap();
    (signer, local_entries(&db))
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[test]
#[ignore = "figures: run with --ignored --nocapture"]
fn shipping_figures() {
    // Durable, as a production database is: ingest is bounded by its commits.
    let Some(cluster) = TempCluster::start_with(Durability::Fsync).unwrap() else {
        return;
    };
    let url = database(&cluster, "figures");
    let srv = server(&url, "", 30);
    let ada = srv.token_scoped("ada", "read,admin");
    let wtoken = srv.token_scoped("ada", "worker");
    let dir = tempfile::tempdir().unwrap();
    let made = Instant::now();
    let logs: Vec<_> = (0..WORKERS)
        .map(|k| {
            log(
                dir.path(),
                &format!("fig{k}.e2e.stele.invalid/log"),
                PER_WORKER,
            )
        })
        .collect();
    eprintln!(
        "made {WORKERS} logs of {PER_WORKER} entries in {:?}",
        made.elapsed()
    );
    // Each batch with its checkpoint, made before the clock starts.
    let batches: Vec<Vec<serde_json::Value>> = logs
        .iter()
        .enumerate()
        .map(|(k, (signer, leaves))| {
            let mut f = Frontier::new();
            leaves
                .chunks(BATCH)
                .enumerate()
                .map(|(i, chunk)| {
                    chunk.iter().for_each(|l| f.push(leaf_hash(l), |_| {}));
                    let note = Checkpoint {
                        origin: signer.name().to_string(),
                        size: f.size(),
                        root: f.root(),
                    }
                    .sign(signer.as_ref())
                    .unwrap()
                    .to_text();
                    json!({"worker": format!("fig{k}"), "origin": signer.name(),
                           "from": i * BATCH, "leaves": b64(chunk), "checkpoint": note})
                })
                .collect()
        })
        .collect();
    let rt = runtime();
    let (elapsed, mut lat) = rt.block_on(async {
        for (k, (signer, _)) in logs.iter().enumerate() {
            let r = post(
                &srv,
                &wtoken,
                "/api/v1/worker/claim",
                json!({"name": format!("fig{k}"), "verifier": signer.verifier().to_string()}),
            )
            .await;
            assert_eq!(r.status(), 204);
        }
        let began = Instant::now();
        let srv = &srv;
        let wtoken = &wtoken;
        let runs = batches.iter().map(|bs| async move {
            let mut lat = Vec::new();
            for b in bs {
                let t = Instant::now();
                let r = post(srv, wtoken, "/api/v1/worker/log", b.clone()).await;
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
                lat.push(t.elapsed());
            }
            lat
        });
        let lat: Vec<Duration> = futures_util::future::join_all(runs).await.concat();
        (began.elapsed(), lat)
    });
    let total = WORKERS * PER_WORKER;
    println!(
        "shipping: {total} entries from {WORKERS} workers in {:.2} s: {:.0} entries/s; \
         batch of {BATCH} round trip p50 {:?} p99 {:?}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );
    rt.block_on(async {
        let mut s = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let r = get(&srv, &ada, "/api/v1/audit/shipped?principal=alice&since=2000-01-01T00:00:00.000000Z&limit=1000").await;
            assert_eq!(r.status(), 200);
            let _ = r.bytes().await.unwrap();
            s.push(t.elapsed());
        }
        println!(
            "search over {total} shipped entries (a principal's, 1,000 answered): p50 {:?} p99 {:?}",
            pct(&mut s, 0.5),
            pct(&mut s, 0.99)
        );
    });
}
