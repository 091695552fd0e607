//! The start-up integrity check run before a log accepts writes.
//!
//! What it covers (and costs), in order:
//! 1. The log's key is the trusted one; the newest checkpoint verifies
//!    (strict Ed25519) and covers exactly the stored entries (the highest
//!    index is its size − 1); the root recomputed from the stored tree's
//!    right edge equals its root (O(log n) reads). A checkpoint held
//!    elsewhere (an anchor) must be consistent with the log.
//! 2. Every entry appended since the previous start-up (the entries from
//!    the signed [`VerifiedThrough`] marker on), and at least the newest
//!    `recheck_tail` (1,024 by default), is verified in full: form and
//!    rules, index, chain, time order, sessions and intents as far as they
//!    are visible from there, leaf hashes, and the tree they extend up to
//!    the newest checkpoint's root — which authenticates them all, the
//!    older ones through the `prev` chain — and their payloads. Cost:
//!    proportional to what was appended since the last start-up (plus the
//!    fixed tail), not to the log's size.
//! 3. When the last full verification ([`FullCheck`]) is older than
//!    `FullVerification::at_most` — or there is none — the whole log is
//!    verified now, before any write (as `stele audit verify` does, plus
//!    SQLite's structural `quick_check`). When it is older than
//!    `FullVerification::every`, the writer runs it in the background.
//!
//! A change to an entry, a payload or the stored tree *before* the marker
//! is found by the next full verification, not by step 2: that is the
//! price of a start-up that does not grow with the log.

use std::collections::{BTreeMap, HashMap};

use stele_attest::{Checkpoint, NoteVerifier};

use crate::check::LeafChecker;
use crate::error::AuditError;
use crate::event::EventKind;
use crate::marker::{Finding, FullCheck, VerifiedThrough, FULL_CHECK, VERIFIED_THROUGH};
use crate::merkle::{leaf_hash, subtree_hash, Frontier, Hash, NodeReader as _};
use crate::store::Store;
use crate::verify::{check_leaves, check_payloads, verify_store, VerifyFailure, VerifyReport};

/// When the whole log is verified again (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FullVerification {
    /// Verify in the background when the last full verification is older.
    pub every: std::time::Duration,
    /// Verify before accepting writes when it is older (or there is none).
    pub at_most: std::time::Duration,
    /// How long a writer must have been open before the background
    /// verification starts (a one-shot command that closes the log sooner
    /// does not start one only to cancel it).
    pub start_after: std::time::Duration,
}

impl Default for FullVerification {
    fn default() -> Self {
        Self {
            every: std::time::Duration::from_secs(3600),
            at_most: std::time::Duration::from_secs(24 * 3600),
            start_after: std::time::Duration::from_secs(10),
        }
    }
}

/// Whether a full verification is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FullDue {
    /// Not yet.
    No,
    /// In the background, once the writer runs.
    Background,
    /// Was run by this check (at this unix time).
    Done(u64),
}

/// What the writer needs to resume after a successful check.
#[derive(Debug)]
pub(crate) struct Resume {
    pub origin: String,
    /// The log's keys (the last one signs).
    pub keys: crate::keys::KeySchedule,
    pub frontier: Frontier,
    pub last_hash: Option<Hash>,
    pub open_intents: HashMap<u64, (EventKind, Hash)>,
    pub latest_note: String,
    /// Every entry is now checked at least once: the marker to record.
    pub verified: VerifiedThrough,
    pub full: FullDue,
    /// Entries the check read in full (step 2 or 3).
    pub checked_entries: u64,
}

/// Why the check refuses.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Step 1 failed (or the log cannot be read): the stored tree does not
    /// continue the newest signed checkpoint, so nothing may be appended.
    Broken(AuditError),
    /// Steps 2–3 found an entry, payload or tree node altered while the
    /// tree's right edge is intact: the writer records an `audit.alert`
    /// entry (the log can still be extended correctly) and then refuses.
    Altered {
        check: &'static str,
        index: Option<u64>,
        reason: String,
        resume: Box<Resume>,
    },
}

impl From<AuditError> for Refusal {
    fn from(e: AuditError) -> Self {
        Refusal::Broken(e)
    }
}

