//! `stele audit …`: create, read, verify, prove, redact and benchmark the log.
//!
//! Reading the log is itself logged: `show`, `tail` and `proof` append an
//! `audit.read` entry (so they need the signing key and the writer lock).
//! `verify` never writes: it must run on copies and read-only media.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use stele_attest::NoteVerifier;
use stele_audit::verify::{verify_db, VerifyFailure, VerifyReport};
use stele_audit::{Actor, AuditLog, Event, EventKind, LogOptions, Store};

use crate::paths;
use crate::terminal_safe;

/// Exit code: the log verified.
pub const EXIT_VERIFIED: u8 = 0;
/// Exit code: integrity failure (tampering, truncation, forgery).
pub const EXIT_TAMPERED: u8 = 3;
/// Exit code: the log could not be read at all.
pub const EXIT_UNREADABLE: u8 = 4;

/// Arguments of `stele audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// Which log, and its key: only the subcommands that open a log take them
/// (`verify-proof` and `bench` work without one).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogArgs {
    /// Audit database [default: $STATE/audit.db].
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Signing key file [default: $STATE/keys/log.key].
    #[arg(long)]
    pub key: Option<PathBuf>,
}

impl LogArgs {
    /// The database: `--db`, else the default.
    pub fn db(&self) -> PathBuf {
        self.db.clone().unwrap_or_else(paths::default_db)
    }

    /// The key file: `--key`, else the default.
    pub fn key(&self) -> PathBuf {
        self.key.clone().unwrap_or_else(paths::default_key)
    }
}

/// `stele audit` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Create a new, empty log signed by the key (its name is the origin).
    Init(LogArgs),
    /// Re-derive and check everything; exit 0 verified, 3 tampered, 4 unreadable.
    Verify {
        #[command(flatten)]
        /// The log.
        log: LogArgs,
        /// A checkpoint note kept outside this machine (catches truncation and rollback).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Trusted verifier key (name+hash+base64); default: the key file's public key.
        #[arg(long)]
        vkey: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// The archive bundles of the log's archived prefix, oldest first
        /// (repeat for each archive): verified too, and joined to each
        /// other and to the live log at the boundaries (the chain).
        #[arg(long)]
        archive: Vec<PathBuf>,
        /// The key that signed the archive bundles' manifests, if not the log key.
        #[arg(long, requires = "archive")]
        archive_export_key: Option<String>,
    },
    /// Move a sealed prefix of the log into an archive bundle (verified
    /// first) and remove it from the live database under a signed
    /// `log.archive` entry.
    Archive(super::audit_archive::ArchiveArgs),
    /// Print entries (recorded as an audit read).
    Show(super::audit_show::ReadArgs),
    /// Print the newest entries (recorded as an audit read).
    Tail {
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u64,
        #[command(flatten)]
        /// Filters.
        filter: super::audit_show::ReadArgs,
    },
    /// Print an inclusion proof for an entry against the newest checkpoint
    /// (C2SP tlog-proof form; recorded as an audit read).
    Proof {
        /// Entry index.
        index: u64,
        #[command(flatten)]
        /// The log.
        log: LogArgs,
    },
    /// Check a tlog-proof file offline: only the file and the verifier key
    /// are used (no log, no key file).
    VerifyProof {
        /// The proof file.
        file: PathBuf,
        /// The log's verifier key.
        #[arg(long)]
        vkey: String,
    },
    /// Print the newest signed checkpoint (keep it elsewhere as an anchor).
    Checkpoint(LogArgs),
    /// Stamp the newest checkpoint now with the configured `[tsa]` (RFC
    /// 3161); the token is checked and stored as at a session's end.
    Timestamp(LogArgs),
    /// Erase a payload body; appends a signed redaction entry saying who and why.
    Redact {
        /// The commitment (sha256s:… as shown in the leaf).
        commitment: String,
        /// Why (legal basis, request reference).
        #[arg(long)]
        reason: String,
        /// Who is redacting [default: $USER].
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        /// The log.
        log: LogArgs,
    },
    /// Erase payload bodies past their retention class (managed
    /// configuration `[retention]`), each erasure under a signed
    /// `payload.expiry` entry; held payloads are kept.
    Expire(super::audit_retention::ExpireArgs),
    /// Legal holds: place, release (two hold officers), list.
    #[command(subcommand)]
    Hold(super::audit_retention::HoldCommand),
    /// Write a signed export bundle for reviewers (recorded in the log first).
    Export(ExportArgs),
    /// The reviewer's report of the live log (or one session), verified
    /// first, read-only: what stele-verify --report shows for an export.
    Report(super::audit_report::ReportArgs),
    /// The live SIEM feed: deliver the log to syslog/TLS, Splunk HEC and
    /// OTLP receivers as it grows, and see each sink's lag (docs/siem.md).
    Feed(super::audit_feed::FeedArgs),
    /// Send the newest checkpoint to witnesses and store their cosignatures
    /// (fails closed when a witness has seen more of this log: rollback).
    Publish {
        /// A witness as URL=VKEY (its cosignature/v1 verifier key); repeatable.
        #[arg(long = "witness", required = true)]
        witnesses: Vec<String>,
        #[command(flatten)]
        /// The log.
        log: LogArgs,
    },
    /// Measure appends, latency, checkpoint signing, the start-up check,
    /// verification speed and overhead on a scratch log.
    Bench(super::audit_bench::BenchArgs),
}

