//! Full verification of an audit database: re-derive everything from the
//! stored leaves and compare with what was signed. The per-leaf rules live
//! in [`crate::check`], shared with the offline bundle verifier.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use stele_attest::NoteVerifier;

use crate::check::LeafChecker;
use crate::error::AuditError;
use crate::merkle::{Hash, HashedLeaf};
use crate::payload::commitment;
use crate::store::Store;

/// Why verification stopped.
#[derive(Debug, thiserror::Error)]
pub enum VerifyFailure {
    /// The log was altered (or was never valid): the first problem found.
    #[error("TAMPERED{}: {reason}", .index.map(|i| format!(" at index {i}")).unwrap_or_default())]
    Tampered {
        /// The first index concerned, when there is one.
        index: Option<u64>,
        /// What disagrees.
        reason: String,
    },
    /// The log could not be read at all.
    #[error("cannot read the log: {0}")]
    Unreadable(AuditError),
}

fn tampered(index: impl Into<Option<u64>>, reason: impl Into<String>) -> VerifyFailure {
    VerifyFailure::Tampered {
        index: index.into(),
        reason: reason.into(),
    }
}

pub use crate::check::{RedactionSeen, Unfinished};

/// What a successful verification found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Log origin.
    pub origin: String,
    /// Entries verified: the log's size (the archived prefix included).
    pub entries: u64,
    /// Entries below this were archived (0: none); verified from here on.
    pub archived: u64,
    /// Signed checkpoints verified.
    pub checkpoints: u64,
    /// Root at the newest checkpoint (base64).
    pub root: String,
    /// Sessions seen, and how many have no end entry.
    pub sessions: u64,
    /// Sessions without `session.end` / `session.interrupted`.
    pub open_sessions: u64,
    /// Payloads whose bodies verified.
    pub payloads_present: u64,
    /// Payloads erased by a redaction.
    pub payloads_redacted: u64,
    /// Redaction entries.
    pub redactions: Vec<RedactionSeen>,
    /// `payload.expiry` entries.
    pub expiries: Vec<crate::check::ExpirySeen>,
    /// Legal holds, placed and released, in index order.
    pub holds: Vec<crate::holds::HoldState>,
    /// Intents never closed by a result or `interrupted`.
    pub unfinished: Vec<Unfinished>,
    /// Intents closed as interrupted.
    pub interrupted: u64,
    /// First and last timestamps.
    pub time_span: Option<(String, String)>,
    /// Whether an outside checkpoint was checked, and its size.
    pub anchor_size: Option<u64>,
    /// The log's keys with the checkpoint sizes each signs.
    pub keys: Vec<crate::keys::KeyRange>,
    /// Former keys the log itself revoked (`key.revocation`).
    pub revocations: Vec<crate::keys::Revocation>,
    /// Seconds spent (wall clock).
    pub seconds: f64,
    /// CPU seconds this thread spent (equals `seconds` where the platform
    /// does not say): the figure for "entries per second on one core".
    pub cpu_seconds: f64,
}

/// Verify the database at `path` against the trusted `verifier` key and an
/// optional checkpoint held elsewhere. Everything is read from one
/// consistent state of the database (one read transaction), so a log that
/// a writer is appending to verifies as the state it had when verification
/// began.
pub fn verify_db(
    path: &Path,
    verifier: &NoteVerifier,
    anchor: Option<&str>,
) -> Result<VerifyReport, VerifyFailure> {
    let started = Instant::now();
    let cpu0 = crate::cpu_time::thread_cpu_ns();
    let store = Store::open(path).map_err(VerifyFailure::Unreadable)?;
    // One sequential pass over the file: reading it through a memory map
    // saves a copy of every page. Only a speed hint, so failure is ignored.
    let _ = store.conn().pragma_update(None, "mmap_size", 1i64 << 40);
    let snapshot = store.snapshot().map_err(VerifyFailure::Unreadable)?;
    let mut report = verify_store(&store, verifier, anchor)?;
    drop(snapshot);
    report.seconds = started.elapsed().as_secs_f64();
    report.cpu_seconds = crate::cpu_time::cpu_seconds_since(cpu0, report.seconds);
    Ok(report)
}

