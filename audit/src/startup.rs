//! The start-up integrity check run before a log accepts writes.
//!
//! The newest checkpoint must verify with the log's key and match the stored
//! entries (size and root); the last entries are re-verified; a checkpoint
//! held elsewhere (an anchor) must be consistent with the log.

use std::collections::HashMap;

use stele_attest::{Checkpoint, NoteVerifier};

use crate::error::AuditError;
use crate::event::EventKind;
use crate::leaf::{parse_hash_b64, Leaf};
use crate::merkle::{leaf_hash, subtree_hash, Frontier, Hash};
use crate::store::Store;

/// What the writer needs to resume after a successful check.
#[derive(Debug)]
pub(crate) struct Resume {
    pub origin: String,
    pub frontier: Frontier,
    pub last_hash: Option<Hash>,
    pub open_intents: HashMap<u64, (EventKind, Hash)>,
    pub latest_note: String,
}

/// Run every start-up check; `Err(Integrity)` means: refuse to write.
pub(crate) fn check(
    store: &Store,
    verifier: &NoteVerifier,
    anchor: Option<&str>,
    recheck_tail: u64,
) -> Result<Resume, AuditError> {
    let path = store.path().to_path_buf();
    let qc: String = store
        .conn()
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| AuditError::NotALog {
            path: path.clone(),
            detail: e.to_string(),
        })?;
    if qc != "ok" {
        return Err(AuditError::NotALog {
            path,
            detail: format!("SQLite quick_check: {qc}"),
        });
    }
    store.check_is_log()?;
    let origin = store.meta_required("origin")?;
    let log_key = store.meta_required("vkey")?;
    if log_key != verifier.to_string() {
        return Err(AuditError::WrongKey {
            log_key,
            given: verifier.to_string(),
        });
    }
    let (cp_size, note) = store.latest_checkpoint()?.ok_or(AuditError::Integrity {
        index: 0,
        reason: "the log has no checkpoint".into(),
    })?;
    let (cp, _) = Checkpoint::open(&note, verifier).map_err(|e| AuditError::Integrity {
        index: cp_size.saturating_sub(1),
        reason: format!("newest checkpoint (size {cp_size}) does not verify: {e}"),
    })?;
    if cp.size != cp_size || cp.origin != origin {
        return Err(AuditError::Integrity {
            index: cp_size.saturating_sub(1),
            reason: format!(
                "checkpoint row {cp_size} holds a checkpoint for {} size {}",
                cp.origin, cp.size
            ),
        });
    }
    let size = store.size()?;
    let rows = store.row_count()?;
    if size != cp.size {
        return Err(AuditError::Integrity {
            index: size.min(cp.size),
            reason: format!(
                "the newest signed checkpoint covers {} entries but the database holds {size}",
                cp.size
            ),
        });
    }
    if rows != size {
        return Err(AuditError::Integrity {
            index: 0,
            reason: format!(
                "entries are missing: indices run to {} but only {rows} rows exist",
                size - 1
            ),
        });
    }
    let mut nodes = Vec::new();
    for (level, index) in Frontier::positions(size) {
        nodes.push(crate::merkle::NodeReader::node(store, level, index)?);
    }
    let frontier = Frontier::from_parts(size, nodes).ok_or(AuditError::Integrity {
        index: size,
        reason: "cannot rebuild the tree frontier".into(),
    })?;
    if frontier.root() != cp.root {
        return Err(AuditError::Integrity {
            index: size.saturating_sub(1),
            reason: "the stored tree's root differs from the signed checkpoint".into(),
        });
    }
    let last_hash = recheck(store, &origin, size, recheck_tail)?;
    if let Some(a) = anchor {
        check_anchor(store, verifier, a, size)?;
    }
    let mut open_intents = HashMap::new();
    for oi in store.open_intents()? {
        let kind = EventKind::parse(&oi.kind).ok_or_else(|| AuditError::Integrity {
            index: oi.seq,
            reason: format!("open intent of unknown kind {}", oi.kind),
        })?;
        open_intents.insert(oi.seq, (kind, oi.leaf_hash));
    }
    Ok(Resume {
        origin,
        frontier,
        last_hash,
        open_intents,
        latest_note: note,
    })
}

/// Re-verify the last `k` leaves: canonical form, index, origin, hash, chain.
fn recheck(store: &Store, origin: &str, size: u64, k: u64) -> Result<Option<Hash>, AuditError> {
    if size == 0 {
        return Ok(None);
    }
    let start = size.saturating_sub(k.max(1));
    let mut prev: Option<Hash> = if start == 0 {
        None
    } else {
        let e = store.entry(start - 1)?;
        Some(e.leaf_hash.try_into().map_err(|_| AuditError::Integrity {
            index: start - 1,
            reason: "stored leaf hash is not 32 bytes".into(),
        })?)
    };
    let mut scratch = Vec::new();
    store.for_each_entry(start, size, |seq, bytes, stored| {
        let bad = |reason: String| AuditError::Integrity { index: seq, reason };
        let leaf = Leaf::decode_canonical(bytes, &mut scratch).map_err(|e| bad(e.to_string()))?;
        let h = leaf_hash(bytes);
        if stored != h {
            return Err(bad("leaf bytes do not match the stored leaf hash".into()));
        }
        if leaf.seq != seq || leaf.log != origin {
            return Err(bad(format!(
                "leaf claims index {} of log {:?}",
                leaf.seq, leaf.log
            )));
        }
        if leaf.prev.as_deref().and_then(parse_hash_b64) != prev {
            return Err(bad(
                "hash chain broken: prev does not name the previous leaf".into(),
            ));
        }
        prev = Some(h);
        Ok(())
    })?;
    Ok(prev)
}

/// A checkpoint held elsewhere must be no larger than the log and agree with
/// the log's root at its size: otherwise the log was truncated, rolled back
/// or rewritten.
pub(crate) fn check_anchor(
    store: &Store,
    verifier: &NoteVerifier,
    note: &str,
    size: u64,
) -> Result<(), AuditError> {
    let (a, _) = Checkpoint::open(note, verifier).map_err(|e| AuditError::Integrity {
        index: 0,
        reason: format!("the checkpoint held elsewhere does not verify with this log's key: {e}"),
    })?;
    if a.size > size {
        return Err(AuditError::Integrity {
            index: size,
            reason: format!(
                "the log holds {size} entries but a checkpoint held elsewhere covers {}: truncated or rolled back",
                a.size
            ),
        });
    }
    if subtree_hash(store, 0, a.size)? != a.root {
        return Err(AuditError::Integrity {
            index: a.size.saturating_sub(1),
            reason: format!(
                "the log's root at size {} differs from the checkpoint held elsewhere",
                a.size
            ),
        });
    }
    Ok(())
}
