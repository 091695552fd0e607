//! `stele audit …`: create, read, verify, prove, redact and benchmark the log.
//!
//! Reading the log is itself logged: `show`, `tail` and `proof` append an
//! `audit.read` entry (so they need the signing key and the writer lock).
//! `verify` never writes: it must run on copies and read-only media.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use stele_attest::{load_key_file, NoteVerifier, Signer as _};
use stele_audit::leaf::Leaf;
use stele_audit::verify::{verify_db, VerifyFailure, VerifyReport};
use stele_audit::{Actor, AuditLog, Event, EventKind, LogOptions, Store};

use crate::paths;

/// Exit code: the log verified.
pub const EXIT_VERIFIED: u8 = 0;
/// Exit code: integrity failure (tampering, truncation, forgery).
pub const EXIT_TAMPERED: u8 = 3;
/// Exit code: the log could not be read at all.
pub const EXIT_UNREADABLE: u8 = 4;

/// Arguments of `stele audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Audit database [default: $STATE/audit.db].
    #[arg(long, global = true)]
    pub db: Option<PathBuf>,
    /// Signing key file [default: $STATE/keys/log.key].
    #[arg(long, global = true)]
    pub key: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// `stele audit` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Create a new, empty log signed by the key (its name is the origin).
    Init,
    /// Re-derive and check everything; exit 0 verified, 3 tampered, 4 unreadable.
    Verify {
        /// A checkpoint note kept outside this machine (catches truncation and rollback).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Trusted verifier key (name+hash+base64); default: the key file's public key.
        #[arg(long)]
        vkey: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print entries (recorded as an audit read).
    Show(ReadArgs),
    /// Print the newest entries (recorded as an audit read).
    Tail {
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u64,
        #[command(flatten)]
        /// Filters.
        filter: ReadArgs,
    },
    /// Print an inclusion proof for an entry against the newest checkpoint
    /// (C2SP tlog-proof form; recorded as an audit read).
    Proof {
        /// Entry index.
        index: u64,
    },
    /// Check a tlog-proof file offline.
    VerifyProof {
        /// The proof file.
        file: PathBuf,
        /// The log's verifier key.
        #[arg(long)]
        vkey: String,
    },
    /// Print the newest signed checkpoint (keep it elsewhere as an anchor).
    Checkpoint,
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
    },
    /// Write a signed export bundle for reviewers (recorded in the log first).
    Export(ExportArgs),
    /// Send the newest checkpoint to witnesses and store their cosignatures
    /// (fails closed when a witness has seen more of this log: rollback).
    Publish {
        /// A witness as URL=VKEY (its cosignature/v1 verifier key); repeatable.
        #[arg(long = "witness", required = true)]
        witnesses: Vec<String>,
    },
    /// Measure appends, latency, the start-up check, verification speed
    /// and overhead on a scratch log.
    Bench {
        /// Concurrent writers.
        #[arg(long, default_value_t = 64)]
        writers: usize,
        /// Entries appended by all writers together.
        #[arg(long, default_value_t = 200_000)]
        entries: u64,
        /// Appends in the one-writer, one-at-a-time run.
        #[arg(long, default_value_t = 1000)]
        serial: u64,
        /// Append on top of a log already holding this many entries; a
        /// comma-separated list runs once per size (e.g. 0,1000000,10000000).
        #[arg(long, value_delimiter = ',', default_value = "0")]
        existing: Vec<u64>,
        /// Where the logs of --existing sizes are built once and kept
        /// [default: $XDG_CACHE_HOME/stele/bench or ~/.cache/stele/bench].
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Skip verifying the whole log afterwards.
        #[arg(long)]
        no_verify: bool,
        /// Append to the cached --existing log itself instead of a copy
        /// (saves its size in disk space; it keeps what each run appends).
        #[arg(long)]
        in_place: bool,
        /// Keep the scratch log in this folder.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
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
}

/// Filters for reading.
#[derive(Debug, Clone, clap::Args)]
pub struct ReadArgs {
    /// Only this session.
    #[arg(long)]
    pub session: Option<String>,
    /// Only this kind (e.g. tool.intent).
    #[arg(long)]
    pub kind: Option<String>,
    /// One JSON leaf per line.
    #[arg(long)]
    pub json: bool,
    /// Who is reading [default: $USER].
    #[arg(long)]
    pub user: Option<String>,
}

