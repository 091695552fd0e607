//! The log's keys across an archived prefix (docs/audit-format.md §9).
//!
//! Archival removes the `key.rotation` entries below the boundary `N`, yet
//! a verifier of the live part must still learn which key signs at `N`,
//! and from a key it trusts. The database's `meta` schedule cannot be the
//! answer: whoever can write the file can write it. So `log.archive`
//! carries, for every rotation below `N`, the rotation leaf itself and its
//! inclusion proof in the tree at the rotation's boundary, whose signed
//! checkpoint (kept: checkpoints are never deleted) is signed by the old
//! key *and* the new one. Replaying those proofs from the genesis key
//! rebuilds the schedule at `N` link by signed link: a key can only enter
//! it by a rotation leaf under a root the previous key signed, so adding
//! a signature to a kept note or editing `meta` forges nothing.
//!
//! The revocations below `N` travel as data in the same entry: they are
//! bound by the live log's own signed tree, and the archive chain checks
//! them against the archive bundle's entries.

use serde::{Deserialize, Serialize};

use crate::keys::{KeySchedule, Revocation};
use crate::leaf::{hash_b64, parse_hash_b64, Leaf};
use crate::leaf_view::LeafView;
use crate::merkle::{leaf_hash, verify_inclusion, Hash};

/// One `key.rotation` below the boundary, with its proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationProof {
    /// The rotation leaf (canonical bytes, standard base64).
    pub leaf: String,
    /// Its RFC 6962 inclusion proof in the tree at its boundary (base64
    /// hashes).
    pub proof: Vec<String>,
}

/// What `log.archive` records of the keys below its boundary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveKeys {
    /// Every rotation below the boundary, oldest first.
    #[serde(default)]
    pub rotations: Vec<RotationProof>,
    /// Every revocation recorded below the boundary, oldest first.
    #[serde(default)]
    pub revocations: Vec<Revocation>,
}

impl RotationProof {
    /// The proof for rotation leaf `leaf` with audit path `path`.
    pub fn new(leaf: &[u8], path: &[Hash]) -> Self {
        use base64::Engine as _;
        Self {
            leaf: base64::engine::general_purpose::STANDARD.encode(leaf),
            proof: path.iter().map(hash_b64).collect(),
        }
    }

    fn leaf_bytes(&self) -> Result<Vec<u8>, String> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(&self.leaf)
            .map_err(|e| format!("a rotation leaf is not base64: {e}"))
    }
}

impl ArchiveKeys {
    /// Rebuild the key schedule at `n` from the genesis key: each rotation
    /// leaf must continue the schedule (old key = current, boundary = its
    /// index + 1 ≤ `n`) and be included in the signed checkpoint at its
    /// boundary (`checkpoint_at`), which both keys must have signed. The
    /// revocations must name keys of that schedule below `n`. Returns the
    /// schedule at `n` and the revocations.
    pub fn replay(
        &self,
        genesis: &str,
        origin: &str,
        n: u64,
        checkpoint_at: &mut dyn FnMut(u64) -> Result<Option<String>, String>,
    ) -> Result<(KeySchedule, Vec<Revocation>), String> {
        let mut keys = KeySchedule::single(genesis);
        let mut unused = Vec::new();
        for (i, r) in self.rotations.iter().enumerate() {
            let what = format!("archived key rotation {}", i + 1);
            let bytes = r.leaf_bytes()?;
            let typed;
            let view = match LeafView::scan(&bytes) {
                Some(v) => v,
                None => {
                    typed = Leaf::parse_canonical(&bytes).map_err(|e| format!("{what}: {e}"))?;
                    LeafView::of(&typed)
                }
            };
            if view.kind != crate::event::EventKind::KeyRotation {
                return Err(format!("{what} is a {}, not a key.rotation", view.kind));
            }
            let b = view.seq + 1;
            if b > n {
                return Err(format!(
                    "{what} is at index {}, not below the archived size {n}",
                    view.seq
                ));
            }
            crate::keys::check_entry(&view, origin, &mut keys, &mut unused)
                .map_err(|e| format!("{what}: {e}"))?;
            let note = checkpoint_at(b)?.ok_or_else(|| {
                format!(
                    "{what}: the checkpoint at its boundary {b} (signed by both keys) is missing"
                )
            })?;
            let cp = crate::keys::open_checkpoint(&note, &keys, &[])
                .map_err(|e| format!("{what}: the checkpoint at size {b}: {e}"))?;
            let path = r
                .proof
                .iter()
                .map(|h| parse_hash_b64(h).ok_or_else(|| format!("{what}: a bad proof hash")))
                .collect::<Result<Vec<_>, _>>()?;
            verify_inclusion(&leaf_hash(&bytes), view.seq, b, &path, &cp.root).map_err(|e| {
                format!("{what}: the leaf is not in the tree its old key signed at size {b}: {e}")
            })?;
        }
        for v in &self.revocations {
            if !keys.ranges().iter().any(|r| r.key == v.key) {
                return Err(format!(
                    "an archived revocation names {}, not a former key of this log",
                    v.key
                ));
            }
            if v.from == 0 || v.from > n {
                return Err(format!(
                    "an archived revocation's size {} is outside 1..={n}",
                    v.from
                ));
            }
        }
        Ok((keys, self.revocations.clone()))
    }
}

/// What `log.archive` through `n` must record of the keys: the previous
/// archive's record (the entries below its boundary are gone) and the
/// `key.rotation` / `key.revocation` entries from there to `n`, each
/// rotation with its inclusion proof at its boundary.
#[cfg(feature = "store")]
pub(crate) fn collect(
    store: &crate::store::Store,
    n: u64,
) -> Result<ArchiveKeys, crate::error::AuditError> {
    use crate::error::AuditError;
    use crate::event::EventKind;
    let mut out = ArchiveKeys::default();
    let from = match store.archived()? {
        Some(row) => {
            let leaf = store.entry(row.entry)?.leaf;
            let seen = crate::check::LeafChecker::new("", "")
                .archive_of(&leaf)
                .map_err(|reason| AuditError::Integrity {
                    index: row.entry,
                    reason,
                })?;
            out = seen.keys;
            row.size
        }
        None => 0,
    };
    let mut found: Vec<(u64, Vec<u8>)> = Vec::new();
    store.for_each_entry(from, n, |seq, leaf, _| {
        // Most leaves are not key entries: a byte search first.
        if leaf.windows(5).any(|w| w == b"key.r") {
            found.push((seq, leaf.to_vec()));
        }
        Ok(())
    })?;
    for (seq, bytes) in found {
        let typed;
        let view = match LeafView::scan(&bytes) {
            Some(v) => v,
            None => {
                typed = Leaf::parse_canonical(&bytes).map_err(|e| AuditError::Integrity {
                    index: seq,
                    reason: e.to_string(),
                })?;
                LeafView::of(&typed)
            }
        };
        match view.kind {
            EventKind::KeyRotation => {
                let path = crate::merkle::inclusion_proof(store, seq, seq + 1)?;
                out.rotations.push(RotationProof::new(&bytes, &path));
            }
            EventKind::KeyRevocation => {
                let mut keys = store.key_schedule()?;
                let mut revs = Vec::new();
                // Only to read its data: the verifiers check it in place.
                let _ = crate::keys::check_entry(
                    &view,
                    &store.meta_required("origin")?,
                    &mut keys,
                    &mut revs,
                );
                let v = revs.pop().ok_or_else(|| AuditError::Integrity {
                    index: seq,
                    reason: "a key.revocation entry that does not read".into(),
                })?;
                out.revocations.push(v);
            }
            _ => {}
        }
    }
    Ok(out)
}
