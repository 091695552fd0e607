//! `stele-verify`: check a stele audit export offline.
//!
//! Exit codes: 0 verified, 3 verification failed (the first failure is
//! printed with the file and entry concerned), 4 the inputs could not be
//! read or parsed, 74 the output could not be written.
// Output goes through `out`, which never panics on a closed pipe.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod chain_cli;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use output::{err, out, EXIT_OUTPUT_FAILED};

use anyhow::Context as _;
use clap::Parser;
use stele_attest::cosignature::CosignatureVerifier;
use stele_attest::NoteVerifier;
use stele_verify::{verify_producing, Bundle, Options, Produce};

/// Verify a signed stele audit export (folder or .tar) without trusting its producer.
#[derive(Debug, Parser)]
#[command(name = "stele-verify", version)]
pub(crate) struct Args {
    /// The export: a folder or a .tar file (with --then: the first archive).
    bundle: PathBuf,
    /// The archive chain: the next bundle, which must start where the one
    /// before ends (a later archive, then the export of the live log);
    /// repeatable, in order. Each is verified on its own and joined to the
    /// one before. See docs/export-format.md, "The archive chain".
    #[arg(long = "then", conflicts_with_all = ["report", "out"])]
    then: Vec<PathBuf>,
    /// The log's verifier key (name+hash+base64), obtained out of band;
    /// repeat for more keys of a rotated log (required for every key once
    /// one is revoked).
    #[arg(long = "key", required = true)]
    keys: Vec<String>,
    /// A compromised key not to trust for tree sizes SIZE and above, as
    /// KEY@SIZE (KEY in name+hash+base64 form); repeatable. See docs/keys.md.
    #[arg(long = "revoked")]
    revoked: Vec<String>,
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
    /// The certificate (PEM) of the Time Stamping Authority whose RFC 3161
    /// tokens the export carries, or of the CA that issued it; without it
    /// tokens are listed but not checked.
    #[arg(long)]
    tsa_cert: Option<PathBuf>,
    /// Also print the verification rate on its own line (for benchmarks).
    #[arg(long)]
    bench: bool,
    /// Print the result as one JSON object (schema in docs/review-report.md).
    #[arg(long)]
    json: bool,
    /// Write the reviewer's report, derived from the verified entries.
    #[arg(long, value_enum)]
    report: Option<ReportFormat>,
    /// Where to write the report [default: standard output].
    #[arg(long, requires = "report")]
    out: Option<PathBuf>,
}

/// Report formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    /// Markdown.
    Md,
    /// One self-contained HTML file.
    Html,
    /// JSON (docs/review-report.md).
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let code = run(&args);
    match output::failure() {
        Some(why) => {
            err(format_args!("stele-verify: {why}\n"));
            ExitCode::from(EXIT_OUTPUT_FAILED)
        }
        None => code,
    }
}

