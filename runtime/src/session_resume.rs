//! Resuming an unfinished session as a library call, for a front end that
//! already holds the log (the server, at restart or on request): what the
//! session's `session.start` recorded ([`recorded`]), then the session
//! reopened on that log with its conversation rebuilt from the log
//! ([`reopen`]). Open intents were closed as interrupted when the log was
//! opened ([`crate::recovery`]); the rebuilt conversation tells the model
//! so, and nothing is re-run.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use stele_audit::leaf::Leaf;
use stele_audit::{AuditLog, EventKind};
use stele_policy::Bundle;

use crate::cli::backend::{BackendChoice, BackendSpec};
use crate::cli::setup::{self, LogOwner, NetworkChoice, OpenSession, OpenedLog};
use crate::conversation;
use crate::gate::approval::Approver;
use crate::gate::SessionInfo;
use crate::provider::Message;
use crate::session::Conversation;

/// What a session's `session.start` says about how it ran.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Its id.
    pub id: String,
    /// Who it runs for.
    pub principal: String,
    /// Its workspace folder.
    pub workspace: PathBuf,
    /// The policy bundle it started with.
    pub policy: PathBuf,
    /// The model as PROVIDER:NAME, if recorded.
    pub model_spec: Option<String>,
    /// Its network.
    pub network: NetworkChoice,
    /// The sandbox backend it ran in.
    pub backend: BackendChoice,
    /// How its asks were answered (`web`, `deny`, …), if recorded.
    pub approve: Option<String>,
    /// Whether it ended (`session.end` or `session.interrupted`): not resumable.
    pub ended: bool,
    /// Whether it ended by moving to another log (`stele session export`).
    pub moved: bool,
}

/// Read what session `id` recorded at its start, from `log`.
pub fn recorded(log: &AuditLog, id: &str) -> anyhow::Result<Recorded> {
    let store = log.store()?;
    let leaves = conversation::session_leaves(&store, id)?;
    let start = leaves
        .iter()
        .find(|l| l.kind == EventKind::SessionStart)
        .with_context(|| format!("session {id} has no session.start in the log"))?;
    let data = start.data.clone().unwrap_or_default();
    let field = |k: &str| data.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let backend = match field("sandbox_backend").as_deref() {
        None => BackendChoice::Process,
        Some(name) => BackendChoice::from_recorded(name)
            .with_context(|| format!("session.start names an unknown sandbox backend {name:?}"))?,
    };
    Ok(Recorded {
        id: id.to_string(),
        principal: start.actor.principal.clone(),
        workspace: PathBuf::from(field("workspace").context("session.start names no workspace")?),
        policy: PathBuf::from(
            field("policy_root").context("session.start names no policy bundle")?,
        ),
        model_spec: field("model_spec"),
        network: match field("network").as_deref() {
            Some("proxy") => NetworkChoice::Proxy,
            _ => NetworkChoice::None,
        },
        backend,
        approve: field("approve"),
        ended: leaves.iter().any(|l| {
            matches!(
                l.kind,
                EventKind::SessionEnd | EventKind::SessionInterrupted
            )
        }),
        moved: leaves
            .iter()
            .any(stele_audit::export::earlier::is_moved_end),
    })
}

/// A reopened session and where its run continues from.
pub struct Reopened {
    /// The session, open on the caller's log (a `policy.load` entry with
    /// `resumed: true` marks where it continues).
    pub session: OpenSession,
    /// The conversation rebuilt from the log.
    pub from: Conversation,
}

/// Where the log is and what signs it.
#[derive(Clone)]
pub struct LogAt {
    /// The log.
    pub log: Arc<AuditLog>,
    /// Its database.
    pub db: PathBuf,
    /// Its signing key file.
    pub key: PathBuf,
    /// Its signing key.
    pub signer: Arc<dyn stele_attest::Signer>,
}