/// Run the start-up check.
pub(crate) fn check(
    store: &Store,
    verifier: &NoteVerifier,
    anchor: Option<&str>,
    policy: FullVerification,
    recheck_tail: u64,
    now: u64,
) -> Result<Resume, Refusal> {
    store.check_is_log()?;
    let origin = store.meta_required("origin")?;
    let keys = store.key_schedule()?;
    if keys.current() != verifier.to_string() {
        return Err(Refusal::Broken(AuditError::WrongKey {
            log_key: keys.current().to_string(),
            given: verifier.to_string(),
        }));
    }
    let integrity =
        |index: u64, reason: String| Refusal::Broken(AuditError::Integrity { index, reason });
    let (cp_size, note) = store
        .latest_checkpoint()?
        .ok_or_else(|| integrity(0, "the log has no checkpoint".into()))?;
    let (cp, _) = Checkpoint::open(&note, verifier).map_err(|e| {
        integrity(
            cp_size.saturating_sub(1),
            format!("newest checkpoint (size {cp_size}) does not verify: {e}"),
        )
    })?;
    if cp.size != cp_size || cp.origin != origin {
        return Err(integrity(
            cp_size.saturating_sub(1),
            format!(
                "checkpoint row {cp_size} holds a checkpoint for {} size {}",
                cp.origin, cp.size
            ),
        ));
    }
    // (Counting the rows would read the whole table: a row deleted among
    // the entries checked below is a gap there, one deleted earlier is
    // found by the full verification.)
    let size = store.size()?;
    if size != cp.size {
        return Err(integrity(
            size.min(cp.size),
            format!(
                "the newest signed checkpoint covers {} entries but the database holds {size}",
                cp.size
            ),
        ));
    }
    let frontier = frontier_at(store, size)?;
    if frontier.root() != cp.root {
        return Err(integrity(
            size.saturating_sub(1),
            "the stored tree's root differs from the signed checkpoint".into(),
        ));
    }
    // Where an archived log's live part starts (its row checked: O(1)).
    let archived = crate::archive::check_newest_row(store, &keys, &origin)?;
    if let Some(a) = anchor {
        check_anchor(store, &keys, a, size)?;
    }
    let last_hash = match size {
        0 => None,
        n => Some(leaf_hash(&store.entry(n - 1)?.leaf)),
    };
    let full_marker = store
        .meta(FULL_CHECK)?
        .and_then(|n| FullCheck::open(&n, verifier));
    if let Some(FullCheck {
        finding: Finding::Tampered(index),
        at,
        ..
    }) = full_marker
    {
        return Err(integrity(index.unwrap_or(0), format!(
            "this log failed its verification (unix time {at}; an audit.alert entry records what was found) and stays refused: keep the file as evidence and start a new log"
        )));
    }
    let mut resume = Resume {
        keys: keys.clone(),
        origin: origin.clone(),
        frontier,
        last_hash,
        open_intents: open_intents(store)?,
        latest_note: note,
        verified: VerifiedThrough {
            size,
            root: cp.root,
        },
        full: FullDue::No,
        checked_entries: 0,
    };
    let age = full_marker.map(|m| now.saturating_sub(m.at));
    let due_now = age.is_none_or(|a| a >= policy.at_most.as_secs());
    let found = if due_now {
        resume.full = FullDue::Done(now);
        resume.checked_entries = size;
        match full(store, verifier, anchor) {
            Ok(_) => None,
            Err(VerifyFailure::Tampered { index, reason }) => Some(("full", index, reason)),
            Err(VerifyFailure::Unreadable(e)) => return Err(Refusal::Broken(e)),
        }
    } else {
        if age.is_some_and(|a| a >= policy.every.as_secs()) {
            resume.full = FullDue::Background;
        }
        let marked = store
            .meta(VERIFIED_THROUGH)?
            .and_then(|n| VerifiedThrough::open(&n, verifier))
            .filter(|m| m.size <= size)
            .map_or(0, |m| m.size);
        // Nothing below an archived prefix is stored to check.
        let from = marked
            .min(size.saturating_sub(recheck_tail))
            .max(archived.as_ref().map_or(0, |r| r.size));
        resume.checked_entries = size - from;
        tail(store, &keys, &origin, &cp, from, archived.as_ref())?
            .map(|(index, reason)| ("start-up", index, reason))
    };
    match found {
        None => Ok(resume),
        Some((check, index, reason)) => Err(Refusal::Altered {
            check,
            index,
            reason,
            resume: Box::new(resume),
        }),
    }
}

/// A finding: the first index concerned, if any, and what is wrong.
type Found = (Option<u64>, String);

