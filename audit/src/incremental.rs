//! Checking a log one batch at a time, from a small saved state: what a
//! server that keeps a copy of a worker's log (docs/server.md "Workers:
//! shipping") needs to accept the next batch without reading what it
//! already holds.
//!
//! The state is the tree's right edge (its frontier), the newest leaf hash
//! and the newest `(boot, ts)`. Each batch is checked by the same
//! [`LeafChecker`] the verifiers use (canonical form and schema, `seq`,
//! `log`, the `prev` chain, time order per writer boot, session sub-chains
//! and intents as the continuing leaves state them), then the root
//! recomputed at the batch's end must be the one the log's signed
//! checkpoint names, and that checkpoint must open strictly with the log's
//! key. A key rotation is followed: its entry must end its batch, whose
//! checkpoint is the rotation's boundary checkpoint, signed by the old key
//! and the new (docs/audit-format.md §10), so the old key vouches for the
//! new one; later batches are checked with the new key. A key revocation
//! is refused (it names a former key, and the held state keeps only the
//! current one).

use stele_attest::{NoteVerifier, SignedNote};

use crate::check::{commit_hash, LeafChecker};
use crate::event::EventKind;
use crate::merkle::{CompletedNode, Frontier, Hash};

/// What a batch is checked against: the log as far as it was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShippedState {
    /// Entries accepted.
    pub size: u64,
    /// The frontier's hashes, largest subtree first ([`Frontier::nodes`]).
    pub frontier: Vec<Hash>,
    /// The leaf hash of entry `size - 1`.
    pub last_hash: Option<Hash>,
    /// The newest `(boot, ts)` accepted.
    pub last_time: Option<(String, String)>,
}

/// Why a batch was refused: the first problem, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", index.map(|i| format!("index {i}: ")).unwrap_or_default())]
pub struct BatchFailure {
    /// The entry concerned (None: the checkpoint or the state).
    pub index: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

fn fail(index: Option<u64>, reason: impl Into<String>) -> BatchFailure {
    BatchFailure {
        index,
        reason: reason.into(),
    }
}

/// One accepted entry with the fields a reviewer searches by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedEntry {
    /// Its index.
    pub seq: u64,
    /// Its exact bytes.
    pub leaf: Vec<u8>,
    /// Its time.
    pub ts: String,
    /// Its kind.
    pub kind: EventKind,
    /// Its session, if any.
    pub session: Option<String>,
    /// The principal.
    pub principal: String,
    /// The principal's teams.
    pub teams: Vec<String>,
    /// A policy decision's effect (`allow`, `deny`, `ask`).
    pub effect: Option<String>,
    /// The workspace path acted on.
    pub path: Option<String>,
    /// Its leaf hash (the tree's level 0 at `seq`).
    pub hash: Hash,
    /// The payloads it lists (a body stored with it must match).
    pub payloads: Vec<ListedPayload>,
}

/// A payload as a leaf lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPayload {
    /// Its commitment, `SHA-256(salt ‖ body)` ([`crate::payload::commitment`]).
    pub cmt: Hash,
    /// Its media type.
    pub media: String,
    /// The body's size in bytes.
    pub size: u64,
}

/// A batch that verified: the entries, the new state, the checkpoint.
#[derive(Debug, Clone)]
pub struct AcceptedBatch {
    /// The entries, in order.
    pub entries: Vec<AcceptedEntry>,
    /// The state after them.
    pub state: ShippedState,
    /// The root at the batch's end.
    pub root: Hash,
    /// The checkpoint's note body (what a witness cosigns).
    pub body: String,
    /// The log's key from here on (another than the one checked with when
    /// the batch ended with a key rotation).
    pub key: String,
    /// Every tree node (level ≥ 1) the batch's leaves completed, bottom-up
    /// in append order: with the leaf hashes, what inclusion proofs are
    /// read from.
    pub nodes: Vec<CompletedNode>,
    /// The payload commitments the batch's redaction and expiry entries
    /// erase, each with that entry's index (a copy of those bodies held
    /// elsewhere must go too).
    pub erased: Vec<(Hash, u64)>,
}