/// Arguments of `stele audit export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// Export one session (it must have ended).
    #[arg(long, conflicts_with_all = ["since", "until"])]
    pub session: Option<String>,
    /// Export entries from this time (leaf format, e.g. 2026-01-01T00:00:00Z), inclusive.
    #[arg(long, requires = "until")]
    pub since: Option<String>,
    /// …until this time, exclusive.
    #[arg(long, requires = "since")]
    pub until: Option<String>,
    /// Leave payload bodies out (commitments still verify; bodies are reported withheld).
    #[arg(long)]
    pub no_payloads: bool,
    /// A policy bundle folder in force to include; repeatable.
    #[arg(long = "policy")]
    pub policies: Vec<PathBuf>,
    /// Sign the manifest with this key instead of the log key.
    #[arg(long)]
    pub export_key: Option<PathBuf>,
    /// Export a session that has not ended (the verifier will refuse it as incomplete).
    #[arg(long)]
    pub allow_open_session: bool,
    /// Who is exporting [default: $USER].
    #[arg(long)]
    pub user: Option<String>,
    /// Output folder, or a file ending in .tar.
    #[arg(long)]
    pub out: PathBuf,
    /// Print what was exported as JSON (docs/json/audit-export.schema.json).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    /// The log.
    pub log: LogArgs,
}

