#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Figures, not a pass/fail test (run it on purpose: `cargo test -p
//! stele-tests --test server_shipping_figures -- --ignored --nocapture`):
//! four workers' logs shipped at once into one `stele serve` on a temporary
//! PostgreSQL cluster, each over HTTP in batches of 1,000 with its signed
//! checkpoint, as `stele worker` ships them. Prints the central ingest rate
//! (entries/s) and each batch's round trip p50/p99 under that load (the
//! shipping lag a caught-up worker sees), then the search time of a
//! principal's entries over a time range. `STELE_SHIP_BODY_BYTES=N`
//! gives each entry a payload body of N bytes, shipped with its batch (what
//! a body costs the ingest; default 0: none).

mod e2e_common;
mod server_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::json;
use server_support::api::{get, post};
use server_support::runtime;
use server_support::shipping::{b64, local_entries};
use server_support::worker::{database, server};
use stele_attest::{Checkpoint, Ed25519Signer, Signer as _};
use stele_audit::event::{Disclosure, PayloadInput};
use stele_audit::merkle::{leaf_hash, Frontier};
use stele_audit::{Actor, AuditLog, Event, EventKind, LogOptions};
use stele_tests::postgres::{Durability, TempCluster};

const WORKERS: usize = 4;
const PER_WORKER: usize = 25_000;
const BATCH: usize = 1000;

/// Bytes of the payload body on each entry of the ingest figure.
fn body_bytes() -> usize {
    std::env::var("STELE_SHIP_BODY_BYTES")
        .ok()
        .map(|v| v.parse().expect("STELE_SHIP_BODY_BYTES: a number of bytes"))
        .unwrap_or(0)
}

/// The bodies of the log at `db` as a batch carries them, by entry.
fn wire_bodies(db: &std::path::Path) -> std::collections::HashMap<u64, Vec<serde_json::Value>> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c
        .prepare("SELECT seq, cmt, media, salt, body FROM payloads WHERE body IS NOT NULL")
        .unwrap();
    let mut out: std::collections::HashMap<u64, Vec<serde_json::Value>> = Default::default();
    let rows = st
        .query_map([], |r| {
            let (seq, cmt, media, salt, body): (i64, Vec<u8>, String, Vec<u8>, Vec<u8>) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
            Ok((
                seq as u64,
                json!({"cmt": B64.encode(cmt), "media": media,
                "salt": B64.encode(salt), "body": B64.encode(body)}),
            ))
        })
        .unwrap();
    for r in rows {
        let (seq, v) = r.unwrap();
        out.entry(seq).or_default().push(v);
    }
    out
}

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
                let mut e = Event::new(EventKind::PolicyLoad, a);
                if body_bytes() > 0 {
                    e = e.with_payload(PayloadInput {
                        role: "args".into(),
                        media: "application/octet-stream".into(),
                        body: vec![b'x'; body_bytes()],
                        disclosure: Disclosure::CommitmentOnly,
                    });
                }
                log.append(e)
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
            let bodies = wire_bodies(
                &dir.path()
                    .join(format!("{}.db", signer.name().replace('/', "_"))),
            );
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
                    let payloads: Vec<serde_json::Value> = (i * BATCH..i * BATCH + chunk.len())
                        .flat_map(|s| bodies.get(&(s as u64)).cloned().unwrap_or_default())
                        .collect();
                    json!({"worker": format!("fig{k}"), "origin": signer.name(),
                           "from": i * BATCH, "leaves": b64(chunk), "checkpoint": note,
                           "payloads": payloads})
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
        "shipping: {total} entries ({} body bytes each) from {WORKERS} workers in {:.2} s: \
         {:.0} entries/s; batch of {BATCH} round trip p50 {:?} p99 {:?}",
        body_bytes(),
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

