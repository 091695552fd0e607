//! Session attestations: at session end, an in-toto statement signed (DSSE)
//! with the runtime's log key naming the session's entries, the checkpoint
//! that covers them, the policy bundle, the runtime binary and the sandbox.
//!
//! Stored as `<db>.attestations/<session>.intoto.jsonl` beside the database
//! (written atomically); exports of the session include it.

use std::io::Write;
use std::path::{Path, PathBuf};

use stele_attest::dsse::Envelope;
use stele_attest::intoto::{Statement, Subject};
use stele_attest::{private_fs, Checkpoint, Signer};

use super::layout::{sha256, SESSION_PREDICATE_TYPE};
use super::ExportError;
use crate::event::EventKind;
use crate::leaf::{hash_b64, Leaf};
use crate::log::AuditLog;
use crate::merkle::leaf_hash;

/// What the runtime knows about itself at session end.
#[derive(Debug, Clone)]
pub struct SessionContext {
    /// Policy bundle digest in force (`sha256:<hex>`).
    pub policy_digest: Option<String>,
    /// Runtime version.
    pub runtime_version: String,
    /// Hex SHA-256 of the runtime binary ([`binary_sha256`]).
    pub binary_sha256: String,
    /// The sandbox backend and its settings, as the runtime describes them.
    pub sandbox: serde_json::Value,
}

pub use super::binary_digest::binary_sha256;

/// A file-name-safe stem for a session id.
pub fn file_stem(id: &str) -> String {
    let safe = !id.is_empty()
        && id.len() <= 100
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if safe {
        id.to_string()
    } else {
        format!("sha256-{}", hex::encode(sha256(id.as_bytes())))
    }
}

/// Where the attestation of session `id` of the log at `db` is kept.
pub fn attestation_path(db: &Path, id: &str) -> PathBuf {
    PathBuf::from(format!("{}.attestations", db.display()))
        .join(format!("{}.intoto.jsonl", file_stem(id)))
}

/// Build, sign and store the attestation of session `id`.
pub fn attest_session(
    log: &AuditLog,
    signer: &dyn Signer,
    id: &str,
    ctx: &SessionContext,
) -> Result<Envelope, ExportError> {
    let store = log.store()?;
    // The checkpoint and the session's entries from one state of the log.
    let snapshot = store.snapshot()?;
    let (size, note) = store
        .latest_checkpoint()?
        .ok_or_else(|| ExportError::Invalid("the log has no checkpoint".into()))?;
    // Signed and handed out: what it covers must survive a power failure.
    crate::durability::sync_wal(log.path())?;
    let (cp, _) = Checkpoint::open(&note, &log.verifier())?;
    let (first, last, entries, ended, last_hash) = find_session(&store, id, size)?;
    drop(snapshot);
    let predicate = serde_json::json!({
        "origin": cp.origin,
        "session": id,
        "first": first,
        "last": last,
        "entries": entries,
        "ended": ended,
        "checkpoint": {"size": cp.size, "root": hash_b64(&cp.root)},
        "policy_digest": ctx.policy_digest,
        "runtime": {"version": ctx.runtime_version, "binary_sha256": ctx.binary_sha256},
        "sandbox": ctx.sandbox,
    });
    let subject = vec![Subject::sha256(format!("session:{id}"), &last_hash)];
    let env = Statement::new(subject, SESSION_PREDICATE_TYPE, predicate).sign(signer)?;
    let path = attestation_path(log.path(), id);
    let dir = path.parent().unwrap_or(Path::new("."));
    // Beside the database, as private as it (session ids, digests).
    private_fs::create_dir_all(dir).map_err(|e| ExportError::io(dir, e))?;
    if let Some(old) = private_fs::tighten(dir).map_err(|e| ExportError::io(dir, e))? {
        tracing::warn!(
            "{} was open to others (mode {old:o}): now 0700",
            dir.display()
        );
    }
    let tmp = path.with_extension("partial");
    let mut f = private_fs::create_file(&tmp).map_err(|e| ExportError::io(&tmp, e))?;
    let mut line = env.to_json()?;
    line.push('\n');
    f.write_all(line.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| ExportError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| ExportError::io(&path, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ExportError::io(dir, e))?;
    Ok(env)
}

/// `(first, last, entries, ended, last leaf hash)` of session `id` in the
/// log's first `size` entries. The derived `sessions` table says where the
/// session starts and ends (a scan of the whole log cost a second per
/// million entries at every session's end); what it says is checked
/// against the leaves it names — the last leaf is the session's with that
/// count and that hash, the first its `session.start` — and a log written
/// before the table kept those indices is scanned instead.
fn find_session(
    store: &crate::store::Store,
    id: &str,
    size: u64,
) -> Result<(u64, u64, u64, bool, [u8; 32]), ExportError> {
    let bad = |why: String| ExportError::Invalid(format!("session {id:?}: {why}"));
    if let Some(row) = store.session_row(id)? {
        if let (Some(first), Some(last)) = (row.first, row.last) {
            if last >= size || first > last {
                return Err(bad(format!("its entries run past the checkpoint ({size})")));
            }
            let tail = store.entry(last)?;
            let head_leaf = Leaf::parse_canonical(&tail.leaf).map_err(crate::AuditError::Leaf)?;
            let start_leaf = Leaf::parse_canonical(&store.entry(first)?.leaf)
                .map_err(crate::AuditError::Leaf)?;
            let h = leaf_hash(&tail.leaf);
            let ok = head_leaf
                .session
                .as_ref()
                .is_some_and(|s| s.id == id && s.n == row.n)
                && h == row.head
                && start_leaf.kind == EventKind::SessionStart
                && start_leaf
                    .session
                    .as_ref()
                    .is_some_and(|s| s.id == id && s.n == 0);
            if !ok {
                return Err(bad(
                    "the sessions table disagrees with the leaves it names (run stele audit verify)"
                        .into(),
                ));
            }
            let ended = matches!(
                head_leaf.kind,
                EventKind::SessionEnd | EventKind::SessionInterrupted
            );
            return Ok((first, last, row.n + 1, ended, h));
        }
    }
    let mut found: Option<(u64, u64, u64, bool, [u8; 32])> = None;
    store.for_each_entry(0, size, |seq, bytes, _| {
        let leaf = Leaf::parse_canonical(bytes)?;
        if leaf.session.as_ref().is_some_and(|s| s.id == id) {
            let ended = matches!(
                leaf.kind,
                EventKind::SessionEnd | EventKind::SessionInterrupted
            );
            let h = leaf_hash(bytes);
            found = Some(match found {
                None => (seq, seq, 1, ended, h),
                Some((first, _, n, _, _)) => (first, seq, n + 1, ended, h),
            });
        }
        Ok(())
    })?;
    found.ok_or_else(|| ExportError::Invalid(format!("no session {id:?} in the log")))
}