/// Run `stele audit`.
pub fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let db = args.db.clone().unwrap_or_else(paths::default_db);
    let key = args.key.clone().unwrap_or_else(paths::default_key);
    match args.command {
        AuditCommand::Init => {
            let signer = Arc::new(load_key_file(&key)?);
            let log = AuditLog::create(&db, signer, LogOptions::default())?;
            let v = log.verifier().to_string();
            log.close()?;
            println!("created audit log {}\nverifier key: {v}", db.display());
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify {
            checkpoint,
            vkey,
            json,
        } => verify(&db, &key, checkpoint.as_deref(), vkey, json),
        AuditCommand::Show(f) => read(&db, &key, &f, None),
        AuditCommand::Tail { lines, filter } => read(&db, &key, &filter, Some(lines)),
        AuditCommand::Proof { index } => {
            let log = open_for_read(
                &db,
                &key,
                None,
                serde_json::json!({"command": "proof", "index": index}),
            )?;
            let store = log.store()?;
            let text = stele_audit::proof::make(&store, log.verifier(), index)?;
            log.close()?;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::VerifyProof { file, vkey } => {
            let v = NoteVerifier::parse(&vkey)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            match stele_audit::proof::verify(&text, &v) {
                Ok(p) => {
                    println!(
                        "OK: entry {} is included in {} at size {}",
                        p.index, p.checkpoint.origin, p.checkpoint.size
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("FAILED: {}: {e}", file.display());
                    Ok(ExitCode::from(EXIT_TAMPERED))
                }
            }
        }
        AuditCommand::Checkpoint => {
            let store = Store::open(&db)?;
            let (_, note) = store
                .latest_checkpoint()?
                .context("the log has no checkpoint")?;
            print!("{note}");
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Redact {
            commitment,
            reason,
            user,
        } => {
            let signer = Arc::new(load_key_file(&key)?);
            let log = AuditLog::open(&db, signer, LogOptions::default())?;
            let r = log.redact_blocking(vec![commitment.clone()], reason, human_actor(user))?;
            log.close()?;
            println!("redacted {commitment}: redaction entry {}", r.seq);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export(a) => export(&db, &key, a),
        AuditCommand::Publish { witnesses } => publish(&db, &key, &witnesses),
        AuditCommand::Bench {
            writers,
            entries,
            serial,
            existing,
            cache,
            no_verify,
            in_place,
            keep,
        } => {
            let mut reports = Vec::new();
            for n in existing {
                let r = stele_audit::bench::run(&stele_audit::bench::BenchOptions {
                    writers,
                    entries,
                    serial_entries: serial,
                    existing: n,
                    cache: cache
                        .clone()
                        .unwrap_or_else(stele_audit::bench::default_cache),
                    keep: keep.clone(),
                    in_place,
                    verify: !no_verify,
                })?;
                print!("{r}");
                reports.push(r);
            }
            if reports.len() > 1 {
                print!("{}", stele_audit::bench::summary(&reports));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn human_actor(user: Option<String>) -> Actor {
    let mut a = Actor::system();
    a.principal = user
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .unwrap_or_else(|| "unknown".into());
    a
}

/// Open the log for writing and record the read before anything is shown.
pub(crate) fn open_for_read(
    db: &Path,
    key: &Path,
    user: Option<String>,
    what: serde_json::Value,
) -> anyhow::Result<AuditLog> {
    let signer = Arc::new(load_key_file(key)?);
    let log = AuditLog::open(db, signer, LogOptions::default()).with_context(|| {
        format!(
            "opening {} (reads of the audit log are themselves logged)",
            db.display()
        )
    })?;
    log.append_blocking(Event::new(EventKind::AuditRead, human_actor(user)).with_data(what))?;
    Ok(log)
}

fn read(db: &Path, key: &Path, f: &ReadArgs, tail: Option<u64>) -> anyhow::Result<ExitCode> {
    let what = serde_json::json!({
        "command": if tail.is_some() { "tail" } else { "show" },
        "session": f.session, "kind": f.kind,
    });
    if let Some(k) = &f.kind {
        if EventKind::parse(k).is_none() {
            anyhow::bail!(
                "unknown kind {k:?}; kinds: {}",
                EventKind::ALL.map(|k| k.as_str()).join(", ")
            );
        }
    }
    let log = open_for_read(db, key, f.user.clone(), what)?;
    let store = log.store()?;
    let size = store.size()?;
    let mut out: std::collections::VecDeque<(Vec<u8>, Leaf)> = std::collections::VecDeque::new();
    let mut scratch = Vec::new();
    store.for_each_entry(0, size, |_, bytes, _| {
        let leaf = Leaf::decode_canonical(bytes, &mut scratch)?;
        let keep = f
            .session
            .as_ref()
            .is_none_or(|s| leaf.session.as_ref().is_some_and(|l| &l.id == s))
            && f.kind.as_ref().is_none_or(|k| leaf.kind.as_str() == k);
        if keep {
            out.push_back((bytes.to_vec(), leaf));
            if let Some(n) = tail {
                if out.len() as u64 > n {
                    out.pop_front();
                }
            }
        }
        Ok(())
    })?;
    log.close()?;
    for (bytes, leaf) in &out {
        if f.json {
            println!("{}", String::from_utf8_lossy(bytes));
        } else {
            println!("{}", summary(leaf));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn summary(l: &Leaf) -> String {
    let mut s = format!(
        "{:>7}  {}  {:<19} {}",
        l.seq,
        l.ts,
        l.kind.as_str(),
        l.actor.principal
    );
    if let Some(sess) = &l.session {
        s.push_str(&format!("  session={}#{}", sess.id, sess.n));
    }
    if let Some(t) = &l.target {
        for (k, v) in [
            ("path", &t.path),
            ("program", &t.program),
            ("host", &t.host),
            ("tool", &t.tool),
            ("model", &t.model),
        ] {
            if let Some(v) = v {
                s.push_str(&format!("  {k}={v}"));
            }
        }
    }
    if let Some(d) = &l.decision {
        s.push_str(&format!("  {:?}", d.effect).to_lowercase());
        if !d.policies.is_empty() {
            s.push_str(&format!(" [{}]", d.policies.join(",")));
        }
    }
    if let Some(o) = &l.outcome {
        s.push_str(&format!("  -> {:?}", o.status).to_lowercase());
    }
    if let Some(r) = &l.refs {
        s.push_str(&format!(" (intent {})", r.intent_seq));
    }
    s
}

fn verify(
    db: &Path,
    key: &Path,
    checkpoint: Option<&Path>,
    vkey: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let verifier = match vkey {
        Some(v) => NoteVerifier::parse(&v)?,
        None => match load_key_file(key) {
            Ok(s) => s.verifier(),
            Err(e) => {
                eprintln!("stele: cannot use the key file ({e}); give the trusted key with --vkey");
                return Ok(ExitCode::from(EXIT_UNREADABLE));
            }
        },
    };
    let anchor = match checkpoint {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("stele: cannot read checkpoint {}: {e}", p.display());
                return Ok(ExitCode::from(EXIT_UNREADABLE));
            }
        },
        None => None,
    };
    match verify_db(db, &verifier, anchor.as_deref()) {
        Ok(r) => {
            if json {
                println!("{}", report_json(&r, "verified", None));
            } else {
                print_report(&r);
            }
            Ok(ExitCode::from(EXIT_VERIFIED))
        }
        Err(f @ VerifyFailure::Tampered { .. }) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"result": "tampered", "error": f.to_string()})
                );
            }
            eprintln!("{}: {f}", db.display());
            Ok(ExitCode::from(EXIT_TAMPERED))
        }
        Err(f @ VerifyFailure::Unreadable(_)) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"result": "unreadable", "error": f.to_string()})
                );
            }
            eprintln!("{}: {f}", db.display());
            Ok(ExitCode::from(EXIT_UNREADABLE))
        }
    }
}

