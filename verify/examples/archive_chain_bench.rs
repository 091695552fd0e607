#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Archival at size (docs/retention.md, "Archival"): a log of about N
//! entries (default 1,000,000, rounded up to where every session of the
//! benchmark's shape has ended) is archived whole — the bundle written,
//! verified by stele-verify's code, and the prefix removed — then L more
//! entries (default 10,000) are appended, the live part exported, and the
//! chain `A1 --then LIVE` verified offline. Prints the time of each step
//! and the bundle's size.
//!
//! ```text
//! cargo run --release -p stele-verify --example archive_chain_bench -- [N] [L] [DIR]
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use stele_attest::{Ed25519Signer, Signer};
use stele_audit::export::archive::{archive, ArchiveOptions};
use stele_audit::export::layout::Selection;
use stele_audit::export::write::{export, ExportOptions};
use stele_audit::{Actor, AuditLog, Event, EventKind, LogOptions};
use stele_verify::chain::verify_chain;
use stele_verify::{Bundle, Options, Produce};

/// Sessions the benchmark's prefill interleaves, and the entries of each:
/// every session has ended at each multiple of their product past the
/// log's first entries.
const WAVE: u64 = 256 * 200;

fn actor() -> Actor {
    Actor {
        host: "bench-host".into(),
        principal: "alice".into(),
        runtime: "stele/bench".into(),
        teams: vec![],
    }
}

fn options() -> LogOptions {
    LogOptions {
        heartbeat: None,
        ..LogOptions::default()
    }
}

fn verify_options(k: &dyn Signer) -> Options {
    Options {
        log_key: k.verifier(),
        more_keys: vec![],
        revoked: vec![],
        export_key: None,
        witnesses: vec![],
        quorum: None,
        anchors: vec![],
        now: 4_000_000_000,
        tsa: None,
    }
}

fn du(p: &Path) -> u64 {
    if p.is_dir() {
        std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .map(|e| du(&e.path()))
            .sum()
    } else {
        std::fs::metadata(p).map_or(0, |m| m.len())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).map_or(1_000_000, |a| a.parse().unwrap());
    let live_n: u64 = args.get(2).map_or(10_000, |a| a.parse().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = args
        .get(3)
        .map_or_else(|| tmp.path().to_path_buf(), PathBuf::from);
    std::fs::create_dir_all(&dir).unwrap();
    let signer: Arc<Ed25519Signer> =
        Arc::new(Ed25519Signer::from_seed("bench.stele.invalid/archive", &[0x5e; 32]).unwrap());

    // Where the prefill's first session starts (the entries a new log
    // and its reopening write first).
    let probe = dir.join("probe.db");
    stele_audit::bench::prefill(&probe, 0, signer.clone()).unwrap();
    let s0 = stele_audit::Store::open(&probe).unwrap().size().unwrap();
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{s}", probe.display()));
    }
    let through = s0 + n.div_ceil(WAVE) * WAVE;

    let db = dir.join("audit.db");
    let t = Instant::now();
    stele_audit::bench::prefill(&db, through, signer.clone()).unwrap();
    eprintln!(
        "built a log of {through} entries in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let log = AuditLog::open(&db, signer.clone(), options()).unwrap();
    let a1 = dir.join("a1");
    let vo = verify_options(signer.as_ref());
    let mut verify_s = 0.0;
    let t = Instant::now();
    let done = archive(
        &log,
        signer.as_ref(),
        signer.as_ref(),
        &ArchiveOptions {
            through,
            reason: "bench".into(),
            actor: actor(),
            tar: false,
        },
        &a1,
        &mut |p| {
            let v = Instant::now();
            let b = Bundle::open(p).map_err(|e| e.to_string())?;
            let r = stele_verify::verify_producing(&b, &vo, Produce::Result)
                .map(|_| ())
                .map_err(|e| e.to_string());
            verify_s = v.elapsed().as_secs_f64();
            r
        },
    )
    .unwrap();
    let archive_s = t.elapsed().as_secs_f64();
    let bundle_bytes = du(&a1);

    for i in 0..live_n {
        let id = format!("live{}", i / 100);
        let kind = match i % 100 {
            0 => EventKind::SessionStart,
            99 => EventKind::SessionEnd,
            _ => EventKind::PolicyDecision,
        };
        log.append_blocking(Event::new(kind, actor()).in_session(id))
            .unwrap();
    }
    let live = dir.join("live");
    let t = Instant::now();
    export(
        &log,
        signer.as_ref(),
        &ExportOptions {
            selection: Selection::All,
            payloads: true,
            policies: vec![],
            exporter: actor(),
            allow_open_session: false,
            tar: false,
        },
        &live,
    )
    .unwrap();
    let live_export_s = t.elapsed().as_secs_f64();
    log.close().unwrap();

    let t = Instant::now();
    let bundles = vec![
        ("a1".to_string(), Bundle::open(&a1).unwrap()),
        ("live".to_string(), Bundle::open(&live).unwrap()),
    ];
    let links = verify_chain(&bundles, &vo).unwrap();
    let chain_s = t.elapsed().as_secs_f64();
    let end = links.last().unwrap().report.entries;

    println!("archive chain figures (release build, this machine)");
    println!(
        "  archive of entries 0..{}: {archive_s:.1} s in all ({:.0} entries/s), of which stele-verify of the bundle {verify_s:.1} s; bundle {:.0} MiB",
        done.through,
        done.through as f64 / archive_s,
        bundle_bytes as f64 / (1024.0 * 1024.0)
    );
    println!(
        "  export of the live part {}..{end}: {live_export_s:.2} s",
        done.through
    );
    println!(
        "  chain a1 --then live, entries 0..{end}: {chain_s:.1} s ({:.0} entries/s)",
        end as f64 / chain_s
    );
}