/// Step 3: everything, in one snapshot, plus SQLite's structural check
/// (a damaged database structure counts as an alteration).
pub(crate) fn full(
    store: &Store,
    verifier: &NoteVerifier,
    anchor: Option<&str>,
) -> Result<VerifyReport, VerifyFailure> {
    let snapshot = store.snapshot().map_err(VerifyFailure::Unreadable)?;
    let qc: String = store
        .conn()
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| VerifyFailure::Unreadable(AuditError::sqlite(store.path())(e)))?;
    if qc != "ok" {
        return Err(VerifyFailure::Tampered {
            index: None,
            reason: format!("the database structure is damaged (SQLite quick_check: {qc})"),
        });
    }
    let r = verify_store(store, verifier, anchor);
    drop(snapshot);
    r
}

/// Step 2: the entries from `from` on. The tree's left part at `from` is
/// read from the stored nodes; with the leaves from `from` it must give the
/// newest checkpoint's root, which authenticates both — and through the
/// `prev` chain, every leaf from `from` on.
fn tail(
    store: &Store,
    keys: &crate::keys::KeySchedule,
    origin: &str,
    newest: &Checkpoint,
    from: u64,
    archived: Option<&crate::archive::ArchivedRow>,
) -> Result<Option<Found>, AuditError> {
    let log_key = keys.first();
    let mut checker = match from {
        0 => LeafChecker::new(origin, log_key),
        // Taken up where the archive left off: the row's frontier and
        // `prev`, and the key schedule at its size (the row was checked
        // against its signed checkpoint and its `log.archive` entry, whose
        // key record replays to this schedule).
        _ if archived.is_some_and(|r| r.size == from) => match archived {
            Some(r) => LeafChecker::resume(origin, log_key, r.frontier.clone(), Some(r.prev))
                .with_keys(keys.at(from)),
            None => LeafChecker::new(origin, log_key),
        },
        _ => {
            let prev = leaf_hash(&store.entry(from - 1)?.leaf);
            LeafChecker::resume(origin, log_key, frontier_at(store, from)?, Some(prev))
                .with_keys(keys.at(from))
        }
    };
    let mut expect = BTreeMap::new();
    expect.insert(newest.size, (newest.root, "newest checkpoint"));
    let mut report = VerifyReport::default();
    let found = check_leaves(store, &mut checker, &expect).and_then(|()| {
        let committed = checker.committed();
        checker
            .check_commitments(&committed)
            .map_err(|f| VerifyFailure::Tampered {
                index: Some(f.index),
                reason: f.reason,
            })?;
        check_payloads(store, from, &committed, &checker.redacted_by, &mut report)?;
        if checker.keys != *keys {
            return Err(VerifyFailure::Tampered {
                index: None,
                reason: "the log's key record differs from its key.rotation entries".into(),
            });
        }
        Ok(())
    });
    match found {
        Ok(()) => Ok(None),
        Err(VerifyFailure::Tampered { index, reason }) => Ok(Some((index, reason))),
        Err(VerifyFailure::Unreadable(e)) => Err(e),
    }
}

/// The tree's right edge at `size`, from the stored nodes.
fn frontier_at(store: &Store, size: u64) -> Result<Frontier, AuditError> {
    let mut nodes = Vec::new();
    for (level, index) in Frontier::positions(size) {
        nodes.push(store.node(level, index)?);
    }
    Frontier::from_parts(size, nodes).ok_or(AuditError::Integrity {
        index: size,
        reason: "cannot rebuild the tree frontier".into(),
    })
}

fn open_intents(store: &Store) -> Result<HashMap<u64, (EventKind, Hash)>, AuditError> {
    let mut open = HashMap::new();
    for oi in store.open_intents()? {
        let kind = EventKind::parse(&oi.kind).ok_or_else(|| AuditError::Integrity {
            index: oi.seq,
            reason: format!("open intent of unknown kind {}", oi.kind),
        })?;
        open.insert(oi.seq, (kind, oi.leaf_hash));
    }
    Ok(open)
}

/// A checkpoint held elsewhere must be no larger than the log and agree with
/// the log's root at its size: otherwise the log was truncated, rolled back
/// or rewritten.
pub(crate) fn check_anchor(
    store: &Store,
    keys: &crate::keys::KeySchedule,
    note: &str,
    size: u64,
) -> Result<(), AuditError> {
    let a = crate::keys::open_checkpoint(note, keys, &[]).map_err(|e| AuditError::Integrity {
        index: 0,
        reason: format!("the checkpoint held elsewhere does not verify with this log's keys: {e}"),
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