/// Reopen the unfinished session `rec` on `at` (kept open by the caller),
/// in the backend it ran in, answering its asks with `approver`. Refused,
/// with nothing written, when it ended, when its folders fail the isolation
/// check, or when its conversation cannot be rebuilt.
pub fn reopen(
    at: &LogAt,
    rec: &Recorded,
    backend: BackendSpec,
    approver: Box<dyn Approver>,
) -> anyhow::Result<Reopened> {
    anyhow::ensure!(
        !rec.moved,
        "{}",
        crate::session_move::moved_message(&rec.id)
    );
    anyhow::ensure!(!rec.ended, "session {} has ended; start a new one", rec.id);
    crate::principal::validate(
        "the session's principal (its session.start entry)",
        &rec.principal,
    )?;
    crate::isolation::check_session(&crate::isolation::SessionPaths {
        workspace: &rec.workspace,
        db: &at.db,
        key: &at.key,
        policy: &rec.policy,
    })?;
    let from = rebuilt(&at.log, &rec.id)?;
    let bundle = Arc::new(
        Bundle::load(&rec.policy)
            .with_context(|| format!("policy bundle {}", rec.policy.display()))?,
    );
    let teams: Vec<String> = bundle
        .members()
        .teams_of(&rec.principal)
        .map(str::to_string)
        .collect();
    let session = setup::resume(
        OpenedLog {
            log: at.log.clone(),
            db: at.db.clone(),
            key: at.key.clone(),
            signer: at.signer.clone(),
        },
        LogOwner::Caller,
        bundle,
        SessionInfo {
            id: rec.id.clone(),
            principal: rec.principal.clone(),
            teams,
        },
        rec.workspace.clone(),
        rec.network,
        BackendSpec {
            requested: rec.backend,
            ..backend
        },
        approver,
    )?;
    Ok(Reopened { session, from })
}

/// The conversation to continue session `id` with, from `log`
/// ([`conversation_of`]).
pub fn rebuilt(log: &AuditLog, id: &str) -> anyhow::Result<Conversation> {
    let store = log.store()?;
    let leaves = conversation::session_leaves(&store, id)?;
    conversation_of(&store, id, &leaves, conversation::Stopped::InThisLog)
}

/// The conversation to continue with: rebuilt from the last model request;
/// or, for a session that has not asked the model since it started here,
/// the conversation an imported session's `session.start` carries
/// (`conversation` payload, [`crate::session_move`]); or its task.
/// `leaves` are the session's entries, `bodies` holds their payloads.
pub fn conversation_of(
    bodies: &dyn conversation::Bodies,
    id: &str,
    leaves: &[Leaf],
    stopped: conversation::Stopped,
) -> anyhow::Result<Conversation> {
    if !leaves.iter().any(|l| l.kind == EventKind::ModelRequest) {
        if let Some(messages) = carried(bodies, leaves)? {
            return Ok(Conversation {
                messages,
                large: Default::default(),
            });
        }
        return Ok(Conversation {
            messages: vec![Message::user_text(task_of(bodies, leaves)?)],
            large: Default::default(),
        });
    }
    let conversation::Rebuilt { messages, large } =
        conversation::rebuild_session(bodies, id, leaves, stopped)?;
    Ok(Conversation { messages, large })
}

/// The payload of `role` that `session.start` keeps, if it keeps one.
fn start_payload(
    bodies: &dyn conversation::Bodies,
    leaves: &[Leaf],
    role: &str,
) -> anyhow::Result<Option<Vec<u8>>> {
    let start = leaves
        .iter()
        .find(|l| l.kind == EventKind::SessionStart)
        .context("no session.start")?;
    let Some(p) = start.payload.iter().find(|p| p.role == role) else {
        return Ok(None);
    };
    let commit = stele_audit::payload::parse_commit(&p.commit)
        .with_context(|| format!("the {role} payload's commitment is malformed"))?;
    let body = bodies
        .body(&commit)?
        .with_context(|| format!("the {role} payload is not available (redacted)"))?;
    Ok(Some(body))
}

/// The conversation an imported session arrived with.
fn carried(
    bodies: &dyn conversation::Bodies,
    leaves: &[Leaf],
) -> anyhow::Result<Option<Vec<Message>>> {
    start_payload(bodies, leaves, crate::session_move::CONVERSATION_ROLE)?
        .map(|b| {
            serde_json::from_slice(&b)
                .context("the conversation session.start carries is not a list of messages")
        })
        .transpose()
}

/// The task `session.start` keeps as its `task` payload.
fn task_of(bodies: &dyn conversation::Bodies, leaves: &[Leaf]) -> anyhow::Result<String> {
    let body = start_payload(bodies, leaves, "task")?
        .context("the session never asked the model and its session.start keeps no task")?;
    String::from_utf8(body).context("the task is not UTF-8")
}