/// Check `leaves` (entries `state.size ..`) of the log `origin` whose key
/// is `key`, ending at the signed checkpoint `note`.
pub fn check_batch(
    origin: &str,
    key: &NoteVerifier,
    state: &ShippedState,
    leaves: &[Vec<u8>],
    note: &str,
) -> Result<AcceptedBatch, BatchFailure> {
    let frontier = Frontier::from_parts(state.size, state.frontier.clone()).ok_or_else(|| {
        fail(
            None,
            format!("the held frontier does not fit size {}", state.size),
        )
    })?;
    let mut checker = LeafChecker::resume(origin, &key.to_string(), frontier, state.last_hash)
        .with_last_time(state.last_time.clone());
    let mut entries = Vec::with_capacity(leaves.len());
    // About one completed node per leaf (a tree of n leaves has n - 1).
    let mut nodes = Vec::with_capacity(leaves.len());
    let end = state.size + leaves.len() as u64;
    for bytes in leaves {
        let i = checker.size();
        let c = checker
            .push(bytes, None, |n| nodes.push(n))
            .map_err(|e| fail(Some(e.index), e.reason))?;
        let (kind, hash) = (c.view().kind, c.hash);
        match kind {
            EventKind::KeyRevocation => {
                return Err(fail(
                    Some(i),
                    "key.revocation: revoking a former key inside a shipped log is not \
                     supported; ship stops here",
                ))
            }
            // Only the boundary checkpoint carries both keys' signatures.
            EventKind::KeyRotation if i + 1 != end => {
                return Err(fail(
                    Some(i),
                    "key.rotation: must be the last entry of its batch (the batch's \
                     checkpoint is its boundary checkpoint, signed by both keys)",
                ))
            }
            _ => {}
        }
        let leaf = c.into_leaf().map_err(|e| fail(Some(i), e.to_string()))?;
        // The checker has refused a leaf whose commitments do not parse.
        let payloads = leaf
            .payload
            .iter()
            .filter_map(|p| {
                commit_hash(&p.commit).map(|cmt| ListedPayload {
                    cmt,
                    media: p.media.clone(),
                    size: p.size,
                })
            })
            .collect();
        entries.push(AcceptedEntry {
            seq: i,
            leaf: bytes.clone(),
            ts: leaf.ts,
            kind,
            session: leaf.session.map(|s| s.id),
            principal: leaf.actor.principal,
            teams: leaf.actor.teams,
            effect: leaf.decision.map(|d| effect_name(d.effect).to_string()),
            path: leaf.target.and_then(|t| t.path),
            hash,
            payloads,
        });
    }
    checker
        .check_commitments(&checker.committed())
        .map_err(|e| fail(Some(e.index), e.reason))?;
    // Every key the schedule holds at the batch's end must have signed it:
    // the held key alone, or at a rotation's boundary the old and the new.
    let cp = crate::keys::open_checkpoint(note, &checker.keys, &[])
        .map_err(|e| fail(None, format!("checkpoint: {e}")))?;
    let signed = SignedNote::parse(note).map_err(|e| fail(None, format!("checkpoint: {e}")))?;
    if cp.size != checker.size() {
        return Err(fail(
            None,
            format!(
                "checkpoint: size {} but the batch ends at {}",
                cp.size,
                checker.size()
            ),
        ));
    }
    let root = checker.root();
    if cp.root != root {
        return Err(fail(
            None,
            format!(
                "checkpoint: its root is not the root of the {} entries shipped",
                cp.size
            ),
        ));
    }
    Ok(AcceptedBatch {
        entries,
        state: ShippedState {
            size: checker.size(),
            frontier: checker.frontier().nodes().to_vec(),
            last_hash: checker.last_hash(),
            last_time: checker.last_time().cloned(),
        },
        root,
        body: signed.text,
        key: checker.keys.current().to_string(),
        nodes,
        erased: {
            let mut e: Vec<(Hash, u64)> =
                checker.redacted_by.iter().map(|(c, i)| (*c, *i)).collect();
            e.sort_unstable_by_key(|(c, i)| (*i, *c));
            e
        },
    })
}

fn effect_name(e: crate::event::Effect) -> &'static str {
    match e {
        crate::event::Effect::Allow => "allow",
        crate::event::Effect::Deny => "deny",
        crate::event::Effect::Ask => "ask",
    }
}

#[cfg(all(test, feature = "store"))]
#[path = "incremental_tests.rs"]
mod tests;
