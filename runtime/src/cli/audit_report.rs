//! `stele audit report`: the reviewer's report (docs/review-report.md) of
//! the live log, with the code `stele-verify --report` uses on an export
//! (`stele_verify::account`: the same builder, the same Markdown, HTML and
//! JSON). The log is verified as `stele audit verify` does it — read-only,
//! against the verifier key — and the report is built from the entries and
//! payloads of that verified state, inside the same read transaction.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use stele_attest::NoteVerifier;
use stele_audit::check::commit_hash;
use stele_audit::leaf::Leaf;
use stele_audit::leaf_view::LeafView;
use stele_audit::verify::{verify_db_then, VerifyFailure, VerifyReport};
use stele_audit::Store;
use stele_verify::account::period::PeriodBuilder;
use stele_verify::account::{self, Account, AccountBuilder, PayloadText, Source, Verification};

use super::audit::LogArgs;
use super::audit_read::NotVerified;
use super::exit;
use crate::terminal_safe;

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Markdown.
    Md,
    /// One self-contained HTML file (opens offline; nothing to load).
    Html,
    /// JSON (docs/json/review-report.schema.json).
    Json,
}

/// Arguments of `stele audit report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Only this session [default: every entry of the log].
    #[arg(long, conflicts_with_all = ["since", "until"])]
    pub session: Option<String>,
    /// The period report: entries from this time on (RFC 3339, or a date
    /// YYYY-MM-DD meaning its first instant, UTC).
    #[arg(long)]
    pub since: Option<String>,
    /// …up to this time, exclusive (a date includes that whole day)
    /// [default: now].
    #[arg(long, requires = "since")]
    pub until: Option<String>,
    /// Silence longer than this many seconds while the log is open is
    /// reported as a logging gap (period report).
    #[arg(long, requires = "since", default_value_t = stele_verify::account::period::DEFAULT_GAP_S)]
    pub gap: u64,
    /// Also write the signed export of the period to this folder or .tar
    /// (as `stele audit export --since … --until …` does; the export is
    /// recorded in the log).
    #[arg(long, requires = "since")]
    pub export: Option<PathBuf>,
    /// The report's form.
    #[arg(long, value_enum, default_value = "md")]
    pub format: ReportFormat,
    /// Write the report to this file (whole or not at all) [default: standard output].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Trusted verifier key (name+hash+base64) [default: the key file's public key].
    #[arg(long)]
    pub vkey: Option<String>,
    /// A checkpoint note kept outside this machine (catches truncation and rollback).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    #[command(flatten)]
    /// The log.
    pub log: LogArgs,
}

/// Run `stele audit report`.
pub fn run(a: ReportArgs) -> anyhow::Result<ExitCode> {
    let (db, key) = (a.log.db(), a.log.key());
    super::state::existing_log(&db)?;
    let verifier = match &a.vkey {
        Some(v) => NoteVerifier::parse(v).map_err(|e| {
            anyhow::anyhow!("--vkey: not a verifier key ({e}); `stele keys show` prints the log's")
        })?,
        None => super::state::signing_key(&key)
            .map_err(|e| NotVerified {
                message: format!(
                    "cannot use the key file ({e}); give the log's verifier key with --vkey"
                ),
                code: exit::UNREADABLE,
            })?
            .verifier(),
    };
    let anchor = match &a.checkpoint {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| NotVerified {
            message: format!("cannot read checkpoint {}: {e}", terminal_safe::path(p)),
            code: exit::UNREADABLE,
        })?),
        None => None,
    };
    let window = match &a.since {
        Some(since) => Some(super::audit_period::window(
            since,
            a.until.as_deref(),
            a.gap,
        )?),
        None => None,
    };
    let started = std::time::Instant::now();
    let (report, built) = verify_db_then(&db, &verifier, anchor.as_deref(), |store, r| {
        let sel = match &window {
            Some(w) => Select::Period(w),
            None => Select::Entries(a.session.as_deref()),
        };
        build(store, r, sel, &db, a.checkpoint.is_some())
    })
    .map_err(|f| {
        let code = match f {
            VerifyFailure::Tampered { .. } => exit::INTEGRITY,
            VerifyFailure::Unreadable(_) => exit::UNREADABLE,
        };
        NotVerified {
            message: format!(
                "{} does not verify, so no report is made: {f}",
                terminal_safe::path(&db)
            ),
            code,
        }
    })?;
    let account = built?;
    let text = match a.format {
        ReportFormat::Md => account::markdown::render(&account),
        ReportFormat::Html => account::html::render(&account),
        ReportFormat::Json => serde_json::to_string_pretty(&account)? + "\n",
    };
    match &a.out {
        Some(path) => write_whole(path, text.as_bytes())?,
        None => print(a.format, &text),
    }
    crate::errln!(
        "stele: report of {} ({} of {} verified entries) in {:.2} s; this read is not recorded \
         in the log (no signing key used)",
        terminal_safe::line(&account.selection),
        account.verification.selected,
        report.entries,
        started.elapsed().as_secs_f64()
    );
    if let Some(p) = &a.out {
        crate::errln!("stele: report written to {}", terminal_safe::path(p));
    }
    if let (Some(out), Some(p)) = (&a.export, &account.period) {
        let args = super::audit::ExportArgs {
            session: None,
            since: Some(p.since.clone()),
            until: Some(p.until.clone()),
            no_payloads: false,
            policies: Vec::new(),
            export_key: None,
            allow_open_session: false,
            user: None,
            out: out.clone(),
            json: false,
            log: a.log.clone(),
        };
        return super::audit_export::export(&db, &key, args);
    }
    Ok(ExitCode::SUCCESS)
}

