//! Full verification of an audit database: re-derive everything from the
//! stored leaves and compare with what was signed.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

use stele_attest::{Checkpoint, NoteVerifier};

use crate::error::AuditError;
use crate::event::{EventKind, IntentRole};
use crate::leaf::{parse_hash_b64, Leaf};
use crate::merkle::{leaf_hash, Frontier, Hash};
use crate::payload::{commitment, parse_commit};
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
    VerifyFailure::Tampered { index: index.into(), reason: reason.into() }
}

/// An intent with no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    /// Index of the intent.
    pub seq: u64,
    /// Its kind.
    pub kind: EventKind,
}

/// A redaction found in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactionSeen {
    /// Index of the redaction entry.
    pub seq: u64,
    /// How many payloads it erased.
    pub count: usize,
    /// The stated reason.
    pub reason: String,
}

/// What a successful verification found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Log origin.
    pub origin: String,
    /// Entries verified.
    pub entries: u64,
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
    /// Intents never closed by a result or `interrupted`.
    pub unfinished: Vec<Unfinished>,
    /// Intents closed as interrupted.
    pub interrupted: u64,
    /// First and last timestamps.
    pub time_span: Option<(String, String)>,
    /// Whether an outside checkpoint was checked, and its size.
    pub anchor_size: Option<u64>,
    /// Seconds spent.
    pub seconds: f64,
}

struct SessionSeen {
    n: u64,
    head: Hash,
    ended: bool,
}