fn report_json(r: &VerifyReport, result: &str, _e: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "result": result,
        "origin": r.origin,
        "entries": r.entries,
        "checkpoints": r.checkpoints,
        "root": r.root,
        "sessions": r.sessions,
        "open_sessions": r.open_sessions,
        "payloads_present": r.payloads_present,
        "payloads_redacted": r.payloads_redacted,
        "redactions": r.redactions.iter().map(|x| serde_json::json!({"seq": x.seq, "count": x.count, "reason": x.reason})).collect::<Vec<_>>(),
        "unfinished_intents": r.unfinished.iter().map(|u| serde_json::json!({"seq": u.seq, "kind": u.kind.as_str()})).collect::<Vec<_>>(),
        "interrupted": r.interrupted,
        "time_span": r.time_span,
        "anchor_size": r.anchor_size,
    })
}

fn print_report(r: &VerifyReport) {
    println!("OK: {} verified", r.origin);
    println!("  entries:      {} (root {})", r.entries, r.root);
    println!(
        "  checkpoints:  {} signed checkpoints verified",
        r.checkpoints
    );
    if let Some((a, b)) = &r.time_span {
        println!("  time span:    {a} .. {b}");
    }
    println!(
        "  sessions:     {} ({} without an end entry)",
        r.sessions, r.open_sessions
    );
    println!(
        "  payloads:     {} verified, {} redacted",
        r.payloads_present, r.payloads_redacted
    );
    for x in &r.redactions {
        println!(
            "  redaction:    entry {} erased {} payload(s): {}",
            x.seq, x.count, x.reason
        );
    }
    if let Some(s) = r.anchor_size {
        println!("  anchor:       consistent with the checkpoint held elsewhere (size {s})");
    }
    println!(
        "  interrupted:  {} intent(s) closed as interrupted",
        r.interrupted
    );
    for u in &r.unfinished {
        println!(
            "  unfinished:   intent {} ({}) has no result",
            u.seq, u.kind
        );
    }
    match stele_audit::cpu_time::meaningful_rate(r.entries, r.cpu_seconds) {
        Some(rate) => println!(
            "  took {:.3} s wall, {:.3} s CPU ({rate:.0} entries/s on one core)",
            r.seconds, r.cpu_seconds
        ),
        None => println!("  took {:.3} s wall, {:.3} s CPU", r.seconds, r.cpu_seconds),
    }
}