/// Run `stele audit`.
pub fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AuditCommand::Init(log) => {
            let (db, key) = (log.db(), log.key());
            // What the audit crate creates here is private whatever the umask.
            paths::private_umask();
            let signer = super::state::signing_key(&key)?;
            if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
                paths::ensure_private_dir(dir)?;
            }
            let log = AuditLog::create(&db, signer, LogOptions::default())?;
            let v = log.verifier().to_string();
            log.close()?;
            crate::outln!(
                "created audit log {}\nverifier key: {}",
                terminal_safe::path(&db),
                terminal_safe::line(&v)
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify {
            log,
            checkpoint,
            vkey,
            json,
            archive,
            archive_export_key,
        } => verify(
            &log.db(),
            &log.key(),
            checkpoint.as_deref(),
            vkey,
            json,
            (!archive.is_empty()).then_some((archive.as_slice(), archive_export_key)),
        ),
        AuditCommand::Archive(a) => super::audit_archive::archive(a),
        AuditCommand::Show(f) => super::audit_show::read(&f, None),
        AuditCommand::Tail { lines, filter } => super::audit_show::read(&filter, Some(lines)),
        AuditCommand::Proof { index, log } => {
            let (db, key) = (log.db(), log.key());
            let log = open_for_read(
                &db,
                &key,
                None,
                serde_json::json!({"command": "proof", "index": index}),
            )?;
            let store = log.store()?;
            let text = stele_audit::proof::make(&store, &log.verifier(), index)?;
            log.close()?;
            crate::out!("{}", data_for_stdout(&text));
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::VerifyProof { file, vkey } => {
            let v = NoteVerifier::parse(&vkey)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", terminal_safe::path(&file)))?;
            match stele_audit::proof::verify(&text, &v) {
                Ok(p) => {
                    crate::outln!(
                        "OK: entry {} is included in {} at size {}",
                        p.index,
                        terminal_safe::line(&p.checkpoint.origin),
                        p.checkpoint.size
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    crate::errln!(
                        "FAILED: {}: {}",
                        terminal_safe::path(&file),
                        terminal_safe::line(&e.to_string())
                    );
                    Ok(ExitCode::from(EXIT_TAMPERED))
                }
            }
        }
        AuditCommand::Checkpoint(log) => {
            let db = log.db();
            super::state::existing_log(&db)?;
            let store = Store::open(&db)?;
            let (_, note) = store
                .latest_checkpoint()?
                .context("the log has no checkpoint")?;
            crate::out!("{}", data_for_stdout(&note));
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Timestamp(log) => super::audit_timestamp::run(&log),
        AuditCommand::Redact {
            commitment,
            reason,
            user,
            log,
        } => {
            let (db, key) = (log.db(), log.key());
            let actor = human_actor(user)?;
            let signer = super::state::signing_key(&key)?;
            super::state::existing_log(&db)?;
            let log = AuditLog::open(&db, signer, LogOptions::default())?;
            let r = log.redact_blocking(vec![commitment.clone()], reason, actor)?;
            log.close()?;
            crate::outln!(
                "redacted {}: redaction entry {}",
                terminal_safe::line(&commitment),
                r.seq
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Expire(a) => super::audit_retention::expire(a),
        AuditCommand::Hold(c) => super::audit_retention::hold(c),
        AuditCommand::Export(a) => super::audit_export::export(&a.log.db(), &a.log.key(), a),
        AuditCommand::Report(a) => super::audit_report::run(a),
        AuditCommand::Feed(a) => super::audit_feed::run(a),
        AuditCommand::Publish { witnesses, log } => publish(&log.db(), &log.key(), &witnesses),
        AuditCommand::Bench(a) => super::audit_bench::run(a),
    }
}

/// The person reading, redacting or exporting: `--user`, else `$USER`,
/// else `$LOGNAME`, checked where it enters (it is shown to reviewers).
pub(crate) fn human_actor(user: Option<String>) -> anyhow::Result<Actor> {
    let mut a = Actor::system();
    a.principal = crate::principal::from_flag_or_env(user.as_deref(), "unknown")?;
    Ok(a)
}

/// A data format printed for a person or a program (a proof, a
/// checkpoint note): byte for byte into a pipe or file, escaped on a
/// terminal (the formats hold no control characters unless forged).
fn data_for_stdout(text: &str) -> String {
    use std::io::IsTerminal as _;
    if std::io::stdout().is_terminal() {
        terminal_safe::block(text)
    } else {
        text.to_string()
    }
}

/// Open the log for writing and record the read before anything is shown.
pub(crate) fn open_for_read(
    db: &Path,
    key: &Path,
    user: Option<String>,
    what: serde_json::Value,
) -> anyhow::Result<AuditLog> {
    let actor = human_actor(user)?;
    super::state::existing_log(db)?;
    let signer = super::state::signing_key(key).map_err(|e| {
        e.context(
            "reads of the live log are recorded in it, which needs its signing key; to read \
             without recording (a reviewer's copy), give the log's verifier key with --vkey",
        )
    })?;
    let log = AuditLog::open(db, signer, LogOptions::default()).with_context(|| {
        format!(
            "opening {} (reads of the audit log are themselves logged)",
            terminal_safe::path(db)
        )
    })?;
    log.append_blocking(Event::new(EventKind::AuditRead, actor).with_data(what))?;
    Ok(log)
}

fn verify(
    db: &Path,
    key: &Path,
    checkpoint: Option<&Path>,
    vkey: Option<String>,
    json: bool,
    archive: Option<(&[PathBuf], Option<String>)>,
) -> anyhow::Result<ExitCode> {
    let verifier = match vkey {
        Some(v) => NoteVerifier::parse(&v)?,
        None => match super::state::signing_key(key) {
            Ok(s) => s.verifier(),
            Err(e) => {
                crate::errln!(
                    "stele: cannot use the key file ({e}); give the trusted key with --vkey"
                );
                return Ok(ExitCode::from(EXIT_UNREADABLE));
            }
        },
    };
    let anchor = match checkpoint {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => Some(t),
            Err(e) => {
                crate::errln!(
                    "stele: cannot read checkpoint {}: {e}",
                    terminal_safe::path(p)
                );
                return Ok(ExitCode::from(EXIT_UNREADABLE));
            }
        },
        None => None,
    };
    let verified = verify_db(db, &verifier, anchor.as_deref());
    if let (Ok(_), Some((bundles, export_key))) = (&verified, archive) {
        let export_key = export_key.map(|k| NoteVerifier::parse(&k)).transpose()?;
        let names: Vec<String> = bundles.iter().map(|b| terminal_safe::path(b)).collect();
        match super::audit_archive::chain(db, &verifier, bundles, export_key) {
            Ok(n) => crate::outln!(
                "OK: archive{} {} hold{} entries 0..{n} and join{} the live log",
                if names.len() > 1 { "s" } else { "" },
                names.join(" + "),
                if names.len() > 1 { "" } else { "s" },
                if names.len() > 1 { "" } else { "s" }
            ),
            Err(why) => {
                crate::errln!(
                    "TAMPERED: the archive chain {} -> {} fails: {}",
                    names.join(" -> "),
                    terminal_safe::path(db),
                    terminal_safe::line(&why)
                );
                return Ok(ExitCode::from(EXIT_TAMPERED));
            }
        }
    }
    match verified {
        Ok(r) => {
            if json {
                super::json::line(&report_json(&r))?;
            } else {
                print_report(&r);
            }
            Ok(ExitCode::from(EXIT_VERIFIED))
        }
        Err(f @ VerifyFailure::Tampered { .. }) => {
            if json {
                super::json::line(&failure_json(super::json::VerifyResult::Tampered, &f))?;
            }
            crate::errln!(
                "{}: {}",
                terminal_safe::path(db),
                terminal_safe::line(&f.to_string())
            );
            Ok(ExitCode::from(EXIT_TAMPERED))
        }
        Err(f @ VerifyFailure::Unreadable(_)) => {
            if json {
                super::json::line(&failure_json(super::json::VerifyResult::Unreadable, &f))?;
            }
            crate::errln!(
                "{}: {}",
                terminal_safe::path(db),
                terminal_safe::line(&f.to_string())
            );
            Ok(ExitCode::from(EXIT_UNREADABLE))
        }
    }
}

fn report_json(r: &VerifyReport) -> super::json::VerifyOutput {
    use super::json::{
        RedactionFigure, UnfinishedFigure, VerifyFigures, VerifyOutput, VerifyResult,
    };
    VerifyOutput {
        result: VerifyResult::Verified,
        error: None,
        report: Some(VerifyFigures {
            origin: r.origin.clone(),
            entries: r.entries,
            checkpoints: r.checkpoints,
            root: r.root.clone(),
            sessions: r.sessions,
            open_sessions: r.open_sessions,
            payloads_present: r.payloads_present,
            payloads_redacted: r.payloads_redacted,
            redactions: r
                .redactions
                .iter()
                .map(|x| RedactionFigure {
                    seq: x.seq,
                    count: x.count as u64,
                    reason: x.reason.clone(),
                })
                .collect(),
            unfinished_intents: r
                .unfinished
                .iter()
                .map(|u| UnfinishedFigure {
                    seq: u.seq,
                    kind: u.kind.as_str().to_string(),
                })
                .collect(),
            interrupted: r.interrupted,
            time_span: r.time_span.clone(),
            anchor_size: r.anchor_size,
            seconds: r.seconds,
            cpu_seconds: r.cpu_seconds,
        }),
    }
}

fn failure_json(result: super::json::VerifyResult, e: &VerifyFailure) -> super::json::VerifyOutput {
    super::json::VerifyOutput {
        result,
        error: Some(e.to_string()),
        report: None,
    }
}

fn print_report(r: &VerifyReport) {
    // The origin, times, reasons and kinds come from the log: escaped.
    let f = terminal_safe::line;
    crate::outln!("OK: {} verified", f(&r.origin));
    crate::outln!("  entries:      {} (root {})", r.entries, f(&r.root));
    if r.archived > 0 {
        crate::outln!(
            "  archived:     entries 0..{} (verified from the kept frontier on)",
            r.archived
        );
    }
    crate::outln!(
        "  checkpoints:  {} signed checkpoints verified",
        r.checkpoints
    );
    if let Some((a, b)) = &r.time_span {
        crate::outln!("  time span:    {} .. {}", f(a), f(b));
    }
    crate::outln!(
        "  sessions:     {} ({} without an end entry)",
        r.sessions,
        r.open_sessions
    );
    crate::outln!(
        "  payloads:     {} verified, {} redacted",
        r.payloads_present,
        r.payloads_redacted
    );
    for x in &r.redactions {
        crate::outln!(
            "  redaction:    entry {} erased {} payload(s): {}",
            x.seq,
            x.count,
            f(&x.reason)
        );
    }
    for x in &r.expiries {
        crate::outln!(
            "  expiry:       entry {} erased {} payload(s) of class {} ({}) made before {}",
            x.seq,
            x.count,
            f(&x.class),
            f(&x.retention),
            x.before
        );
    }
    for h in &r.holds {
        let state = match h.released {
            Some(at) => format!("released by entry {at}"),
            None => "in force".into(),
        };
        crate::outln!(
            "  legal hold:   {} on {}: {state}",
            h.id,
            f(&h.scope.to_string())
        );
    }
    if let Some(s) = r.anchor_size {
        crate::outln!("  anchor:       consistent with the checkpoint held elsewhere (size {s})");
    }
    crate::outln!(
        "  interrupted:  {} intent(s) closed as interrupted",
        r.interrupted
    );
    for u in &r.unfinished {
        crate::outln!(
            "  unfinished:   intent {} ({}) has no result",
            u.seq,
            u.kind
        );
    }
    match stele_audit::cpu_time::meaningful_rate(r.entries, r.cpu_seconds) {
        Some(rate) => crate::outln!(
            "  took {:.3} s wall, {:.3} s CPU ({rate:.0} entries/s on one core)",
            r.seconds,
            r.cpu_seconds
        ),
        // A rate from a few milliseconds of CPU is noise ("62000000000 entries/s").
        None => crate::outln!(
            "  took {:.3} s wall, {:.3} s CPU (too little to give a rate)",
            r.seconds,
            r.cpu_seconds
        ),
    }
}

fn publish(db: &Path, key: &Path, witnesses: &[String]) -> anyhow::Result<ExitCode> {
    use stele_attest::cosignature::CosignatureVerifier;
    use stele_audit::witness::{publish_to_witnesses, WitnessTarget};
    let mut targets = Vec::new();
    for w in witnesses {
        let (url, vkey) = w.split_once('=').context("--witness must be URL=VKEY")?;
        targets.push(WitnessTarget {
            url: url.to_string(),
            key: CosignatureVerifier::parse(vkey)?,
        });
    }
    let verifier = super::state::signing_key(key)?.verifier();
    match publish_to_witnesses(db, &verifier, &targets) {
        Ok(r) => {
            let names: Vec<String> = r.cosigned.iter().map(|n| terminal_safe::line(n)).collect();
            crate::outln!(
                "published size {}: cosigned by {}",
                r.size,
                names.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            crate::errln!("stele: {}", terminal_safe::block(&e.to_string()));
            Ok(ExitCode::from(EXIT_TAMPERED))
        }
    }
}
