#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Session export at size: a log of N entries (default 1,000,000) with one
//! session of K entries (default 10,000) spread through it among many
//! other sessions; then the time and size of that session's export and of
//! its verification. The log is built once into a cache folder (re-runs
//! reuse it) and each run exports from a copy.
//!
//! ```text
//! cargo run --release -p stele-verify --example session_export_bench -- [N] [K] [CACHE]
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use stele_attest::{Ed25519Signer, Signer};
use stele_audit::export::layout::Selection;
use stele_audit::export::write::{export_with_progress, ExportOptions};
use stele_audit::{
    Actor, AuditLog, Disclosure, Event, EventKind, LogOptions, PayloadInput, Refs, Target,
};

/// Writers while building: each commit takes about one entry of each.
const WRITERS: u64 = 100;
/// Entries of each of the other sessions.
const OTHER_LEN: u64 = 200;
const TARGET: &str = "s-target";

fn actor() -> Actor {
    Actor {
        host: "bench-host".into(),
        principal: "alice".into(),
        runtime: "stele/bench".into(),
        teams: vec!["finance".into()],
    }
}

fn signer() -> Arc<Ed25519Signer> {
    Arc::new(Ed25519Signer::from_seed("bench.stele.invalid/session-export", &[0x5e; 32]).unwrap())
}

fn options() -> LogOptions {
    LogOptions {
        heartbeat: None,
        ..LogOptions::default()
    }
}

/// One writer: sessions of `len` entries (start, tool intent/result pairs
/// with a payload, end) until `total` entries are in the log, or one
/// session of exactly `len` entries.
fn writer(log: &AuditLog, w: u64, len: u64, only_one: bool, total: &AtomicU64, n: u64) {
    let mut g = 0;
    loop {
        let id = if only_one {
            TARGET.to_string()
        } else {
            format!("w{w}g{g}")
        };
        let ev = |k| Event::new(k, actor()).in_session(&id);
        log.append_blocking(ev(EventKind::SessionStart)).unwrap();
        let mut written = 1;
        while written + 2 < len {
            let i = log
                .append_blocking(ev(EventKind::ToolIntent).with_target(Target {
                    tool: Some("file.read".into()),
                    path: Some(format!("receipts/{w}-{g}-{written}.pdf")),
                    ..Target::default()
                }))
                .unwrap();
            log.append_blocking(
                ev(EventKind::ToolResult)
                    .with_refs(Refs {
                        intent_leaf: stele_audit::leaf::hash_b64(&i.leaf_hash),
                        intent_seq: i.seq,
                    })
                    .with_outcome(stele_audit::Outcome::status(stele_audit::Status::Ok))
                    .with_payload(PayloadInput {
                        role: "output".into(),
                        media: "text/plain".into(),
                        body: format!("total {w}.{g}.{written}: 1234.56 EUR\n").into_bytes(),
                        disclosure: Disclosure::CommitmentOnly,
                    }),
            )
            .unwrap();
            written += 2;
            if !only_one && total.load(Ordering::Relaxed) >= n {
                break;
            }
        }
        log.append_blocking(ev(EventKind::SessionEnd)).unwrap();
        g += 1;
        if only_one || total.fetch_add(written + 1, Ordering::Relaxed) >= n {
            return;
        }
    }
}

fn build(path: &Path, n: u64, k: u64) {
    let t = Instant::now();
    let tmp = path.with_extension("building");
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{s}", tmp.display()));
    }
    let log = Arc::new(AuditLog::create(&tmp, signer(), options()).unwrap());
    let total = Arc::new(AtomicU64::new(0));
    // The target session at the pace of one writer among WRITERS, so it
    // is spread over the log (about N / WRITERS of it).
    let mut hs = Vec::new();
    for w in 0..WRITERS {
        let (log, total) = (log.clone(), total.clone());
        hs.push(std::thread::spawn(move || {
            if w == 0 {
                writer(&log, w, k, true, &total, n);
            } else {
                writer(&log, w, OTHER_LEN, false, &total, n);
            }
        }));
    }
    for h in hs {
        h.join().unwrap();
    }
    let log = Arc::try_unwrap(log).ok().unwrap();
    let size = log.close().unwrap().size;
    std::fs::rename(&tmp, path).unwrap();
    eprintln!(
        "built {} ({size} entries) in {:.0} s",
        path.display(),
        t.elapsed().as_secs_f64()
    );
}

fn dir_bytes(p: &Path) -> u64 {
    stele_audit::export::list_files(p)
        .unwrap()
        .iter()
        .map(|f| std::fs::metadata(p.join(f)).unwrap().len())
        .sum()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).map_or(1_000_000, |a| a.parse().unwrap());
    let k: u64 = args.get(2).map_or(10_000, |a| a.parse().unwrap());
    let cache = args.get(3).map_or_else(
        || std::env::temp_dir().join("stele-session-export-bench"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&cache).unwrap();
    let cached = cache.join(format!("log-{n}-{k}.db"));
    if !cached.exists() {
        build(&cached, n, k);
    }
    // A fresh folder per run; earlier runs' are removed only after the
    // measurements: creating thousands of files just after deleting as
    // many makes ext4 search for inodes not recently deleted (most of the
    // time went there, which is not the export's cost).
    let work = cache.join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let db = work.join("audit.db");
    std::fs::copy(&cached, &db).unwrap();
    let key = signer();
    let t = Instant::now();
    let log = AuditLog::open(&db, key.clone(), options()).unwrap();
    let open_s = t.elapsed().as_secs_f64();
    let out = work.join("session-export");
    let o = ExportOptions {
        selection: Selection::Session { id: TARGET.into() },
        payloads: true,
        policies: vec![],
        exporter: actor(),
        allow_open_session: false,
        tar: false,
    };
    let mut reports = 0u64;
    let cpu0 = stele_audit::cpu_time::thread_cpu_ns();
    let t = Instant::now();
    let r = export_with_progress(&log, key.as_ref(), &o, &out, &mut |_| reports += 1).unwrap();
    let export_s = t.elapsed().as_secs_f64();
    // The exporter runs on this thread (the log's writer on another).
    let export_cpu = stele_audit::cpu_time::cpu_seconds_since(cpu0, export_s);
    log.close().unwrap();
    let bundle = dir_bytes(&out);
    let t = Instant::now();
    let rep = stele_verify::verify(
        &stele_verify::Bundle::open(&out).unwrap(),
        &stele_verify::Options {
            log_key: key.verifier(),
            more_keys: Vec::new(),
            revoked: Vec::new(),
            export_key: None,
            witnesses: vec![],
            quorum: None,
            anchors: vec![],
            now: 4_000_000_000,
            tsa: None,
        },
    )
    .unwrap();
    let verify_s = t.elapsed().as_secs_f64();
    for e in std::fs::read_dir(&cache).unwrap().flatten() {
        let p = e.path();
        if p != work && e.file_name().to_string_lossy().starts_with("run") {
            let _ = std::fs::remove_dir_all(p);
        }
    }
    println!(
        "session export: {} entries of a {}-entry log in {export_s:.2} s wall, {export_cpu:.2} s on CPU ({} files, {:.1} MB, {reports} progress reports); \
         log opened in {open_s:.2} s; bundle verified in {verify_s:.2} s ({} entries)",
        r.selected,
        r.tree_size,
        r.files + 1,
        bundle as f64 / 1e6,
        rep.entries
    );
}
