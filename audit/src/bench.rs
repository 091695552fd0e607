//! `stele audit bench`: durable append throughput and latency, verification
//! speed and integrity overhead, measured on a scratch log.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stele_attest::Ed25519Signer;

use crate::error::AuditError;
use crate::event::{Actor, DecisionRecord, Effect, Event, EventKind, Target};
use crate::log::{AuditLog, LogOptions};
use crate::verify::verify_db;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Concurrent writers.
    pub writers: usize,
    /// Entries appended by all writers together.
    pub entries: u64,
    /// Appends in the one-at-a-time run.
    pub serial_entries: u64,
    /// Keep the scratch log in this folder.
    pub keep: Option<PathBuf>,
}

/// The figures.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Writers used.
    pub writers: usize,
    /// Entries appended concurrently.
    pub entries: u64,
    /// Durable acknowledged appends per second with `writers` writers.
    pub appends_per_s: f64,
    /// Append→acknowledged (signed checkpoint) latency, p50 and p99.
    pub latency_p50: Duration,
    /// p99 of the same.
    pub latency_p99: Duration,
    /// Appends per second with one writer waiting for each ack.
    pub serial_per_s: f64,
    /// p50 latency of one serial append.
    pub serial_p50: Duration,
    /// Entries in the verified log.
    pub verified_entries: u64,
    /// Verification speed.
    pub verify_per_s: f64,
    /// Verification rate per CPU second of the verifying thread.
    pub verify_cpu_per_s: f64,
    /// Average leaf size.
    pub leaf_bytes: f64,
    /// Integrity bytes per entry: leaf hash + tree nodes + checkpoints.
    pub integrity_bytes: f64,
    /// Database file size per entry, everything included.
    pub file_bytes: f64,
    /// Where the log is, if kept.
    pub kept: Option<PathBuf>,
}

fn sample_event(w: usize, i: u64) -> Event {
    Event::new(
        EventKind::PolicyDecision,
        Actor {
            host: "bench-host".into(),
            principal: format!("user{w}@example.org"),
            runtime: "stele/bench".into(),
            teams: vec!["finance".into()],
        },
    )
    .with_target(Target {
        path: Some(format!("receipts/2026/{w:03}/{i:08}.pdf")),
        tool: Some("file.read".into()),
        ..Target::default()
    })
    .with_decision(DecisionRecord {
        bundle: "sha256:8f14e45fceea167a5a36dedd4bea2543cf8f4b2a7f3c6d1e0b9a8c7d6e5f4a3b".into(),
        effect: Effect::Allow,
        layer: Some("team:finance".into()),
        policies: vec!["finance.read-receipts".into()],
        reason: None,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Run the benchmark.
pub fn run(opts: &BenchOptions) -> Result<BenchReport, AuditError> {
    let tmp;
    let dir = match &opts.keep {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|source| AuditError::Io {
                path: d.clone(),
                source,
            })?;
            d.clone()
        }
        None => {
            tmp = ScratchDir::new()?;
            tmp.0.clone()
        }
    };
    let db = dir.join("bench-audit.db");
    let signer: Arc<dyn stele_attest::Signer> =
        Arc::new(Ed25519Signer::generate("bench.stele.invalid/audit")?);
    let verifier = signer.verifier();
    // A kept log is only useful with the key that checks it.
    let vkey_file = dir.join("bench-audit.vkey");
    if opts.keep.is_some() {
        std::fs::write(&vkey_file, format!("{verifier}\n")).map_err(|source| AuditError::Io {
            path: vkey_file.clone(),
            source,
        })?;
    }
    let log = Arc::new(AuditLog::create(
        &db,
        signer,
        LogOptions {
            heartbeat: None,
            ..LogOptions::default()
        },
    )?);

    // Concurrent writers, each waiting for its own durable acknowledgement.
    let writers = opts.writers.max(1);
    let per = opts.entries / writers as u64;
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..writers {
        let log = log.clone();
        handles.push(std::thread::spawn(
            move || -> Result<Vec<Duration>, AuditError> {
                let mut lat = Vec::with_capacity(per as usize);
                for i in 0..per {
                    let t = Instant::now();
                    log.append_blocking(sample_event(w, i))?;
                    lat.push(t.elapsed());
                }
                Ok(lat)
            },
        ));
    }
    let mut lat = Vec::new();
    for h in handles {
        let l = h
            .join()
            .map_err(|_| AuditError::Stopped(Some("bench writer panicked".into())))??;
        lat.extend(l);
    }
    let elapsed = start.elapsed();
    lat.sort();
    let appended = per * writers as u64;

    // One writer, one append at a time: bounded by fsync.
    let mut serial = Vec::new();
    let s0 = Instant::now();
    for i in 0..opts.serial_entries {
        let t = Instant::now();
        log.append_blocking(sample_event(0, i))?;
        serial.push(t.elapsed());
    }
    let serial_elapsed = s0.elapsed();
    serial.sort();

    let log =
        Arc::try_unwrap(log).map_err(|_| AuditError::Stopped(Some("log still shared".into())))?;
    log.close()?;

    let report = verify_db(&db, &verifier, None).map_err(|e| AuditError::Invalid(e.to_string()))?;
    let store = crate::store::Store::open(&db)?;
    let n = store.size()?;
    let integrity = 32 * n + 32 * store.tree_node_count()? + store.checkpoint_bytes()?;
    let file_size: u64 = ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len())
        .sum();
    Ok(BenchReport {
        writers,
        entries: appended,
        appends_per_s: appended as f64 / elapsed.as_secs_f64(),
        latency_p50: percentile(&lat, 0.50),
        latency_p99: percentile(&lat, 0.99),
        serial_per_s: opts.serial_entries as f64 / serial_elapsed.as_secs_f64().max(1e-9),
        serial_p50: percentile(&serial, 0.50),
        verified_entries: report.entries,
        verify_per_s: report.entries as f64 / report.seconds.max(1e-9),
        verify_cpu_per_s: report.entries as f64 / report.cpu_seconds.max(1e-9),
        leaf_bytes: store.leaf_bytes()? as f64 / n.max(1) as f64,
        integrity_bytes: integrity as f64 / n.max(1) as f64,
        file_bytes: file_size as f64 / n.max(1) as f64,
        kept: opts.keep.as_ref().map(|_| db.clone()),
    })
}

