//! `stele audit bench`: durable append throughput and latency (many
//! writers and one), the start-up check, verification speed and integrity
//! overhead — on a fresh log or on top of one already holding N entries
//! (`--existing N`), to show whether an entry costs more as the log grows.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::AuditError;
use crate::log::AuditLog;
use crate::verify::verify_db;

mod existing;
mod report;
mod signing;
mod workload;

pub use existing::prefill;
pub use report::{summary, AppendFigures, BenchReport};
pub use signing::{BenchKey, SigningFigures};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Concurrent writers.
    pub writers: usize,
    /// Entries appended by all writers together.
    pub entries: u64,
    /// Appends in the one-writer run.
    pub serial_entries: u64,
    /// Entries the log holds before the measured appends (0: a new log).
    pub existing: u64,
    /// Where logs of `existing` entries are kept between runs (built once
    /// per size; each run works on a copy).
    pub cache: PathBuf,
    /// Append to the cached log itself rather than a copy (no second
    /// copy on disk; the cached log keeps what each run appends).
    pub in_place: bool,
    /// Keep the measured log in this folder.
    pub keep: Option<PathBuf>,
    /// Also verify the whole log afterwards (the verification figure).
    pub verify: bool,
    /// The key that signs the checkpoints.
    pub key: BenchKey,
}

/// The default cache folder: `$XDG_CACHE_HOME/stele/bench`, else
/// `~/.cache/stele/bench`, else a folder in the temporary directory.
pub fn default_cache() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("stele").join("bench")
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
            stele_attest::private_fs::create_dir_all(d).map_err(|source| AuditError::Io {
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
    let mut db = dir.join("bench-audit.db");
    let timed = Arc::new(signing::TimedSigner::new(opts.key.signer()?));
    let signer: Arc<dyn stele_attest::Signer> = timed.clone();
    let verifier = signer.verifier();
    let signer_words = signer.describe();
    if opts.keep.is_some() {
        let vkey_file = dir.join("bench-audit.vkey");
        let io = |source| AuditError::Io {
            path: vkey_file.clone(),
            source,
        };
        let mut f = stele_attest::private_fs::create_file(&vkey_file).map_err(io)?;
        std::io::Write::write_all(&mut f, format!("{verifier}\n").as_bytes()).map_err(io)?;
    }
    let mut built_seconds = 0.0;
    let (log, open_seconds) = if opts.existing == 0 {
        let started = Instant::now();
        let log = AuditLog::create(&db, signer, existing::bench_options())?;
        (log, started.elapsed().as_secs_f64())
    } else {
        if opts.in_place {
            let (cached, built) = existing::cached(opts.existing, &opts.cache, &opts.key)?;
            db = cached;
            built_seconds = built;
        } else {
            built_seconds = existing::copy_of(opts.existing, &opts.cache, &opts.key, &db)?;
        }
        let started = Instant::now();
        let log = AuditLog::open(&db, signer, existing::bench_options())?;
        (log, started.elapsed().as_secs_f64())
    };
    let existing_entries = log.store()?.size()?;
    let run_id = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() % 1_000_000_000)
            .unwrap_or(0)
    );
    let log = Arc::new(log);
    let writers = opts.writers.max(1);
    // Signatures made while opening are not part of the measured runs.
    timed.take();
    let mut concurrent = appends(&log, &format!("{run_id}c"), writers, opts.entries)?;
    concurrent.signing = timed.take();
    let mut serial = appends(&log, &format!("{run_id}s"), 1, opts.serial_entries)?;
    serial.signing = timed.take();
    let log =
        Arc::try_unwrap(log).map_err(|_| AuditError::Stopped(Some("log still shared".into())))?;
    log.close()?;
    // The start-up when the full verification is due (it runs before the
    // log accepts a write).
    let full_start_seconds = match opts.verify {
        true => {
            let mut o = existing::bench_options();
            o.full_verification.at_most = Duration::ZERO;
            let started = Instant::now();
            let log = AuditLog::open(&db, opts.key.signer()?, o)?;
            let t = started.elapsed().as_secs_f64();
            log.close()?;
            Some(t)
        }
        // A cached log appended to in place is opened once more, so its
        // start-up check covers what this run appended: otherwise the next
        // run's start-up would be measured re-checking it.
        false if opts.in_place && opts.existing > 0 => {
            AuditLog::open(&db, opts.key.signer()?, existing::bench_options())?.close()?;
            None
        }
        false => None,
    };

    let store = crate::store::Store::open(&db)?;
    let n = store.size()?;
    let integrity = 32 * n + 32 * store.tree_node_count()? + store.checkpoint_bytes()?;
    let file_size: u64 = ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len())
        .sum();
    let verified = match opts.verify {
        true => {
            Some(verify_db(&db, &verifier, None).map_err(|e| AuditError::Invalid(e.to_string()))?)
        }
        false => None,
    };
    Ok(BenchReport {
        signer: signer_words,
        verifier: verifier.to_string(),
        existing: existing_entries,
        built_seconds,
        open_seconds,
        full_start_seconds,
        concurrent,
        serial,
        verified_entries: verified.as_ref().map_or(0, |r| r.entries),
        verify_seconds: verified.as_ref().map_or(0.0, |r| r.seconds),
        verify_cpu_seconds: verified.as_ref().map_or(0.0, |r| r.cpu_seconds),
        leaf_bytes: store.leaf_bytes()? as f64 / n.max(1) as f64,
        integrity_bytes: integrity as f64 / n.max(1) as f64,
        file_bytes: file_size as f64 / n.max(1) as f64,
        kept: opts.keep.as_ref().map(|_| db.clone()),
    })
}

