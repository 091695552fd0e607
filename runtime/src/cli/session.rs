//! `stele session list|show|resume|export|import`: sessions as the log
//! records them, and sessions that move between machines.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use stele_audit::leaf::Leaf;
use stele_audit::{EventKind, Status};
use stele_policy::Bundle;

use super::backend::{BackendChoice, BackendSpec};
use super::run::{drive, exit_code, finish};
use super::setup::{self, NetworkChoice};
use crate::agent::progress::ProgressStyle;
use crate::agent::{Budget, RunEnd};
use crate::conversation;
use crate::gate::approval::approver_for;
use crate::gate::{ApproveMode, SessionInfo};
use crate::paths;
use crate::terminal_safe;

/// Arguments of `stele session`.
#[derive(Debug, clap::Args)]
pub struct SessionArgs {
    /// Audit database [default: $STATE/audit.db].
    #[arg(long, global = true)]
    pub db: Option<PathBuf>,
    /// Signing key [default: $STATE/keys/log.key].
    #[arg(long, global = true)]
    pub key: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: SessionCommand,
}

/// `stele session` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SessionCommand {
    /// List sessions: who, when, state (recorded as an audit read).
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Read without recording, with the log's verifier key (see `stele audit show --vkey`).
        #[arg(long)]
        vkey: Option<String>,
    },
    /// Show one session's entries (recorded as an audit read).
    Show {
        /// Session id.
        id: String,
        /// Read without recording, with the log's verifier key (see `stele audit show --vkey`).
        #[arg(long)]
        vkey: Option<String>,
        /// One JSON leaf per line (the log's own format, docs/audit-format.md).
        #[arg(long)]
        json: bool,
    },
    /// Continue an unfinished session (crashed, killed, or paused by a provider outage).
    Resume {
        /// Session id.
        id: String,
        /// Use another model than the one the session started with.
        #[arg(long)]
        model: Option<String>,
        /// Use this policy bundle instead of the one the session started with.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// What to do when policy asks a human [default: `approve` in the
        /// config, else prompt on a terminal and refuse without one].
        #[arg(long, value_enum)]
        approve: Option<ApproveMode>,
        /// Most model turns for this run.
        #[arg(long, default_value_t = 40)]
        max_steps: u32,
        /// Progress as JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Move an unfinished session to another machine: record here that it
    /// left (no longer resumable here) and write it as a verifiable session
    /// bundle with its payloads and policy bundle.
    Export {
        /// Session id.
        id: String,
        /// The bundle file to write (a .tar; must not exist).
        #[arg(long)]
        out: PathBuf,
        /// Who moves it [default: $USER].
        #[arg(long)]
        user: Option<String>,
    },
    /// Continue here a session another machine exported: verify the file
    /// with the source log's key, then start the session again in this log
    /// (resume it with `stele session resume ID`).
    Import {
        /// The file `stele session export` wrote.
        file: PathBuf,
        /// The source log's verifier key (text or a file holding it; from
        /// `stele keys show` there). Repeat to trust several logs.
        #[arg(long = "vkey")]
        vkeys: Vec<String>,
        /// Where the session's workspace is on this machine [default: where
        /// it was on the source]. Its files do not travel in the bundle.
        #[arg(long)]
        workspace: Option<PathBuf>,
        /// Continue under this policy bundle [default: the copy in the file].
        #[arg(long)]
        policy: Option<PathBuf>,
    },
}

/// Run `stele session`.
pub fn run(args: SessionArgs) -> anyhow::Result<ExitCode> {
    let db = args.db.clone().unwrap_or_else(paths::default_db);
    let key = args.key.clone().unwrap_or_else(paths::default_key);
    match args.command {
        SessionCommand::List { json, vkey } => list(&db, &key, vkey.as_deref(), json),
        SessionCommand::Show { id, vkey, json } => show(&db, &key, vkey.as_deref(), &id, json),
        SessionCommand::Resume {
            id,
            model,
            policy,
            approve,
            max_steps,
            json,
        } => resume(&db, &key, &id, model, policy, approve, max_steps, json),
        SessionCommand::Export { id, out, user } => {
            super::session_export::export(&db, &key, &id, &out, user)
        }
        SessionCommand::Import {
            file,
            vkeys,
            workspace,
            policy,
        } => super::session_import::import(&db, &key, &file, &vkeys, workspace, policy),
    }
}

fn all_leaves(store: &stele_audit::Store, size: u64) -> anyhow::Result<Vec<Leaf>> {
    let mut v = Vec::new();
    store.for_each_entry(0, size, |_, b, _| {
        v.push(Leaf::parse_canonical(b)?);
        Ok(())
    })?;
    Ok(v)
}