/// What the report covers.
enum Select<'a> {
    /// The entries of one session, or all.
    Entries(Option<&'a str>),
    /// A time window (the period report).
    Period(&'a stele_verify::account::period::Window),
}

/// The account of the verified entries `0..r.entries` the selection takes
/// (the rule an export's selection uses: the session's entries, or all),
/// with payload texts from the payload table of the same state.
fn build(
    store: &Store,
    r: &VerifyReport,
    sel: Select<'_>,
    db: &Path,
    anchored: bool,
) -> anyhow::Result<Account> {
    let (session, mut period) = match &sel {
        Select::Entries(s) => (*s, None),
        Select::Period(w) => (None, Some(PeriodBuilder::new((*w).clone()))),
    };
    let mut b = AccountBuilder::default();
    let mut selected = 0u64;
    store.for_each_entry(0, r.entries, |seq, bytes, _| {
        if let Some(p) = period.as_mut() {
            let leaf: Leaf =
                serde_json::from_slice(bytes).map_err(|e| stele_audit::AuditError::Integrity {
                    index: seq,
                    reason: format!("verified entry does not parse: {e}"),
                })?;
            if p.add(&leaf) {
                selected += 1;
                b.add(&leaf);
            }
            return Ok(());
        }
        let wanted = match (session, LeafView::scan(bytes)) {
            (None, _) => true,
            (Some(id), Some(v)) => v.session.is_some_and(|s| s.id == id),
            // An unusual spelling: the typed parse decides.
            (Some(_), None) => true,
        };
        if !wanted {
            return Ok(());
        }
        let leaf: Leaf =
            serde_json::from_slice(bytes).map_err(|e| stele_audit::AuditError::Integrity {
                index: seq,
                reason: format!("verified entry does not parse: {e}"),
            })?;
        if session.is_some_and(|id| leaf.session.as_ref().is_none_or(|s| s.id != id)) {
            return Ok(());
        }
        selected += 1;
        b.add(&leaf);
        Ok(())
    })?;
    if let Some(id) = session {
        if selected == 0 {
            anyhow::bail!(
                "no session {} in {} ({} entries verified); `stele session list` shows the sessions",
                terminal_safe::line(id),
                terminal_safe::path(db),
                r.entries
            );
        }
    }
    let text = |commit: &str| -> PayloadText {
        let Some(c) = commit_hash(commit) else {
            return PayloadText::None;
        };
        // Verified with the entries (their bodies against the commitments).
        match store.payload(&c) {
            Ok(Some(p)) => match p.body {
                Some(body) => PayloadText::Present(String::from_utf8_lossy(&body).into_owned()),
                None => PayloadText::Redacted,
            },
            Ok(None) | Err(_) => PayloadText::Withheld,
        }
    };
    let (sessions, redactions, retention) = b.finish(text);
    let period = match (period, &sel) {
        (Some(p), Select::Period(w)) => {
            let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
            let mut p = p.finish(&sessions, now);
            super::audit_period::add_stored(&mut p, store, w, r.entries)?;
            Some(p)
        }
        _ => None,
    };
    let mut unchecked = vec![
        "no witness cosignatures checked (`stele audit publish` sends checkpoints to witnesses; \
         `stele-verify --witness` checks them on an export)"
            .to_string(),
    ];
    if !anchored {
        unchecked.push(
            "no checkpoint held elsewhere given (--checkpoint): a log truncated or rolled back \
             on this machine would not be caught"
                .to_string(),
        );
    }
    Ok(Account {
        schema: account::SCHEMA,
        origin: r.origin.clone(),
        selection: match (&period, session) {
            (Some(p), _) => format!("period {} .. {}", p.since, p.until),
            (None, Some(id)) => format!("session {id}"),
            (None, None) => "all entries".into(),
        },
        verification: Verification {
            result: "verified",
            entries: r.entries,
            selected,
            root: r.root.clone(),
            // Every stored checkpoint verified; the newest covers every entry.
            checkpoints: vec![r.entries],
            witnesses: Vec::new(),
            payloads_verified: r.payloads_present,
            payloads_redacted: r.payloads_redacted,
            payloads_withheld: 0,
            proofs: 0,
            derived_files_match: false,
            unchecked,
            source: Source::LiveLog,
            exporter: None,
            log_file: Some(db.display().to_string()),
        },
        sessions,
        redactions,
        retention,
        period,
    })
}

/// The report on standard output: byte for byte into a pipe or a file;
/// on a terminal, the characters a terminal would act on escaped (the log's
/// text could hold any).
fn print(format: ReportFormat, text: &str) {
    use std::io::IsTerminal as _;
    if !std::io::stdout().is_terminal() {
        crate::out!("{text}");
        return;
    }
    match format {
        ReportFormat::Json => crate::out!("{}", terminal_safe::json_text(text)),
        ReportFormat::Md | ReportFormat::Html => crate::out!("{}", terminal_safe::block(text)),
    }
}

/// Write `bytes` to `path` whole: a private temporary file beside it,
/// synced, then renamed over it (the report holds payload texts).
fn write_whole(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    let tmp = path.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let r = (|| -> std::io::Result<()> {
        let mut f = stele_attest::private_fs::create_file(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r.with_context(|| format!("writing {}", terminal_safe::path(path)))
}
