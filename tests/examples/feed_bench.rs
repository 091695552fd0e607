#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Figures for the SIEM feed (docs/siem.md): the time to deliver a backlog
//! of ENTRIES entries (a 1-hour outage at a busy site: 1,000,000) to each
//! receiver — verification against the signed checkpoint included — and
//! the live lag from a durable append to the receiver having the event
//! (p50, p99 of 50). Receivers: rsyslogd over TLS, the HEC and OTLP
//! endpoints of tests/src/siem.rs.
//!
//! cargo run -p stele-tests --example feed_bench [ENTRIES] [BATCH]

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stele_attest::{Ed25519Signer, Signer as _};
use stele_audit::{Actor, AuditLog, Event, EventKind, LogOptions};
use stele_runtime::feed::config::{FeedEntry, SinkKind};
use stele_runtime::feed::{self, FeedOptions, LogWriter, RunMode};
use stele_tests::siem::{free_port, HttpReceiver, Rsyslog, TestCa};

/// The benchmark measures delivery: the feed's own entries are not written.
struct NoWrites;
impl LogWriter for NoWrites {
    fn append(&self, _: EventKind, _: serde_json::Value) -> Result<u64, String> {
        Ok(0)
    }
}

fn entry(
    name: &str,
    kind: SinkKind,
    endpoint: String,
    ca: Option<&Path>,
    batch: usize,
    token: Option<&Path>,
) -> FeedEntry {
    FeedEntry {
        name: name.into(),
        kind,
        endpoint,
        ca_file: ca.map(Path::to_path_buf),
        client_cert: None,
        client_key: None,
        token_file: token.map(Path::to_path_buf),
        token_env: None,
        batch: Some(batch),
        backlog_limit: Some(u64::MAX),
        poll_ms: Some(10),
        timeout_secs: Some(60),
        facility: None,
        index: None,
        alerts: Default::default(),
    }
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(1_000_000, |a| a.parse().unwrap());
    let batch: usize = args.next().map_or(1000, |a| a.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let signer = Arc::new(Ed25519Signer::generate("feed-bench.stele.invalid/log").unwrap());
    let t = Instant::now();
    stele_audit::bench::prefill(&db, n, signer.clone()).unwrap();
    let size = stele_audit::Store::open(&db).unwrap().size().unwrap();
    println!(
        "prefilled {size} entries in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let ca = TestCa::make(dir.path(), "bench").unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "bench-token").unwrap();
    let syslog = Rsyslog::start(&dir.path().join("rsyslog"), &ca, free_port()).unwrap();
    let hec = HttpReceiver::start("bench-token", 0).unwrap();
    let otlp = HttpReceiver::start("bench-token", 0).unwrap();
    let sinks = [
        entry(
            "syslog",
            SinkKind::Syslog,
            format!("localhost:{}", syslog.port),
            Some(&ca.ca),
            batch,
            None,
        ),
        entry("hec", SinkKind::Hec, hec.url(), None, batch, Some(&token)),
        entry("otlp", SinkKind::Otlp, otlp.url(), None, batch, None),
    ];
    hec.count_only();
    otlp.count_only();
    // What a receiver has: records (HEC, OTLP) or bytes written (rsyslog).
    let count = |name: &str| -> u64 {
        match name {
            "syslog" => std::fs::metadata(&syslog.out).map(|m| m.len()).unwrap_or(0),
            "hec" => hec.count(),
            _ => otlp.count(),
        }
    };
    for e in &sinks {
        let cfg = e.check(Path::new("bench")).unwrap();
        let opts = FeedOptions {
            db: db.clone(),
            verifier: signer.verifier(),
            writer: Arc::new(NoWrites),
            stop: Arc::new(AtomicBool::new(false)),
            mode: RunMode::UntilCaughtUp,
            metrics: Arc::new(feed::FeedMetrics::new()),
            wake: feed::Wake::Poll,
            host: feed::FeedHost::AuditFeedRun,
        };
        let t = Instant::now();
        let r = feed::run(vec![cfg.clone()], &opts);
        let secs = t.elapsed().as_secs_f64();
        let (_, r) = &r[0];
        let s = r.as_ref().unwrap();
        println!(
            "{}: backlog of {} entries ({} findings) delivered in {secs:.1} s: {:.0} entries/s (batch {batch})",
            e.name, s.entries, s.findings, s.entries as f64 / secs
        );
        // Live lag: follow the log, append one entry at a time.
        let stop = Arc::new(AtomicBool::new(false));
        let follow = FeedOptions {
            stop: stop.clone(),
            mode: RunMode::Follow,
            ..opts
        };
        let th = std::thread::spawn(move || feed::run(vec![cfg], &follow));
        let log = AuditLog::open(&db, signer.clone(), LogOptions::default()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let mut lags = Vec::new();
        for _ in 0..50 {
            let before = count(&e.name);
            let t = Instant::now();
            log.append_blocking(
                Event::new(EventKind::AuditRead, Actor::system())
                    .with_data(serde_json::json!({"bench": true})),
            )
            .unwrap();
            while count(&e.name) <= before {
                if t.elapsed() > Duration::from_secs(10) {
                    panic!("{}: nothing arrived", e.name);
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            lags.push(t.elapsed());
        }
        log.close().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        th.join().unwrap();
        println!(
            "{}: live lag (durable append to the receiver having it, poll 10 ms): p50 {:.1} ms, p99 {:.1} ms",
            e.name,
            pct(&mut lags, 0.5),
            pct(&mut lags, 0.99)
        );
    }
}