fn run(args: &Args) -> ExitCode {
    if args.json && args.report.is_some() && args.out.is_none() {
        err(format_args!(
            "stele-verify: --json prints the result on standard output; give the report a file with --out\n"
        ));
        return ExitCode::from(4);
    }
    let opts = match options(args) {
        Ok(o) => o,
        Err(e) => return unreadable(args, &format!("{e:#}")),
    };
    if !args.then.is_empty() {
        return chain_cli::run(args, &opts);
    }
    let bundle = match Bundle::open(&args.bundle) {
        Ok(b) => b,
        Err(f) => return unreadable(args, &format!("cannot open {}: {f}", args.bundle.display())),
    };
    // The account is built only for a report (a plain verification runs
    // at full speed without it).
    let produce = match args.report {
        Some(_) => Produce::ResultAndAccount,
        None => Produce::Result,
    };
    let r = match verify_producing(&bundle, &opts, produce) {
        Ok(r) => r,
        Err(f) => {
            if args.json {
                let v = serde_json::json!({
                    "schema": stele_verify::VERIFY_SCHEMA, "result": "failed",
                    "file": f.file, "entry": f.index, "reason": f.reason,
                });
                out(format_args!("{v}\n"));
            }
            err(format_args!("{}: {f}\n", args.bundle.display()));
            return ExitCode::from(3);
        }
    };
    let report = args.report.map(|f| match f {
        ReportFormat::Md => stele_verify::account::markdown::render(&r.account),
        ReportFormat::Html => stele_verify::account::html::render(&r.account),
        ReportFormat::Json => serde_json::to_string_pretty(&r.account).unwrap_or_default() + "\n",
    });
    if let (Some(text), Some(path)) = (&report, &args.out) {
        if let Err(e) = output::write_file(path, text.as_bytes()) {
            err(format_args!(
                "stele-verify: cannot write {}: {e}\n",
                path.display()
            ));
            return ExitCode::from(4);
        }
    }
    let status_to_stderr = report.is_some() && args.out.is_none();
    if args.json {
        out(format_args!("{}\n", r.to_json()));
    } else if status_to_stderr {
        // The report is the output; the result is said on stderr.
        err(format_args!(
            "OK: export of {} verified ({} entries)\n",
            r.origin, r.entries
        ));
    } else {
        out(format_args!("{r}"));
        if let Some(p) = &args.out {
            out(format_args!("  report:       {}\n", p.display()));
        }
    }
    if let (Some(text), None) = (&report, &args.out) {
        out(format_args!("{text}"));
    }
    if args.bench {
        let line = format!(
            "entries/s: {:.0} overall, {:.0} streaming entries and tiles; \
             per CPU second: {:.0} overall, {:.0} streaming\n",
            r.rate(),
            r.stream_rate(),
            r.overall_cpu_rate(),
            r.cpu_rate()
        );
        if args.json {
            err(format_args!("{line}"));
        } else {
            out(format_args!("{line}"));
        }
    }
    ExitCode::SUCCESS
}

pub(crate) fn unreadable(args: &Args, why: &str) -> ExitCode {
    if args.json {
        let v = serde_json::json!({
            "schema": stele_verify::VERIFY_SCHEMA, "result": "unreadable", "error": why,
        });
        out(format_args!("{v}\n"));
    }
    err(format_args!("stele-verify: {why}\n"));
    ExitCode::from(4)
}

fn options(a: &Args) -> anyhow::Result<Options> {
    let mut keys = a
        .keys
        .iter()
        .map(|k| NoteVerifier::parse(k))
        .collect::<Result<Vec<_>, _>>()
        .context("--key")?;
    let log_key = keys.remove(0);
    if let Some(k) = keys.iter().find(|k| k.name() != log_key.name()) {
        anyhow::bail!(
            "--key: {} names log {:?}, the first --key names {:?}",
            k,
            k.name(),
            log_key.name()
        );
    }
    let mut revoked = Vec::new();
    for r in &a.revoked {
        let (k, size) = r
            .rsplit_once('@')
            .with_context(|| format!("--revoked {r:?}: expected KEY@SIZE"))?;
        let v = NoteVerifier::parse(k).with_context(|| format!("--revoked {r:?}: the key"))?;
        let from: u64 = size
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("--revoked {r:?}: SIZE must be a tree size from 1"))?;
        revoked.push(stele_audit::keys::Revocation {
            key: v.to_string(),
            from,
        });
    }
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
    let tsa = match &a.tsa_cert {
        Some(p) => {
            let pem =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Some(
                stele_attest::timestamp::TsaTrust::from_pem(&pem)
                    .with_context(|| format!("{}: not a PEM certificate", p.display()))?,
            )
        }
        None => None,
    };
    Ok(Options {
        log_key,
        more_keys: keys,
        revoked,
        export_key,
        witnesses,
        quorum: a.quorum,
        anchors,
        now,
        tsa,
    })
}