fn list(
    db: &std::path::Path,
    key: &std::path::Path,
    vkey: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let reader = super::audit_read::open(
        db,
        key,
        vkey,
        None,
        serde_json::json!({"command": "session list"}),
    )?;
    let leaves = reader.with_store(all_leaves)?;
    reader.close()?;
    // One pass: sessions in the order they started, each with its entry
    // count, its end (if any) and its last entry.
    let mut order: Vec<&str> = Vec::new();
    let mut seen: std::collections::HashMap<&str, SessionSummary<'_>> =
        std::collections::HashMap::new();
    for l in &leaves {
        let Some(id) = l.session.as_ref().map(|s| s.id.as_str()) else {
            continue;
        };
        let e = seen.entry(id).or_insert_with(|| {
            order.push(id);
            SessionSummary::default()
        });
        e.entries += 1;
        if l.kind == EventKind::SessionStart && e.start.is_none() {
            e.start = Some(l);
        }
        if matches!(
            l.kind,
            EventKind::SessionEnd | EventKind::SessionInterrupted
        ) {
            e.end = Some(l);
        }
        e.last = Some(l);
    }
    for id in order {
        let Some(sum) = seen.get(id) else { continue };
        let Some(start) = sum.start else { continue };
        let state = sum.state();
        if json {
            super::json::line(&super::json::SessionSummary {
                id: id.to_string(),
                principal: start.actor.principal.clone(),
                started: start.ts.clone(),
                entries: sum.entries,
                state,
            })?;
        } else {
            // Every field from the log on one line, escaped: none can
            // drive the terminal or forge another line.
            crate::outln!(
                "{}  {}  {:<10} {:>5} entries  {}",
                terminal_safe::line(id),
                terminal_safe::line(&start.ts),
                terminal_safe::line(&start.actor.principal),
                sum.entries,
                terminal_safe::line(&state)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `session list` shows of one session.
#[derive(Default)]
struct SessionSummary<'a> {
    start: Option<&'a Leaf>,
    end: Option<&'a Leaf>,
    last: Option<&'a Leaf>,
    entries: u64,
}

impl SessionSummary<'_> {
    /// Ended (with its status), paused by a provider failure (its last
    /// entry is a failed model response: `stele run` exits 75 there and
    /// keeps the session), or open: running, or stopped by a crash or a
    /// kill. The last two are resumable.
    fn state(&self) -> String {
        if self
            .end
            .is_some_and(stele_audit::export::earlier::is_moved_end)
        {
            return "moved (exported to another machine; not resumable here)".into();
        }
        if let Some(o) = self.end.and_then(|e| e.outcome.as_ref()) {
            return format!("{:?}", o.status).to_lowercase();
        }
        match self.last {
            Some(l)
                if l.kind == EventKind::ModelResponse
                    && l.outcome.as_ref().is_some_and(|o| o.status != Status::Ok) =>
            {
                let why = l
                    .outcome
                    .as_ref()
                    .and_then(|o| o.detail.as_deref())
                    .unwrap_or("provider failure");
                format!(
                    "paused: {} (resumable)",
                    why.chars().take(80).collect::<String>()
                )
            }
            _ => "open: running, or stopped by a crash (resumable)".into(),
        }
    }
}

fn show(
    db: &std::path::Path,
    key: &std::path::Path,
    vkey: Option<&str>,
    id: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let reader = super::audit_read::open(
        db,
        key,
        vkey,
        None,
        serde_json::json!({"command": "session show", "session": id}),
    )?;
    // Only what was verified (a read-only reader) or what the log held.
    let leaves: Vec<Leaf> = reader.with_store(|store, size| {
        Ok(conversation::session_leaves(store, id)?
            .into_iter()
            .filter(|l| l.seq < size)
            .collect())
    })?;
    reader.close()?;
    anyhow::ensure!(
        !leaves.is_empty(),
        "session {id} is not in {}",
        terminal_safe::path(db)
    );
    if json {
        for l in &leaves {
            // The leaf in its canonical form, as the log stores it.
            crate::outln!(
                "{}",
                terminal_safe::json_text(&String::from_utf8_lossy(&l.encode()?))
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    crate::outln!("session {}", terminal_safe::line(id));
    for l in &leaves {
        crate::outln!(
            "{}",
            super::entry_line::line(l, super::entry_line::SessionColumn::Implied)
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
fn resume(
    db: &std::path::Path,
    key: &std::path::Path,
    id: &str,
    model: Option<String>,
    policy: Option<PathBuf>,
    approve: Option<ApproveMode>,
    max_steps: u32,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let signer = super::state::signing_key(key)?;
    // Read (read-only) where the session worked, and check that folder
    // before anything is written to the log or run.
    let start = {
        let store = stele_audit::Store::open(db)?;
        let leaves = conversation::session_leaves(&store, id)?;
        anyhow::ensure!(
            !leaves
                .iter()
                .any(stele_audit::export::earlier::is_moved_end),
            "{}",
            crate::session_move::moved_message(id)
        );
        leaves
            .into_iter()
            .find(|l| l.kind == EventKind::SessionStart)
            .with_context(|| format!("session {id} has no session.start"))?
    };
    let data = start.data.clone().unwrap_or_default();
    let field = |k: &str| data.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let workspace = PathBuf::from(field("workspace").context("session.start names no workspace")?);
    let policy = policy
        .or_else(|| field("policy_root").map(PathBuf::from))
        .context("session.start names no policy bundle")?;
    let principal = start.actor.principal.clone();
    crate::principal::validate(
        "the session's principal (its session.start entry)",
        &principal,
    )?;
    crate::isolation::check_session(&crate::isolation::SessionPaths {
        workspace: &workspace,
        db,
        key,
        policy: &policy,
    })?;
    let log = setup::open_log(db, signer.clone())?;
    let crate::session::Conversation { messages, large } = {
        let store = log.store()?;
        let leaves = conversation::session_leaves(&store, id)?;
        // An ended session is refused, whatever its conversation holds.
        if leaves.iter().any(|l| {
            matches!(
                l.kind,
                EventKind::SessionEnd | EventKind::SessionInterrupted
            )
        }) {
            return Err(conversation::ConversationError::Ended(id.to_string()).into());
        }
        crate::session_resume::conversation_of(
            &store,
            id,
            &leaves,
            crate::conversation::Stopped::InThisLog,
        )?
    };
    let spec = model
        .or_else(|| field("model_spec"))
        .context("no model: give --model PROVIDER:NAME")?;
    let network = match field("network").as_deref() {
        Some("proxy") => NetworkChoice::Proxy,
        _ => NetworkChoice::None,
    };
    // The backend the session ran in (not what it asked for: a session that
    // fell back to the process sandbox resumes there).
    let recorded = field("sandbox_backend");
    let requested = match recorded.as_deref() {
        None => BackendChoice::Process,
        Some(name) => BackendChoice::from_recorded(name)
            .with_context(|| format!("session.start names an unknown sandbox backend {name:?}"))?,
    };
    let layers = crate::config::load()?;
    // As for `stele run`: unset by flag and config, ask on a terminal, else
    // refuse ("no-terminal"); a managed `approve` cannot be overridden.
    let approve = layers
        .pick("approve", approve, |c| c.approve)?
        .unwrap_or(ApproveMode::Prompt);
    let backend = BackendSpec {
        requested,
        fallback: layers
            .pick("vm_fallback", None, |c| c.vm_fallback)?
            .unwrap_or_default(),
        vm_boot_timeout: layers
            .pick("vm_boot_timeout_secs", None, |c| c.vm_boot_timeout_secs)?
            .map(Duration::from_secs),
        workspace_quota: super::backend::workspace_quota(&layers, None)?,
        resources: super::resources::resource_limits(&layers, &[])?,
        root: super::backend::sandbox_root(&layers)?,
    };
    let bundle = Arc::new(
        Bundle::load(&policy)
            .with_context(|| format!("policy bundle {}", terminal_safe::path(&policy)))?,
    );
    let teams: Vec<String> = bundle
        .members()
        .teams_of(&principal)
        .map(str::to_string)
        .collect();
    let model = super::run::model_for(&layers, &spec)?;
    let session = setup::resume(
        setup::OpenedLog {
            log,
            db: db.to_path_buf(),
            key: key.to_path_buf(),
            signer,
        },
        setup::LogOwner::Session,
        bundle,
        SessionInfo {
            id: id.to_string(),
            principal: principal.clone(),
            teams,
        },
        workspace,
        network,
        backend,
        approver_for(approve, &principal),
    )?;
    let style = if json {
        ProgressStyle::Json
    } else {
        ProgressStyle::Human
    };
    if style == ProgressStyle::Human {
        crate::errln!(
            "stele: resuming session {} from the log ({} messages)",
            terminal_safe::line(id),
            messages.len()
        );
    } else {
        super::run::announce(&session.gate, &session.db, style)?;
    }
    let budget = Budget {
        max_steps,
        max_tokens: 2_000_000,
        max_time: Duration::from_secs(3600),
    };
    let end = match drive(&session, &model, messages, large, budget, style) {
        Ok(e) => e,
        Err(e) => {
            session.release_sandbox();
            let _ = session
                .gate
                .end_session(Status::Error, Some(format!("{e:#}")));
            return Err(e);
        }
    };
    session.release_sandbox();
    finish(&session.gate, &end, &model, style)?;
    if !matches!(end, RunEnd::Paused(_)) {
        session.attest()?;
    }
    session.close()?;
    Ok(exit_code(&end))
}