/// Entries seeded for the search figures (`STELE_SEARCH_ENTRIES`, default
/// ten million: a year of a team's work).
fn search_entries() -> u64 {
    std::env::var("STELE_SEARCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

/// Reviewer search at scale: `shipped_entries` seeded in PostgreSQL with a
/// year of entries from four workers (by SQL: the figure is the search, not
/// the ingest above), then, through the real server and its recorded
/// reads, a session's timeline and all denials of one team in one week.
#[test]
#[ignore = "figures: run with --ignored --nocapture (seeds 10M rows: minutes, ~9 GB)"]
fn search_figures_at_scale() {
    let Some(cluster) = TempCluster::start_with(Durability::NoFsync).unwrap() else {
        return;
    };
    let n = search_entries();
    let url = database(&cluster, "search");
    let srv = server(&url, "", 30);
    let ada = srv.token_scoped("ada", "read,admin");
    // One entry every 3.15 s over 2026 from four workers; sessions of 200
    // consecutive entries; 500 principals in 20 teams; two in five
    // entries carry a decision, one decision in fifty a denial.
    let secs = 31_536_000.0 / n as f64;
    let seeded = Instant::now();
    cluster
        .psql(
            "search",
            &format!(
                "INSERT INTO shipped_entries (origin, seq, leaf, ts, session, principal, teams, kind, effect, path) \
                 SELECT 'w' || (g % 4) || '.stele.invalid/log', g / 4, \
                   convert_to('{{\"pad\":\"' || repeat('x', 590) || '\"}}', 'UTF8'), \
                   to_char(timestamp '2026-01-01' + g * interval '{secs} seconds', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
                   's' || (g / 200), 'p' || ((g / 200) % 500), ',t' || ((g / 200) % 500 % 20) || ',', \
                   (ARRAY['model.request','model.response','tool.intent','tool.result','file.open','policy.decision'])[1 + g % 6], \
                   CASE WHEN g % 5 >= 2 THEN NULL WHEN g % 125 = 0 THEN 'deny' WHEN g % 250 = 1 THEN 'ask' ELSE 'allow' END, \
                   CASE WHEN g % 6 = 4 THEN 'receipts/' || (g % 1000) || '.pdf' END \
                 FROM generate_series(0, {} - 1) g; ANALYZE shipped_entries;",
                n
            ),
        )
        .unwrap();
    let size = cluster
        .psql(
            "search",
            "SELECT pg_size_pretty(pg_total_relation_size('shipped_entries'))",
        )
        .unwrap();
    println!(
        "seeded {n} shipped entries ({size} with indexes) in {:.0} s",
        seeded.elapsed().as_secs_f64()
    );
    let rt = runtime();
    let timed = |path: String| {
        let t = Instant::now();
        let (status, count) = rt.block_on(async {
            let r = get(&srv, &ada, &path).await;
            let status = r.status();
            let v: serde_json::Value = r.json().await.unwrap();
            (status, v["entries"].as_array().map(Vec::len).unwrap_or(0))
        });
        assert_eq!(status, 200, "{path}");
        (t.elapsed(), count)
    };
    let sessions = (n / 200).max(1);
    let mut timeline = Vec::new();
    let mut got = 0;
    for i in 0..50u64 {
        let s = (i * 7919 + 13) % sessions;
        let (t, c) = timed(format!("/api/v1/audit/shipped?session=s{s}&limit=1000"));
        timeline.push(t);
        got += c;
    }
    println!(
        "a session's timeline over {n} entries ({} entries each on average): p50 {:?} p99 {:?}",
        got / 50,
        pct(&mut timeline, 0.5),
        pct(&mut timeline, 0.99)
    );
    let mut denials = Vec::new();
    let mut got = 0;
    for i in 0..50u64 {
        let team = i % 20;
        let day = 1 + (i * 37) % 350;
        let since = time_of_day(day);
        let until = time_of_day(day + 7);
        let (t, c) = timed(format!(
            "/api/v1/audit/shipped?team=t{team}&decision=deny&since={since}&until={until}&limit=1000"
        ));
        denials.push(t);
        got += c;
    }
    println!(
        "all denials of a team in one week over {n} entries ({} answered on average): p50 {:?} p99 {:?}",
        got / 50,
        pct(&mut denials, 0.5),
        pct(&mut denials, 0.99)
    );
}

/// Midnight of day `d` (1-based) of 2026, in the leaves' time format.
fn time_of_day(d: u64) -> String {
    // 2026 is not a leap year.
    const DAYS: [u64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut day = d.clamp(1, 365);
    let mut month = 0;
    while day > DAYS[month] {
        day -= DAYS[month];
        month += 1;
    }
    format!("2026-{:02}-{day:02}T00:00:00.000000Z", month + 1)
}
