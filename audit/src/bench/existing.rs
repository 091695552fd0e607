//! A log that already holds N entries, for measuring appends at size.
//!
//! Built once per N (per workload shape and signing key) into a cache folder, fast: the
//! writer's own code path (leaves, hashes, tree nodes, payloads, derived
//! tables, one signed checkpoint per batch of 256), but with SQLite's
//! `synchronous=OFF` and large batches, which a real log never uses — a
//! crash while building only loses the cache. Each benchmark run then
//! works on a copy, so every run starts from the same N entries.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stele_attest::{Ed25519Signer, Signer};

use super::signing::BenchKey;
use super::workload::{self, SHAPE};
use crate::error::AuditError;
use crate::log::{AuditLog, LogOptions};
use crate::log_open::{prepare, Opening};
use crate::marker::{Finding, FullCheck, VerifiedThrough, FULL_CHECK, VERIFIED_THROUGH};
use crate::writer::{Work, Writer};

/// Sessions interleaved while building (each batch takes one entry of each).
const SESSIONS: usize = 256;
/// Entries per built session (start, intent/result pairs, end).
const SESSION_LEN: u64 = 200;

/// The key every benchmark log is signed with (its seed is public: these
/// logs prove nothing, they are for timing).
pub(crate) fn bench_signer() -> Result<Arc<dyn Signer>, AuditError> {
    Ok(Arc::new(Ed25519Signer::from_seed(
        "bench.stele.invalid/audit",
        &[0x5e; 32],
    )?))
}

/// Options of a benchmark log: no heartbeats, and no full verification
/// in the middle of a measurement (it is measured on its own).
pub(crate) fn bench_options() -> LogOptions {
    let long = Duration::from_secs(100 * 365 * 24 * 3600);
    LogOptions {
        heartbeat: None,
        full_verification: crate::FullVerification {
            every: long,
            at_most: long,
            start_after: long,
        },
        ..LogOptions::default()
    }
}

/// The cached log of `n` entries in `cache`, built now if missing; returns
/// its path and the seconds spent building (0 when cached).
pub(crate) fn cached(n: u64, cache: &Path, key: &BenchKey) -> Result<(PathBuf, f64), AuditError> {
    let cached = cache.join(format!("existing-{n}-{SHAPE}{}.db", key.cache_tag()));
    let mut built = 0.0;
    if !cached.exists() {
        let t = Instant::now();
        build_signed(&cached, n, key.signer()?)?;
        built = t.elapsed().as_secs_f64();
    }
    Ok((cached, built))
}

/// [`cached`], copied to `to` (every run starts from the same entries).
pub(crate) fn copy_of(n: u64, cache: &Path, key: &BenchKey, to: &Path) -> Result<f64, AuditError> {
    let (cached, built) = cached(n, cache, key)?;
    eprintln!("copying the {n}-entry log from {}", cached.display());
    let io = |source| AuditError::Io {
        path: to.to_path_buf(),
        source,
    };
    std::fs::copy(&cached, to).map_err(io)?;
    stele_attest::private_fs::tighten(to).map_err(io)?;
    // Written out before measuring: otherwise the kernel writes the
    // copy's gigabytes back while the appends run, and every commit's
    // fsync waits behind them (a log in use is never all dirty pages).
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    Ok(built)
}

/// A new log at `path` (which must not exist) holding `n` entries of the
/// benchmark's shape, signed by `signer`: for measuring a real command on
/// a log of a given size (`stele bench workload --existing`).
pub fn prefill(path: &Path, n: u64, signer: Arc<dyn Signer>) -> Result<(), AuditError> {
    if path.exists() {
        return Err(AuditError::Exists(path.to_path_buf()));
    }
    build_signed(path, n, signer)
}

fn build_signed(path: &Path, n: u64, signer: Arc<dyn Signer>) -> Result<(), AuditError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    stele_attest::private_fs::create_dir_all(dir).map_err(|source| AuditError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let tmp = PathBuf::from(format!("{}.building", path.display()));
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{s}", tmp.display()));
    }
    let opts = bench_options();
    AuditLog::create(&tmp, signer.clone(), opts.clone())?.close()?;
    let tmp = crate::writer_lock::canonical(&tmp)?;
    let lock = crate::writer_lock::acquire(&tmp, Duration::from_secs(2))?;
    let (mut w, _, _) = prepare(&tmp, signer, &opts, Opening::Existing)?;
    let e = AuditError::sqlite(&tmp);
    // Only for building this cache (see the module docs).
    w.conn
        .pragma_update(None, "synchronous", "OFF")
        .map_err(&e)?;
    fill(&mut w, n)?;
    let size = w.frontier.size();
    let root = w.frontier.root();
    // The builder wrote every entry itself, in this process: it records
    // them as verified, so the benchmark's start-up check does not read
    // the whole cache first (that cost is measured separately).
    let vt = VerifiedThrough { size, root }.sign(w.signer.as_ref())?;
    let full = FullCheck {
        size,
        root,
        at: crate::marker::now_secs(),
        finding: Finding::Verified,
    }
    .sign(w.signer.as_ref())?;
    w.pending_meta.push((VERIFIED_THROUGH, vt));
    w.pending_meta.push((FULL_CHECK, full));
    w.flush_meta()?;
    w.conn
        .pragma_update(None, "synchronous", "FULL")
        .map_err(&e)?;
    w.conn
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(&e)?;
    drop(w);
    drop(lock);
    std::fs::rename(&tmp, path).map_err(|source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// One interleaved session of the build.
#[derive(Default)]
struct Slot {
    generation: u64,
    written: u64,
    open: Option<(u64, crate::merkle::Hash)>,
}

/// What a slot's next entry was.
enum Step {
    Start,
    Intent,
    Result,
    End,
}

fn fill(w: &mut Writer, n: u64) -> Result<(), AuditError> {
    let mut slots: Vec<Slot> = (0..SESSIONS).map(|_| Slot::default()).collect();
    let started = Instant::now();
    let mut next_report = 1_000_000u64;
    while w.frontier.size() < n {
        let room = usize::try_from(n - w.frontier.size()).unwrap_or(SESSIONS);
        let mut batch = Vec::with_capacity(SESSIONS);
        let mut steps = Vec::with_capacity(SESSIONS);
        for (k, s) in slots.iter().enumerate().take(room.min(SESSIONS)) {
            let run = format!("e{k}g{}", s.generation);
            let (step, ev) = match (s.written, s.open) {
                (0, _) => (Step::Start, workload::start(&run, k)),
                (_, Some((seq, h))) => {
                    (Step::Result, workload::result(&run, k, s.written, seq, &h))
                }
                (done, None) if done + 2 >= SESSION_LEN => (Step::End, workload::end(&run, k)),
                _ => (Step::Intent, workload::intent(&run, k, s.written)),
            };
            batch.push(Work::Append(Box::new(ev)));
            steps.push((k, step));
        }
        let receipts = w.commit_batch(batch);
        for ((k, step), r) in steps.into_iter().zip(receipts) {
            let r = r?;
            let s = &mut slots[k];
            s.written += 1;
            match step {
                Step::Start | Step::Result => s.open = None,
                Step::Intent => s.open = Some((r.seq, r.leaf_hash)),
                Step::End => {
                    *s = Slot {
                        generation: s.generation + 1,
                        ..Slot::default()
                    }
                }
            }
        }
        if w.frontier.size() >= next_report {
            eprintln!(
                "building the benchmark log: {} of {n} entries ({:.0} s)",
                w.frontier.size(),
                started.elapsed().as_secs_f64()
            );
            next_report += 1_000_000;
        }
    }
    Ok(())
}