/// A temporary folder removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Result<Self, AuditError> {
        let base = std::env::temp_dir().join(format!(
            "stele-bench-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        std::fs::create_dir_all(&base).map_err(|source| AuditError::Io {
            path: base.clone(),
            source,
        })?;
        Ok(Self(base))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        writeln!(f, "stele audit bench")?;
        writeln!(
            f,
            "  durable appends, {} concurrent writers: {:.0} entries/s ({} entries)",
            self.writers, self.appends_per_s, self.entries
        )?;
        writeln!(
            f,
            "  append -> signed checkpoint latency:   p50 {:.2} ms, p99 {:.2} ms",
            ms(self.latency_p50),
            ms(self.latency_p99)
        )?;
        writeln!(f, "  one writer, one at a time:             {:.0} entries/s (p50 {:.2} ms; bounded by fsync)", self.serial_per_s, ms(self.serial_p50))?;
        writeln!(
            f,
            "  full verification:                     {:.0} entries/s per CPU second, one core ({:.0}/s wall; {} entries)",
            self.verify_cpu_per_s, self.verify_per_s, self.verified_entries
        )?;
        writeln!(
            f,
            "  leaf size:                             {:.0} bytes/entry",
            self.leaf_bytes
        )?;
        writeln!(f, "  integrity data beyond the leaf:        {:.1} bytes/entry (leaf hash + tree nodes + checkpoints)", self.integrity_bytes)?;
        writeln!(f, "  database file:                         {:.0} bytes/entry (everything, SQLite overhead included)", self.file_bytes)?;
        if let Some(k) = &self.kept {
            writeln!(f, "  log kept at {}", k.display())?;
            writeln!(
                f,
                "  verifier key in {}.vkey (stele audit verify --db {} --vkey \"$(cat {}.vkey)\")",
                k.with_extension("").display(),
                k.display(),
                k.with_extension("").display()
            )?;
        }
        Ok(())
    }
}
