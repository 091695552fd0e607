//! `stele audit bench`: appends, latency, checkpoint signing, the start-up
//! check, verification speed and overhead on a scratch log — signed by the
//! public in-memory benchmark key or by the configured token key
//! (`--signer configured`), so the cost of an HSM is measured the same way.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use stele_audit::bench::{BenchKey, BenchOptions, BenchReport};

/// Which key signs the benchmark's checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SignerChoice {
    /// An Ed25519 key in process memory (a public seed: the log proves nothing).
    Memory,
    /// The configuration's `[signing.pkcs11]` key, through the PKCS#11
    /// signer and its session pool (use a key kept for benchmarks: the
    /// scratch log is signed by it).
    Configured,
}

/// Arguments of `stele audit bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Concurrent writers.
    #[arg(long, default_value_t = 64)]
    pub writers: usize,
    /// Entries appended by all writers together.
    #[arg(long, default_value_t = 200_000)]
    pub entries: u64,
    /// Appends in the one-writer, one-at-a-time run.
    #[arg(long, default_value_t = 1000)]
    pub serial: u64,
    /// Append on top of a log already holding this many entries; a
    /// comma-separated list runs once per size (e.g. 0,1000000,10000000).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub existing: Vec<u64>,
    /// Which key signs the checkpoints.
    #[arg(long, value_enum, default_value_t = SignerChoice::Memory)]
    pub signer: SignerChoice,
    /// Where the logs of --existing sizes are built once and kept
    /// [default: $XDG_CACHE_HOME/stele/bench or ~/.cache/stele/bench].
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Skip verifying the whole log afterwards.
    #[arg(long)]
    pub no_verify: bool,
    /// Append to the cached --existing log itself instead of a copy
    /// (saves its size in disk space; it keeps what each run appends).
    #[arg(long)]
    pub in_place: bool,
    /// Keep the scratch log in this folder.
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// Print the figures as JSON (docs/json/audit-bench.schema.json).
    #[arg(long)]
    pub json: bool,
}

/// Run `stele audit bench`.
pub fn run(a: BenchArgs) -> anyhow::Result<ExitCode> {
    let key = match a.signer {
        SignerChoice::Memory => BenchKey::InMemory,
        SignerChoice::Configured => {
            let layers = crate::config::load()?;
            let (file, cfg) = layers.signing_pkcs11().context(
                "--signer configured: the configuration has no [signing.pkcs11] key \
                 (docs/keys.md); without it the benchmark signs with --signer memory",
            )?;
            BenchKey::Given(Arc::new(super::state::pkcs11_key(file, cfg)?))
        }
    };
    let mut reports = Vec::new();
    for n in a.existing {
        let ticker = super::ticker::Ticker::start(&format!(
            "audit bench: {} entries, {} writers, on {n} existing",
            a.entries, a.writers
        ));
        let r = stele_audit::bench::run(&BenchOptions {
            writers: a.writers,
            entries: a.entries,
            serial_entries: a.serial,
            existing: n,
            cache: a
                .cache
                .clone()
                .unwrap_or_else(stele_audit::bench::default_cache),
            keep: a.keep.clone(),
            in_place: a.in_place,
            verify: !a.no_verify,
            key: key.clone(),
        });
        drop(ticker);
        let r = r?;
        if a.json {
            // One document per --existing size (JSON lines).
            super::json::line(&bench_json(&r))?;
        } else {
            crate::out!("{r}");
        }
        reports.push(r);
    }
    if reports.len() > 1 && !a.json {
        crate::out!("{}", stele_audit::bench::summary(&reports));
    }
    Ok(ExitCode::SUCCESS)
}

/// `audit bench --json`: one report's figures (docs/json/audit-bench.schema.json).
fn bench_json(r: &BenchReport) -> super::json::AuditBench {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let per_cpu = stele_audit::cpu_time::meaningful_rate(r.verified_entries, r.verify_cpu_seconds);
    super::json::AuditBench {
        signer: r.signer.clone(),
        verifier: r.verifier.clone(),
        existing: r.existing,
        open_ms: r.open_seconds * 1e3,
        full_start_ms: r.full_start_seconds.map(|s| s * 1e3),
        writers: r.concurrent.writers,
        entries: r.concurrent.entries,
        appends_per_s: r.concurrent.per_second,
        latency_p50_ms: ms(r.concurrent.p50),
        latency_p99_ms: ms(r.concurrent.p99),
        signatures: r.concurrent.signing.signatures,
        sign_p50_ms: ms(r.concurrent.signing.p50),
        sign_p99_ms: ms(r.concurrent.signing.p99),
        bytes_written_per_entry: r.concurrent.bytes_written_per_entry,
        serial_per_s: r.serial.per_second,
        serial_p50_ms: ms(r.serial.p50),
        serial_sign_p50_ms: ms(r.serial.signing.p50),
        serial_sign_p99_ms: ms(r.serial.signing.p99),
        verified_entries: r.verified_entries,
        verify_per_s: (r.verify_seconds > 0.0)
            .then(|| r.verified_entries as f64 / r.verify_seconds),
        verify_cpu_per_s: per_cpu,
        leaf_bytes: r.leaf_bytes,
        integrity_bytes: r.integrity_bytes,
        file_bytes: r.file_bytes,
        kept: r.kept.as_ref().map(|p| p.display().to_string()),
    }
}
