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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::sync::Arc;

    use stele_attest::{Ed25519Signer, Signer as _};
    use stele_audit::LogOptions;

    use super::*;
    use crate::session_move_import::{import_session, ImportRequest};

    fn log(dir: &Path, seed: u8, origin: &str) -> (AuditLog, Arc<Ed25519Signer>) {
        let key = Arc::new(Ed25519Signer::from_seed(origin, &[seed; 32]).unwrap());
        let l = AuditLog::create(
            &dir.join("audit.db"),
            key.clone(),
            LogOptions {
                heartbeat: None,
                ..LogOptions::default()
            },
        )
        .unwrap();
        (l, key)
    }

    fn start(l: &AuditLog, id: &str, ws: &Path) {
        l.append_blocking(
            Event::new(EventKind::SessionStart, Actor::system())
                .in_session(id)
                .with_data(serde_json::json!({"workspace": ws.display().to_string()}))
                .with_payload(stele_audit::PayloadInput {
                    role: "task".into(),
                    media: "text/plain".into(),
                    body: b"Sum the receipts".to_vec(),
                    disclosure: stele_audit::Disclosure::CommitmentOnly,
                }),
        )
        .unwrap();
    }

    #[test]
    fn only_an_unfinished_session_moves_and_it_moves_once() {
        let d = tempfile::tempdir().unwrap();
        let (l, key) = log(d.path(), 7, "a.test.invalid/log");
        let e = export_session(
            &l,
            key.as_ref(),
            "nope",
            &d.path().join("x.tar"),
            Actor::system(),
        )
        .unwrap_err();
        assert!(matches!(e, MoveError::UnknownSession(_)), "{e}");
        start(&l, "done", d.path());
        l.append_blocking(
            Event::new(EventKind::SessionEnd, Actor::system())
                .in_session("done")
                .with_outcome(Outcome::status(Status::Ok)),
        )
        .unwrap();
        let e = export_session(
            &l,
            key.as_ref(),
            "done",
            &d.path().join("x.tar"),
            Actor::system(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("has ended (ok)"), "{e}");
        assert!(!d.path().join("x.tar").exists());

        start(&l, "open", d.path());
        let out = d.path().join("open.tar");
        let x = export_session(&l, key.as_ref(), "open", &out, Actor::system()).unwrap();
        let end = x.end_entry.unwrap();
        let leaves = conversation::session_leaves(&l.store().unwrap(), "open").unwrap();
        let last = leaves.last().unwrap();
        assert_eq!(last.seq, end);
        assert!(is_moved_end(last));
        assert_eq!(last.outcome.as_ref().unwrap().status, Status::Interrupted);
        // Exported again as it is: no second end.
        let again = export_session(
            &l,
            key.as_ref(),
            "open",
            &d.path().join("again.tar"),
            Actor::system(),
        )
        .unwrap();
        assert_eq!(again.end_entry, None);
        let e = export_session(&l, key.as_ref(), "open", &out, Actor::system()).unwrap_err();
        assert!(matches!(e, MoveError::Exists(_)), "{e}");

        // Imported into another log: refused without a trusted key or with
        // the wrong one, then accepted once, carrying the task.
        let bd = d.path().join("b");
        std::fs::create_dir_all(&bd).unwrap();
        let (b, bkey) = log(&bd, 8, "b.test.invalid/log");
        let policy = d.path().join("no-policy");
        let req = |trusted: &[stele_attest::NoteVerifier]| {
            import_session(
                &b,
                &bd.join("audit.db"),
                &ImportRequest {
                    file: &out,
                    trusted,
                    workspace: Some(d.path().to_path_buf()),
                    policy: Some(policy.clone()),
                    departure: crate::session_move_import::Departure::Moved,
                },
            )
        };
        let e = req(&[]).unwrap_err();
        assert!(e.to_string().contains("no trusted key"), "{e}");
        let e = req(&[bkey.verifier()]).unwrap_err();
        assert!(
            e.to_string()
                .contains("does not verify with the trusted key b.test.invalid/log+"),
            "{e}"
        );
        // A trusted key, but no policy bundle at the path given: nothing written.
        let size = b.store().unwrap().size().unwrap();
        let e = req(&[key.verifier()]).unwrap_err();
        assert!(e.to_string().contains("policy bundle"), "{e}");
        assert_eq!(b.store().unwrap().size().unwrap(), size);
    }
}
