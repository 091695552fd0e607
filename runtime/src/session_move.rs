//! Sessions that move between machines: `stele session export` writes an
//! unfinished session as a verifiable session bundle and records in the
//! source log that the session left (a `session.end` whose outcome is
//! `interrupted` and whose `data.moved` says where to); `stele session
//! import` ([`crate::session_move_import`]) verifies such a bundle with a
//! trusted key and starts the session again in another log, linked to the
//! bundle. See docs/runtime.md ("Moving a session") and
//! docs/export-format.md §8a.
//!
//! Both are library calls: a front end that already holds the log (the
//! server resuming a dead worker's session) calls them with the log open.

use std::path::{Path, PathBuf};

use stele_audit::event::Actor;
use stele_audit::export::earlier::{is_moved_end, MOVED_MEMBER};
use stele_audit::export::layout::Selection;
use stele_audit::export::write::{export, ExportOptions, ExportReport, PolicyInput};
use stele_audit::{AuditLog, Event, EventKind, Outcome, Status};

use crate::conversation;

/// The role of the `session.start` payload that carries an imported
/// session's conversation so far (JSON: a list of messages).
pub const CONVERSATION_ROLE: &str = "conversation";

/// Why a session cannot move.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    /// Reading or writing the log failed.
    #[error(transparent)]
    Audit(#[from] stele_audit::AuditError),
    /// The export failed (nothing was written under the output name).
    #[error(transparent)]
    Export(#[from] stele_audit::export::ExportError),
    /// The session is not in the log.
    #[error("session {0} is not in this audit log")]
    UnknownSession(String),
    /// The session ended here: only an unfinished session moves.
    #[error("session {id} has ended ({how}); only an unfinished session can move")]
    Ended {
        /// The session.
        id: String,
        /// How it ended.
        how: String,
    },
    /// The output exists.
    #[error("{0} already exists: give another --out")]
    Exists(PathBuf),
    /// The bundle to import was refused.
    #[error("{0}")]
    Refused(String),
}

/// What [`export_session`] did.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The export.
    pub report: ExportReport,
    /// The `session.end` that recorded the move (`None`: it had moved
    /// already, this is a second copy of the same bundle's session).
    pub end_entry: Option<u64>,
    /// The policy bundle folder included, if it could be read.
    pub policy: Option<PathBuf>,
}

/// The message for a session that moved away from this log.
pub fn moved_message(id: &str) -> String {
    format!(
        "session {id} moved to another machine (`stele session export`): it continues where it was imported (`stele session import`), not here"
    )
}

/// Export the unfinished session `id` of `log` as a session bundle (a
/// `.tar` file at `out`), after recording that it moved: a `session.end`
/// by `by` with outcome `interrupted` and `data.moved`. The session is not
/// resumable here afterwards. A session that moved already is exported
/// again as it is (for a copy lost on the way). Open intents must have been
/// closed (the log opened through recovery); the bundle's manifest is
/// signed with `signer`.
pub fn export_session(
    log: &AuditLog,
    signer: &dyn stele_attest::Signer,
    id: &str,
    out: &Path,
    by: Actor,
) -> Result<Exported, MoveError> {
    if out.exists() {
        return Err(MoveError::Exists(out.to_path_buf()));
    }
    let store = log.store()?;
    let leaves = conversation::session_leaves(&store, id)?;
    if leaves.is_empty() {
        return Err(MoveError::UnknownSession(id.to_string()));
    }
    let end = leaves.iter().find(|l| {
        matches!(
            l.kind,
            EventKind::SessionEnd | EventKind::SessionInterrupted
        )
    });
    let end_entry = match end {
        Some(e) if is_moved_end(e) => None,
        Some(e) => {
            return Err(MoveError::Ended {
                id: id.to_string(),
                how: e
                    .outcome
                    .as_ref()
                    .map(|o| format!("{:?}", o.status).to_lowercase())
                    .unwrap_or_else(|| e.kind.to_string()),
            })
        }
        None => {
            let mut o = Outcome::status(Status::Interrupted);
            o.detail = Some("moved: exported to continue in another log".into());
            let r = log.append_blocking(
                Event::new(EventKind::SessionEnd, by.clone())
                    .in_session(id)
                    .with_outcome(o)
                    .with_data(serde_json::json!({
                        MOVED_MEMBER: {"out": out.display().to_string()},
                    })),
            )?;
            Some(r.seq)
        }
    };
    let policy = policy_in_force(&leaves);
    let policies = policy
        .as_ref()
        .and_then(|dir| {
            stele_policy::Bundle::load(dir)
                .ok()
                .map(|b| (dir.clone(), b.digest().to_string()))
        })
        .map(|(dir, digest)| PolicyInput {
            dir,
            bundle_digest: Some(digest),
        });
    let included = policies.as_ref().map(|p| p.dir.clone());
    let opts = ExportOptions {
        selection: Selection::Session { id: id.to_string() },
        payloads: true,
        policies: policies.into_iter().collect(),
        exporter: by,
        allow_open_session: false,
        tar: true,
    };
    let report = export(log, signer, &opts, out)?;
    Ok(Exported {
        report,
        end_entry,
        policy: included,
    })
}

/// The policy bundle folder the session last ran with: the newest
/// `policy.load` of a resumption, else its `session.start`.
fn policy_in_force(leaves: &[stele_audit::leaf::Leaf]) -> Option<PathBuf> {
    leaves
        .iter()
        .rev()
        .filter(|l| matches!(l.kind, EventKind::PolicyLoad | EventKind::SessionStart))
        .find_map(|l| {
            l.data
                .as_ref()?
                .get("policy_root")?
                .as_str()
                .map(PathBuf::from)
        })
}