/// [`verify_db`], then `then` on the same store inside the same read
/// transaction: whatever it reads (entries below `report.entries`,
/// payloads) is the state that verified, however much a writer appends
/// meanwhile. Its error is returned as it is, beside the report.
pub fn verify_db_then<T, E>(
    path: &Path,
    verifier: &NoteVerifier,
    anchor: Option<&str>,
    then: impl FnOnce(&Store, &VerifyReport) -> Result<T, E>,
) -> Result<(VerifyReport, Result<T, E>), VerifyFailure> {
    let started = Instant::now();
    let cpu0 = crate::cpu_time::thread_cpu_ns();
    let store = Store::open(path).map_err(VerifyFailure::Unreadable)?;
    let _ = store.conn().pragma_update(None, "mmap_size", 1i64 << 40);
    let snapshot = store.snapshot().map_err(VerifyFailure::Unreadable)?;
    let mut report = verify_store(&store, verifier, anchor)?;
    report.seconds = started.elapsed().as_secs_f64();
    report.cpu_seconds = crate::cpu_time::cpu_seconds_since(cpu0, report.seconds);
    let out = then(&store, &report);
    drop(snapshot);
    Ok((report, out))
}

/// [`verify_db`] on an open store, inside a [`Store::snapshot`] the caller
/// holds (the writer's background check runs this on its own connection).
pub(crate) fn verify_store(
    store: &Store,
    verifier: &NoteVerifier,
    anchor: Option<&str>,
) -> Result<VerifyReport, VerifyFailure> {
    let un = VerifyFailure::Unreadable;
    let origin = store.meta_required("origin").map_err(un)?;
    let keys = store
        .key_schedule()
        .map_err(|e| tampered(None, e.to_string()))?;
    let vkey = keys.first().to_string();
    // Any key of the log may be the reviewer's: each rotation is signed by
    // both keys at its boundary, so trust reaches every other key.
    if !keys.ranges().iter().any(|r| r.key == verifier.to_string()) {
        let names: Vec<&str> = keys.ranges().iter().map(|r| r.key.as_str()).collect();
        return Err(tampered(
            None,
            format!(
                "the log names key {}, not the trusted key {verifier}",
                names.join(" then ")
            ),
        ));
    }
    if origin != verifier.name() {
        return Err(tampered(
            None,
            format!("origin {origin:?} differs from the key name"),
        ));
    }
    // Every signed size must match the recomputed root at that size.
    let mut expect: BTreeMap<u64, (Hash, &'static str)> = BTreeMap::new();
    let mut report = VerifyReport {
        origin: origin.clone(),
        ..Default::default()
    };
    let notes = store.checkpoints().map_err(VerifyFailure::Unreadable)?;
    for (size, note) in &notes {
        let cp = crate::keys::open_checkpoint(note, &keys, &[]).map_err(|e| {
            tampered(
                size.checked_sub(1),
                format!("checkpoint for size {size} does not verify: {e}"),
            )
        })?;
        if cp.size != *size || cp.origin != origin {
            return Err(tampered(
                None,
                format!(
                    "checkpoint row {size} holds size {} of {:?}",
                    cp.size, cp.origin
                ),
            ));
        }
        if expect
            .insert(cp.size, (cp.root, "stored checkpoint"))
            .is_some_and(|(r, _)| r != cp.root)
        {
            return Err(tampered(
                size.checked_sub(1),
                format!("two signed checkpoints for size {size} have different roots (fork)"),
            ));
        }
        report.checkpoints += 1;
    }
    let Some((&latest, &(latest_root, _))) = expect.iter().next_back() else {
        return Err(tampered(None, "the log has no signed checkpoint"));
    };
    report.root = crate::leaf::hash_b64(&latest_root);
    // The checkpoint of every rotation, signed by both keys, is what links
    // one key to the next: it must be there.
    if let Some(b) = keys.boundaries().find(|b| !expect.contains_key(b)) {
        return Err(tampered(
            b.checked_sub(1),
            format!(
                "the checkpoint of the key rotation at size {b} (signed by both keys) is missing"
            ),
        ));
    }
    if let Some(a) = anchor {
        let cp = crate::keys::open_checkpoint(a, &keys, &[]).map_err(|e| {
            tampered(
                None,
                format!("the checkpoint held elsewhere does not verify: {e}"),
            )
        })?;
        if cp.size > latest {
            return Err(tampered(
                latest,
                format!(
                    "the log ends at {latest} entries but a checkpoint held elsewhere covers {}: truncated or rolled back",
                    cp.size
                ),
            ));
        }
        if let Some((r, _)) = expect.get(&cp.size) {
            if *r != cp.root {
                return Err(tampered(
                    cp.size.checked_sub(1),
                    "a stored checkpoint contradicts the one held elsewhere (fork)",
                ));
            }
        }
        expect.insert(cp.size, (cp.root, "checkpoint held elsewhere"));
        report.anchor_size = Some(cp.size);
    }

    // An archived log is taken up at its newest archived size, from the
    // frontier kept for it (checked against the signed checkpoint there).
    let rows = store.archived_rows().map_err(|e| match e {
        AuditError::Integrity { index, reason } => tampered(index, reason),
        other => VerifyFailure::Unreadable(other),
    })?;
    let from = rows.last().map_or(0, |r| r.size);
    let mut checker = match rows.last() {
        None => LeafChecker::new(&origin, &vkey),
        Some(r) => {
            // The keys at the boundary come from what the newest
            // `log.archive` entry proves (rotation leaves under the roots
            // their old keys signed), never from `meta` alone.
            let leaf = store.entry(r.entry).map_err(|e| match e {
                AuditError::Integrity { index, reason } => tampered(index, reason),
                other => tampered(
                    Some(r.entry),
                    format!(
                        "archived row {}: its log.archive entry {} is missing or unreadable: {other}",
                        r.size, r.entry
                    ),
                ),
            })?;
            let bad = |why: String| {
                tampered(
                    r.size.checked_sub(1),
                    format!("archived row {}: {why}", r.size),
                )
            };
            let seen = LeafChecker::new("", "")
                .archive_of(&leaf.leaf)
                .map_err(bad)?;
            let (at_boundary, revoked) =
                crate::archive::replay_keys(store, &seen, &vkey, &origin).map_err(bad)?;
            let mut c = LeafChecker::resume(&origin, &vkey, r.frontier.clone(), Some(r.prev))
                .with_keys(at_boundary);
            c.revocations = revoked;
            c
        }
    };
    check_leaves(store, &mut checker, &expect)?;
    if checker.keys != keys {
        return Err(tampered(
            None,
            "the log's key record differs from its key.rotation entries",
        ));
    }
    crate::archive::check_rows(store, &rows, &checker.archives, &expect)
        .map_err(|(i, why)| tampered(i, why))?;
    report.keys = keys.ranges().to_vec();
    report.revocations = std::mem::take(&mut checker.revocations);
    let committed = checker.committed();
    checker
        .check_commitments(&committed)
        .map_err(|f| tampered(f.index, f.reason))?;
    check_payloads(store, from, &committed, &checker.redacted_by, &mut report)?;
    checker
        .check_erasures(&committed, |seq| {
            let e = store.entry(seq).map_err(|e| e.to_string())?;
            crate::holds::EntryAttrs::of_leaf(&e.leaf).map(Some)
        })
        .map_err(|f| tampered(f.index, f.reason))?;
    report.entries = checker.size();
    report.archived = from;
    report.sessions = checker.sessions.len() as u64;
    report.open_sessions = checker.sessions.values().filter(|s| !s.ended).count() as u64;
    report.unfinished = checker.unfinished();
    report.redactions = std::mem::take(&mut checker.redactions);
    report.expiries = std::mem::take(&mut checker.expiries);
    report.holds = checker.holds.holds.values().cloned().collect();
    report.interrupted = checker.interrupted;
    report.time_span = checker.time_span();
    Ok(report)
}

/// Stream every stored entry from `checker.size()` on through `checker`,
/// checking each signed root of `expect` at its size; the entries must end
/// exactly at the newest one, with its root.
pub(crate) fn check_leaves(
    store: &Store,
    checker: &mut LeafChecker,
    expect: &BTreeMap<u64, (Hash, &'static str)>,
) -> Result<(), VerifyFailure> {
    let Some((&latest, &(latest_root, _))) = expect.iter().next_back() else {
        return Err(tampered(None, "the log has no signed checkpoint"));
    };
    let mut checks = expect.range(checker.size().saturating_add(1)..).peekable();
    // Rows are checked two at a time so their leaf hashes are computed
    // together (`HashedLeaf::pair`, a fifth faster): the first of two is
    // held (copied: SQLite reuses its buffer) until the second arrives.
    // Leaves are still checked one by one in index order, and a held leaf
    // is checked before anything found after it is reported, so the first
    // problem reported is the same.
    let mut held = Held::default();
    let read = store.for_each_entry(checker.size(), u64::MAX, |seq, bytes, stored_hash| {
        let next = checker.size() + u64::from(held.full);
        if seq != next {
            held.check(checker, &mut checks)?;
            return Err(AuditError::Integrity {
                index: next,
                reason: format!("entry {next} is missing (the next stored entry is {seq})"),
            });
        }
        if !held.full {
            held.hold(bytes, stored_hash);
            return Ok(());
        }
        held.full = false;
        let (a, b) = HashedLeaf::pair(&held.leaf, bytes);
        step(checker, &mut checks, a, &held.hash)?;
        step(checker, &mut checks, b, stored_hash)
    });
    let read = held.check(checker, &mut checks).and(read);
    read.map_err(|e| match e {
        AuditError::Integrity { index, reason } => tampered(index, reason),
        other => VerifyFailure::Unreadable(other),
    })?;

    let size = checker.size();
    if size < latest {
        return Err(tampered(
            size,
            format!("truncated: the newest checkpoint covers {latest} entries but only {size} are stored"),
        ));
    }
    if size > latest {
        return Err(tampered(
            latest,
            format!(
                "{} entries after the newest signed checkpoint",
                size - latest
            ),
        ));
    }
    if checker.root() != latest_root {
        return Err(tampered(
            size.checked_sub(1),
            "root differs from the newest checkpoint",
        ));
    }
    Ok(())
}

/// Signed sizes still to reach, with the root each must have.
type Checks<'a> =
    std::iter::Peekable<std::collections::btree_map::Range<'a, u64, (Hash, &'static str)>>;

/// Check one leaf, then every signed root at the size it reaches.
fn step(
    checker: &mut LeafChecker,
    checks: &mut Checks<'_>,
    leaf: HashedLeaf<'_>,
    stored_hash: &[u8],
) -> Result<(), AuditError> {
    checker
        .push_hashed(leaf, Some(stored_hash), |_| {})
        .map_err(|f| AuditError::Integrity {
            index: f.index,
            reason: f.reason,
        })?;
    while let Some((&size, &(root, what))) = checks.peek() {
        if size > checker.size() {
            break;
        }
        if size == checker.size() && checker.root() != root {
            return Err(AuditError::Integrity {
                index: size - 1,
                reason: format!("recomputed root at size {size} differs from the {what}"),
            });
        }
        checks.next();
    }
    Ok(())
}

/// A row waiting for the next one (see `verify_db`); buffers are reused.
#[derive(Default)]
struct Held {
    full: bool,
    leaf: Vec<u8>,
    hash: Vec<u8>,
}

impl Held {
    fn hold(&mut self, leaf: &[u8], hash: &[u8]) {
        self.leaf.clear();
        self.leaf.extend_from_slice(leaf);
        self.hash.clear();
        self.hash.extend_from_slice(hash);
        self.full = true;
    }

    /// Check the held row, if any, on its own.
    fn check(
        &mut self,
        checker: &mut LeafChecker,
        checks: &mut Checks<'_>,
    ) -> Result<(), AuditError> {
        if !std::mem::take(&mut self.full) {
            return Ok(());
        }
        step(checker, checks, HashedLeaf::new(&self.leaf), &self.hash)
    }
}

/// Every stored payload of an entry from index `from` on: committed by
/// that entry, matching its commitment, or erased by a redaction entry.
pub(crate) fn check_payloads(
    store: &Store,
    from: u64,
    committed: &crate::check::CheckMap<Hash, u64>,
    redacted_by: &crate::check::CheckMap<Hash, u64>,
    report: &mut VerifyReport,
) -> Result<(), VerifyFailure> {
    let rows = store
        .payloads_from(from)
        .map_err(VerifyFailure::Unreadable)?;
    let mut seen = std::collections::HashSet::new();
    for p in rows {
        let cmt: Hash = p
            .cmt
            .as_slice()
            .try_into()
            .map_err(|_| tampered(p.seq, "payload key is not 32 bytes"))?;
        let by = committed.get(&cmt).copied();
        if by != Some(p.seq) {
            return Err(tampered(
                p.seq,
                format!(
                    "payload {} is not committed by entry {}",
                    hex::encode(cmt),
                    p.seq
                ),
            ));
        }
        seen.insert(cmt);
        match (&p.salt, &p.body) {
            (Some(salt), Some(body)) => {
                if commitment(salt, body) != cmt || body.len() as u64 != p.size {
                    return Err(tampered(
                        p.seq,
                        format!(
                            "payload {} of entry {} does not match its commitment",
                            crate::payload::commit_text(&cmt),
                            p.seq
                        ),
                    ));
                }
                report.payloads_present += 1;
            }
            _ => {
                if redacted_by.get(&cmt).is_none()
                    || p.redacted_seq != redacted_by.get(&cmt).copied()
                {
                    return Err(tampered(
                        p.seq,
                        format!(
                            "payload {} of entry {} was erased without a redaction or expiry entry",
                            crate::payload::commit_text(&cmt),
                            p.seq
                        ),
                    ));
                }
                report.payloads_redacted += 1;
            }
        }
    }
    for (cmt, seq) in committed {
        if !seen.contains(cmt) && !redacted_by.contains_key(cmt) {
            // Checking from `from` on, a leaf may refer to a payload an
            // entry before `from` made (shared payloads): stored under that
            // entry, and checked with it.
            if from > 0
                && store
                    .payload(cmt)
                    .map_err(VerifyFailure::Unreadable)?
                    .is_some_and(|p| p.seq < from)
            {
                continue;
            }
            return Err(tampered(
                *seq,
                format!(
                    "payload {} committed by entry {seq} is missing",
                    crate::payload::commit_text(cmt)
                ),
            ));
        }
    }
    Ok(())
}