/// `total` appends by `writers` threads, each its own session of intents
/// and results (`workload`), each append timed until acknowledged.
fn appends(
    log: &Arc<AuditLog>,
    run: &str,
    writers: usize,
    total: u64,
) -> Result<AppendFigures, AuditError> {
    let per = (total / writers as u64).max(2) & !1;
    let written0 = bytes_written();
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..writers {
        let log = log.clone();
        let run = run.to_string();
        handles.push(std::thread::spawn(
            move || -> Result<(Vec<Duration>, Vec<u64>), AuditError> {
                log.append_blocking(workload::start(&run, w))?;
                let mut lat = Vec::with_capacity(per as usize);
                let mut sizes = Vec::with_capacity(per as usize);
                for i in 0..per / 2 {
                    let t = Instant::now();
                    let r = log.append_blocking(workload::intent(&run, w, i))?;
                    lat.push(t.elapsed());
                    sizes.push(r.size);
                    let t = Instant::now();
                    let r2 =
                        log.append_blocking(workload::result(&run, w, i, r.seq, &r.leaf_hash))?;
                    lat.push(t.elapsed());
                    sizes.push(r2.size);
                }
                log.append_blocking(workload::end(&run, w))?;
                Ok((lat, sizes))
            },
        ));
    }
    let mut lat = Vec::new();
    let mut commits = std::collections::HashSet::new();
    for h in handles {
        let (l, sizes) = h
            .join()
            .map_err(|_| AuditError::Stopped(Some("bench writer panicked".into())))??;
        lat.extend(l);
        commits.extend(sizes);
    }
    let elapsed = start.elapsed();
    let written = bytes_written()
        .zip(written0)
        .map(|(b, a)| b.saturating_sub(a));
    lat.sort();
    let n = lat.len() as u64;
    Ok(AppendFigures {
        writers,
        entries: n,
        per_second: n as f64 / elapsed.as_secs_f64().max(1e-9),
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
        commits: commits.len() as u64,
        signing: SigningFigures {
            signatures: 0,
            p50: Duration::ZERO,
            p99: Duration::ZERO,
        },
        bytes_written_per_entry: written.map(|w| w as f64 / n.max(1) as f64),
    })
}

/// Bytes this process has caused to be written to storage (Linux
/// `/proc/self/io`): with the commit count, what an append costs in I/O.
fn bytes_written() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
}

/// A temporary folder removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Result<Self, AuditError> {
        let base = std::env::temp_dir().join(format!(
            "stele-bench-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        stele_attest::private_fs::create_dir_all(&base).map_err(|source| AuditError::Io {
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