/// Verify the database at `path` against the trusted `verifier` key and an
/// optional checkpoint held elsewhere.
pub fn verify_db(path: &Path, verifier: &NoteVerifier, anchor: Option<&str>) -> Result<VerifyReport, VerifyFailure> {
    let started = Instant::now();
    let store = Store::open(path).map_err(VerifyFailure::Unreadable)?;
    let un = VerifyFailure::Unreadable;
    let origin = store.meta_required("origin").map_err(un)?;
    let vkey = store.meta_required("vkey").map_err(VerifyFailure::Unreadable)?;
    if vkey != verifier.to_string() {
        return Err(tampered(None, format!("the log names key {vkey}, not the trusted key {verifier}")));
    }
    if origin != verifier.name() {
        return Err(tampered(None, format!("origin {origin:?} differs from the key name")));
    }
    // Every signed size must match the recomputed root at that size.
    let mut expect: BTreeMap<u64, (Hash, &'static str)> = BTreeMap::new();
    let mut report = VerifyReport { origin: origin.clone(), ..Default::default() };
    let notes = store.checkpoints().map_err(VerifyFailure::Unreadable)?;
    for (size, note) in &notes {
        let (cp, _) = Checkpoint::open(note, verifier).map_err(|e| {
            tampered(size.checked_sub(1), format!("checkpoint for size {size} does not verify: {e}"))
        })?;
        if cp.size != *size || cp.origin != origin {
            return Err(tampered(None, format!("checkpoint row {size} holds size {} of {:?}", cp.size, cp.origin)));
        }
        expect.insert(cp.size, (cp.root, "stored checkpoint"));
        report.checkpoints += 1;
    }
    let Some((&latest, &(latest_root, _))) = expect.iter().next_back() else {
        return Err(tampered(None, "the log has no signed checkpoint"));
    };
    if let Some(a) = anchor {
        let (cp, _) = Checkpoint::open(a, verifier)
            .map_err(|e| tampered(None, format!("the checkpoint held elsewhere does not verify: {e}")))?;
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
                return Err(tampered(cp.size.checked_sub(1), "a stored checkpoint contradicts the one held elsewhere (fork)"));
            }
        }
        expect.insert(cp.size, (cp.root, "checkpoint held elsewhere"));
        report.anchor_size = Some(cp.size);
    }

    let mut frontier = Frontier::new();
    let mut prev: Option<Hash> = None;
    let mut scratch = Vec::with_capacity(2048);
    let mut sessions: HashMap<String, SessionSeen> = HashMap::new();
    let mut open: HashMap<u64, (EventKind, Hash)> = HashMap::new();
    let mut committed: HashMap<Hash, u64> = HashMap::new();
    let mut redacted_by: HashMap<Hash, u64> = HashMap::new();
    let mut last_time: Option<(String, String)> = None;
    let mut first_ts: Option<String> = None;
    let mut checks = expect.iter().peekable();

    store
        .for_each_entry(0, u64::MAX, |seq, bytes, stored_hash| {
            let i = frontier.size();
            let t = |r: String| AuditError::Integrity { index: i, reason: r };
            if seq != i {
                return Err(t(format!("entry {i} is missing (the next stored entry is {seq})")));
            }
            let leaf = Leaf::decode_canonical(bytes, &mut scratch).map_err(|e| t(e.to_string()))?;
            let h = leaf_hash(bytes);
            if stored_hash != h {
                return Err(t("leaf bytes do not match the stored leaf hash".into()));
            }
            if leaf.seq != i {
                return Err(t(format!("leaf claims index {}", leaf.seq)));
            }
            if leaf.log != origin {
                return Err(t(format!("leaf belongs to log {:?}", leaf.log)));
            }
            if (i == 0) != (leaf.kind == EventKind::LogGenesis) {
                return Err(t("log.genesis must be exactly the first entry".into()));
            }
            if leaf.prev.as_deref().map(parse_hash_b64) != prev.map(Some) {
                return Err(t("hash chain broken: prev does not name the previous leaf".into()));
            }
            if let Some((boot, ts)) = &last_time {
                if *boot == leaf.boot && leaf.ts < *ts {
                    return Err(t("time went backwards within one writer boot".into()));
                }
            }
            check_session(&leaf, &h, &mut sessions).map_err(t)?;
            check_intent(&leaf, &h, &mut open, &mut report).map_err(t)?;
            for p in &leaf.payload {
                let c = parse_commit(&p.commit).ok_or_else(|| t(format!("bad commitment {:?}", p.commit)))?;
                committed.insert(c, i);
            }
            if leaf.kind == EventKind::Redaction {
                let (count, reason) = redaction_data(&leaf, i, &mut redacted_by).map_err(t)?;
                report.redactions.push(RedactionSeen { seq: i, count, reason });
            }
            if first_ts.is_none() {
                first_ts = Some(leaf.ts.clone());
            }
            last_time = Some((leaf.boot, leaf.ts));
            frontier.push(h, |_| {});
            prev = Some(h);
            while let Some((&size, &(root, what))) = checks.peek() {
                if size > frontier.size() {
                    break;
                }
                if size == frontier.size() && frontier.root() != root {
                    return Err(AuditError::Integrity {
                        index: size - 1,
                        reason: format!("recomputed root at size {size} differs from the {what}"),
                    });
                }
                checks.next();
            }
            Ok(())
        })
        .map_err(|e| match e {
            AuditError::Integrity { index, reason } => tampered(index, reason),
            other => VerifyFailure::Unreadable(other),
        })?;

    let size = frontier.size();
    if size < latest {
        return Err(tampered(size, format!("the newest checkpoint covers {latest} entries but only {size} are stored")));
    }
    if size > latest {
        return Err(tampered(latest, format!("{} entries after the newest signed checkpoint", size - latest)));
    }
    if frontier.root() != latest_root {
        return Err(tampered(size.checked_sub(1), "root differs from the newest checkpoint"));
    }
    check_payloads(&store, &committed, &redacted_by, &mut report)?;
    report.entries = size;
    report.root = crate::leaf::hash_b64(&latest_root);
    report.sessions = sessions.len() as u64;
    report.open_sessions = sessions.values().filter(|s| !s.ended).count() as u64;
    let mut unfinished: Vec<Unfinished> = open.into_iter().map(|(seq, (kind, _))| Unfinished { seq, kind }).collect();
    unfinished.sort_by_key(|u| u.seq);
    report.unfinished = unfinished;
    report.time_span = first_ts.zip(last_time.map(|(_, ts)| ts));
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn check_session(leaf: &Leaf, h: &Hash, sessions: &mut HashMap<String, SessionSeen>) -> Result<(), String> {
    let Some(s) = &leaf.session else {
        if matches!(leaf.kind, EventKind::SessionStart | EventKind::SessionEnd | EventKind::SessionInterrupted) {
            return Err(format!("{} without a session", leaf.kind));
        }
        return Ok(());
    };
    let ends = matches!(leaf.kind, EventKind::SessionEnd | EventKind::SessionInterrupted);
    match sessions.get_mut(&s.id) {
        None => {
            if leaf.kind != EventKind::SessionStart || s.n != 0 || s.prev.is_some() {
                return Err(format!("session {} does not begin with session.start at n=0", s.id));
            }
            sessions.insert(s.id.clone(), SessionSeen { n: 0, head: *h, ended: ends });
        }
        Some(seen) => {
            if seen.ended {
                return Err(format!("session {} continues after its end", s.id));
            }
            if leaf.kind == EventKind::SessionStart {
                return Err(format!("session {} starts twice", s.id));
            }
            if s.n != seen.n + 1 || s.prev.as_deref().and_then(parse_hash_b64) != Some(seen.head) {
                return Err(format!("session {} sub-chain broken (n={}, expected {})", s.id, s.n, seen.n + 1));
            }
            seen.n = s.n;
            seen.head = *h;
            seen.ended = ends;
        }
    }
    Ok(())
}

