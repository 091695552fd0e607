//! `stele-verify`: check a stele audit export offline.
//!
//! Exit codes: 0 verified, 3 verification failed (the first failure is
//! printed with the file and entry concerned), 4 the inputs could not be
//! read or parsed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use stele_attest::cosignature::CosignatureVerifier;
use stele_attest::NoteVerifier;
use stele_verify::{verify, Bundle, Options};

/// Verify a signed stele audit export (folder or .tar) without trusting its producer.
#[derive(Debug, Parser)]
#[command(name = "stele-verify", version)]
struct Args {
    /// The export: a folder or a .tar file.
    bundle: PathBuf,
    /// The log's verifier key (name+hash+base64), obtained out of band.
    #[arg(long)]
    key: String,
    /// The manifest signing key, when exports are signed with a separate key [default: the log key].
    #[arg(long)]
    export_key: Option<String>,
    /// A witness's verifier key (cosignature/v1, type 0x04); repeatable.
    #[arg(long = "witness")]
    witnesses: Vec<String>,
    /// Cosignatures required [default: every --witness].
    #[arg(long)]
    quorum: Option<usize>,
    /// A checkpoint you already hold (from a witness, WORM storage, a previous audit); repeatable.
    #[arg(long = "checkpoint")]
    checkpoints: Vec<PathBuf>,
    /// Also print the verification rate on its own line (for benchmarks).
    #[arg(long)]
    bench: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let opts = match options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("stele-verify: {e:#}");
            return ExitCode::from(4);
        }
    };
    let bundle = match Bundle::open(&args.bundle) {
        Ok(b) => b,
        Err(f) => {
            eprintln!("stele-verify: cannot open {}: {f}", args.bundle.display());
            return ExitCode::from(4);
        }
    };
    match verify(&bundle, &opts) {
        Ok(r) => {
            print!("{r}");
            if args.bench {
                println!(
                    "entries/s: {:.0} overall, {:.0} streaming entries and tiles; \
                     per CPU second: {:.0} overall, {:.0} streaming",
                    r.rate(),
                    r.stream_rate(),
                    r.overall_cpu_rate(),
                    r.cpu_rate()
                );
            }
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!("{}: {f}", args.bundle.display());
            ExitCode::from(3)
        }
    }
}

fn options(a: &Args) -> anyhow::Result<Options> {
    let log_key = NoteVerifier::parse(&a.key).context("--key")?;
    let export_key = a
        .export_key
        .as_deref()
        .map(NoteVerifier::parse)
        .transpose()
        .context("--export-key")?;
    let witnesses = a
        .witnesses
        .iter()
        .map(|w| CosignatureVerifier::parse(w))
        .collect::<Result<Vec<_>, _>>()
        .context("--witness")?;
    if a.quorum.is_some_and(|q| q > witnesses.len()) {
        anyhow::bail!("--quorum is larger than the number of --witness keys");
    }
    let mut anchors = Vec::new();
    for p in &a.checkpoints {
        let t = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        anchors.push((t, p.display().to_string()));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(Options {
        log_key,
        export_key,
        witnesses,
        quorum: a.quorum,
        anchors,
        now,
    })
}