fn export(db: &Path, key: &Path, a: ExportArgs) -> anyhow::Result<ExitCode> {
    use stele_audit::export::layout::Selection;
    use stele_audit::export::write::{export, ExportOptions, PolicyInput};
    let selection = match (&a.session, &a.since, &a.until) {
        (Some(id), _, _) => Selection::Session { id: id.clone() },
        (None, Some(since), Some(until)) => Selection::Time {
            since: since.clone(),
            until: until.clone(),
        },
        _ => Selection::All,
    };
    let mut policies = Vec::new();
    for dir in &a.policies {
        // The engine's digest is the one leaves name in `decision.bundle`.
        let digest = stele_policy::Bundle::load(dir)
            .map(|b| b.digest().to_string())
            .with_context(|| format!("loading policy bundle {}", dir.display()))?;
        policies.push(PolicyInput {
            dir: dir.clone(),
            bundle_digest: Some(digest),
        });
    }
    let signer = Arc::new(load_key_file(key)?);
    let manifest_key = match &a.export_key {
        Some(p) => Some(load_key_file(p)?),
        None => None,
    };
    let log = AuditLog::open(db, signer.clone(), LogOptions::default())
        .with_context(|| format!("opening {} (exports are themselves logged)", db.display()))?;
    let tar = a.out.extension().is_some_and(|e| e == "tar");
    let opts = ExportOptions {
        selection,
        payloads: !a.no_payloads,
        policies,
        exporter: human_actor(a.user.clone()),
        allow_open_session: a.allow_open_session,
        tar,
    };
    let mk: &dyn stele_attest::Signer = match &manifest_key {
        Some(k) => k,
        None => signer.as_ref(),
    };
    let r = export(&log, mk, &opts, &a.out);
    log.close()?;
    let r = r?;
    println!(
        "exported {} ({} entries in the tiles, {} selected, {} files; recorded as entry {})",
        a.out.display(),
        r.tree_size,
        r.selected,
        r.files + 1,
        r.export_entry
    );
    println!(
        "verify with: stele-verify {} --key '{}'",
        a.out.display(),
        signer.verifier()
    );
    Ok(ExitCode::SUCCESS)
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
    let verifier = load_key_file(key)?.verifier();
    match publish_to_witnesses(db, &verifier, &targets) {
        Ok(r) => {
            println!(
                "published size {}: cosigned by {}",
                r.size,
                r.cosigned.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("stele: {e}");
            Ok(ExitCode::from(EXIT_TAMPERED))
        }
    }
}