fn check_intent(
    leaf: &Leaf,
    h: &Hash,
    open: &mut HashMap<u64, (EventKind, Hash)>,
    report: &mut VerifyReport,
) -> Result<(), String> {
    let want = match leaf.kind.role() {
        IntentRole::Intent => {
            open.insert(leaf.seq, (leaf.kind, *h));
            return Ok(());
        }
        IntentRole::Result(k) => Some(k),
        IntentRole::Plain if leaf.kind == EventKind::Interrupted => None,
        IntentRole::Plain => return Ok(()),
    };
    let r = leaf.refs.as_ref().ok_or_else(|| format!("{} does not name its intent", leaf.kind))?;
    let (kind, ih) = open
        .remove(&r.intent_seq)
        .ok_or_else(|| format!("{} names intent {} which is not open", leaf.kind, r.intent_seq))?;
    if want.is_some_and(|w| w != kind) || parse_hash_b64(&r.intent_leaf) != Some(ih) {
        return Err(format!("{} does not match intent {}", leaf.kind, r.intent_seq));
    }
    if leaf.kind == EventKind::Interrupted {
        report.interrupted += 1;
    }
    Ok(())
}

fn redaction_data(leaf: &Leaf, i: u64, redacted_by: &mut HashMap<Hash, u64>) -> Result<(usize, String), String> {
    let d = leaf.data.as_ref().ok_or("redaction without data")?;
    let commits = d.get("commits").and_then(|c| c.as_array()).ok_or("redaction without commits")?;
    for c in commits {
        let h = c.as_str().and_then(parse_commit).ok_or("redaction names a bad commitment")?;
        redacted_by.insert(h, i);
    }
    let reason = d.get("reason").and_then(|r| r.as_str()).unwrap_or_default().to_string();
    Ok((commits.len(), reason))
}

fn check_payloads(
    store: &Store,
    committed: &HashMap<Hash, u64>,
    redacted_by: &HashMap<Hash, u64>,
    report: &mut VerifyReport,
) -> Result<(), VerifyFailure> {
    let rows = store.payloads().map_err(VerifyFailure::Unreadable)?;
    let mut seen = std::collections::HashSet::new();
    for p in rows {
        let cmt: Hash = p.cmt.as_slice().try_into().map_err(|_| tampered(p.seq, "payload key is not 32 bytes"))?;
        let by = committed.get(&cmt).copied();
        if by != Some(p.seq) {
            return Err(tampered(p.seq, format!("payload {} is not committed by entry {}", hex::encode(cmt), p.seq)));
        }
        seen.insert(cmt);
        match (&p.salt, &p.body) {
            (Some(salt), Some(body)) => {
                if commitment(salt, body) != cmt || body.len() as u64 != p.size {
                    return Err(tampered(p.seq, format!("payload {} of entry {} does not match its commitment", crate::payload::commit_text(&cmt), p.seq)));
                }
                report.payloads_present += 1;
            }
            _ => {
                if redacted_by.get(&cmt).is_none() || p.redacted_seq != redacted_by.get(&cmt).copied() {
                    return Err(tampered(p.seq, format!("payload {} of entry {} was erased without a redaction entry", crate::payload::commit_text(&cmt), p.seq)));
                }
                report.payloads_redacted += 1;
            }
        }
    }
    for (cmt, seq) in committed {
        if !seen.contains(cmt) && !redacted_by.contains_key(cmt) {
            return Err(tampered(*seq, format!("payload {} committed by entry {seq} is missing", crate::payload::commit_text(cmt))));
        }
    }
    Ok(())
}
