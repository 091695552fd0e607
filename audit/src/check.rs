//! Per-leaf verification shared by the database verifier (`verify_db`) and
//! the offline bundle verifier (`stele-verify`): canonical form, index, log,
//! genesis, hash chain, time order, session sub-chains, intent/result pairing,
//! payload commitments and redactions, and the Merkle tree.
//!
//! It knows nothing about where leaves come from, so one implementation
//! decides what a valid log is.

use std::collections::HashMap;

/// The checker's maps: keyed by leaf-supplied values (commitments, session
/// ids, indices), looked up once or twice per entry. foldhash with a random
/// per-map seed: several times cheaper than SipHash on 32-byte keys, which
/// showed as a tenth of `stele-verify`'s time, and still seeded so a crafted
/// log cannot choose colliding keys in advance.
pub type CheckMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

use crate::event::{EventKind, IntentRole};
use crate::leaf::{parse_hash_b64, Leaf, LeafError};
use crate::leaf_view::{DataView, LeafText, LeafView};
use crate::merkle::{CompletedNode, Frontier, Hash, HashedLeaf};
use crate::payload::COMMIT_PREFIX;

/// The first problem found in a leaf.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("index {index}: {reason}")]
pub struct LeafFailure {
    /// The leaf index.
    pub index: u64,
    /// What is wrong.
    pub reason: String,
}

/// What the checker knows about one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSeen {
    /// Position of the session's newest leaf.
    pub n: u64,
    /// Leaf hash of the session's newest leaf.
    pub head: Hash,
    /// Whether it ended (`session.end` / `session.interrupted`).
    pub ended: bool,
    /// Index of its first leaf.
    pub first: u64,
    /// Index of its newest leaf.
    pub last: u64,
}

/// A redaction entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactionSeen {
    /// Index of the redaction entry.
    pub seq: u64,
    /// How many payloads it erased.
    pub count: usize,
    /// The stated reason.
    pub reason: String,
}

/// A `payload.expiry` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpirySeen {
    /// Index of the expiry entry.
    pub seq: u64,
    /// How many payloads it erased.
    pub count: usize,
    /// The retention class.
    pub class: String,
    /// The class's retention period as configured (`6y`, `12mo`, …).
    pub retention: String,
    /// Payloads made before this time were past their retention.
    pub before: String,
    /// Who ran it.
    pub actor: String,
}

/// What `log.archive` records, as the checker reads it back from a leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSeen {
    /// Index of the `log.archive` entry.
    pub seq: u64,
    /// Entries archived.
    pub through: u64,
    /// Root at `through`.
    pub root: Option<Hash>,
    /// Leaf hash of entry `through − 1`.
    pub prev: Option<Hash>,
    /// Digest of the archive's signed manifest.
    pub bundle: String,
    /// The stated reason.
    pub reason: String,
    /// The keys below the boundary: rotations with their proofs, revocations.
    pub keys: crate::archive_keys::ArchiveKeys,
}

/// An intent with no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    /// Index of the intent.
    pub seq: u64,
    /// Its kind.
    pub kind: EventKind,
}

/// A leaf that passed [`LeafChecker::push`].
#[derive(Debug)]
pub struct Checked<'a> {
    /// Its leaf hash.
    pub hash: Hash,
    bytes: &'a [u8],
    source: Source<'a>,
}

/// How the leaf was read.
#[derive(Debug)]
enum Source<'a> {
    /// By the one-pass scanner.
    Scanned(LeafView<'a>),
    /// By the typed parse (unusual spellings).
    Typed(Box<Leaf>),
}

impl<'a> Checked<'a> {
    /// The fields the checks used.
    pub fn view(&self) -> LeafView<'_> {
        match &self.source {
            Source::Scanned(v) => *v,
            Source::Typed(l) => LeafView::of(l),
        }
    }

    /// The whole typed leaf (parsed now if the scanner read it).
    pub fn into_leaf(self) -> Result<Leaf, LeafError> {
        match self.source {
            Source::Typed(l) => Ok(*l),
            // Already checked canonical: only the typed parse is left.
            Source::Scanned(_) => {
                serde_json::from_slice(self.bytes).map_err(|e| LeafError::Schema(e.to_string()))
            }
        }
    }
}

/// Streaming checker: feed leaves in index order with [`LeafChecker::push`].
#[derive(Debug)]
pub struct LeafChecker {
    origin: String,
    /// The log's verifier key (text form), named by the genesis entry.
    log_key: String,
    /// Index of the first leaf checked: 0, or where [`LeafChecker::resume`]
    /// took up a log whose prefix was checked earlier.
    start: u64,
    frontier: Frontier,
    prev: Option<Hash>,
    /// Sessions by id.
    pub sessions: CheckMap<String, SessionSeen>,
    open: CheckMap<u64, (EventKind, Hash)>,
    /// Payload commitments in index order, each with the index of the
    /// entry committing to it; [`LeafChecker::committed`] makes the map.
    commits: Vec<(Hash, u64)>,
    /// Payload commitment → index of the redaction entry erasing it.
    pub redacted_by: CheckMap<Hash, u64>,
    /// Redaction entries seen.
    pub redactions: Vec<RedactionSeen>,
    /// `payload.expiry` entries seen.
    pub expiries: Vec<ExpirySeen>,
    /// Legal holds, as `hold.place` / `hold.release` entries left them.
    pub holds: crate::holds::HoldBook,
    /// `log.archive` entries seen.
    pub archives: Vec<ArchiveSeen>,
    /// Intents closed as interrupted.
    pub interrupted: u64,
    last_time: Option<(String, String)>,
    first_ts: Option<String>,
    /// The log's keys as its `key.rotation` entries have set them so far.
    pub keys: crate::keys::KeySchedule,
    /// Keys its `key.revocation` entries revoked.
    pub revocations: Vec<crate::keys::Revocation>,
}

impl LeafChecker {
    /// A checker for the log named `origin` whose verifier key (text form)
    /// is `log_key`, starting at index 0.
    pub fn new(origin: &str, log_key: &str) -> Self {
        Self {
            origin: origin.to_string(),
            log_key: log_key.to_string(),
            start: 0,
            frontier: Frontier::new(),
            prev: None,
            sessions: CheckMap::default(),
            open: CheckMap::default(),
            commits: Vec::new(),
            redacted_by: CheckMap::default(),
            redactions: Vec::new(),
            expiries: Vec::new(),
            holds: crate::holds::HoldBook::default(),
            archives: Vec::new(),
            interrupted: 0,
            last_time: None,
            first_ts: None,
            keys: crate::keys::KeySchedule::single(log_key),
            revocations: Vec::new(),
        }
    }

    /// Take up with the key schedule in force at the resumed size (the
    /// genesis key stays the first; see [`crate::keys::KeySchedule::at`]).
    pub fn with_keys(mut self, keys: crate::keys::KeySchedule) -> Self {
        self.keys = keys;
        self
    }

    /// A checker that takes up a log at the size of `frontier` (its
    /// authenticated right edge), after a prefix checked earlier: the
    /// start-up check of what was appended since the last verification.
    /// `prev` is the leaf hash of the entry before. Sessions and intents
    /// that began in the prefix are taken up as the continuing leaves state
    /// them (the prefix is not read); every other rule applies in full.
    pub fn resume(origin: &str, log_key: &str, frontier: Frontier, prev: Option<Hash>) -> Self {
        let mut c = Self::new(origin, log_key);
        c.start = frontier.size();
        c.frontier = frontier;
        c.prev = prev;
        c
    }

    /// Take up with the newest `(boot, ts)` seen before the resumed size,
    /// so time order within a writer boot holds across the resumption.
    pub fn with_last_time(mut self, last: Option<(String, String)>) -> Self {
        self.last_time = last;
        self
    }

    /// The newest `(boot, ts)` checked (for a later [`LeafChecker::with_last_time`]).
    pub fn last_time(&self) -> Option<&(String, String)> {
        self.last_time.as_ref()
    }

    /// The leaf hash of the newest leaf checked (or the resumed one).
    pub fn last_hash(&self) -> Option<Hash> {
        self.prev
    }

    /// The tree's right edge as checked so far.
    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    /// Leaves checked so far (the next expected index).
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Root of the leaves checked so far.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Check the next leaf. `stored_hash`, when the source keeps one, must
    /// equal the recomputed leaf hash. `completed` sees every tree node the
    /// leaf completes (for comparing with stored tiles).
    ///
    /// The leaf is read by [`LeafView::scan`] (one pass, no allocation) and
    /// only when that declines by the typed parse, which decides and words
    /// every parse error.
    pub fn push<'a>(
        &mut self,
        bytes: &'a [u8],
        stored_hash: Option<&[u8]>,
        completed: impl FnMut(CompletedNode),
    ) -> Result<Checked<'a>, LeafFailure> {
        self.push_hashed(HashedLeaf::new(bytes), stored_hash, completed)
    }

    /// [`LeafChecker::push`] of a leaf already hashed (two leaves at hand
    /// are hashed faster together: [`HashedLeaf::pair`]); the checks are
    /// the same, in the same order.
    pub fn push_hashed<'a>(
        &mut self,
        leaf: HashedLeaf<'a>,
        stored_hash: Option<&[u8]>,
        completed: impl FnMut(CompletedNode),
    ) -> Result<Checked<'a>, LeafFailure> {
        self.push_scanned(leaf, stored_hash, completed, LeafView::scan)
    }

    /// [`LeafChecker::push_hashed`], also keeping in `text` the text of the
    /// leaf that the derived views print, read in the same pass (`None`
    /// when the leaf went to the typed parse: [`LeafText::of`] it).
    pub fn push_hashed_text<'a>(
        &mut self,
        leaf: HashedLeaf<'a>,
        stored_hash: Option<&[u8]>,
        completed: impl FnMut(CompletedNode),
        text: &mut Option<LeafText<'a>>,
    ) -> Result<Checked<'a>, LeafFailure> {
        *text = None;
        self.push_scanned(leaf, stored_hash, completed, |b| {
            LeafView::scan_text(b, text)
        })
    }

    fn push_scanned<'a>(
        &mut self,
        leaf: HashedLeaf<'a>,
        stored_hash: Option<&[u8]>,
        completed: impl FnMut(CompletedNode),
        scan: impl FnOnce(&'a [u8]) -> Option<LeafView<'a>>,
    ) -> Result<Checked<'a>, LeafFailure> {
        let i = self.frontier.size();
        let t = |reason: String| LeafFailure { index: i, reason };
        let bytes = leaf.bytes();
        let source = match scan(bytes) {
            Some(v) => Source::Scanned(v),
            None => Source::Typed(Box::new(
                Leaf::parse_canonical(bytes).map_err(|e| t(e.to_string()))?,
            )),
        };
        let hash = *leaf.hash();
        if stored_hash.is_some_and(|s| s != hash) {
            return Err(t("leaf bytes do not match the stored leaf hash".into()));
        }
        let checked = Checked {
            hash,
            bytes,
            source,
        };
        self.check(&checked.view(), &hash, bytes).map_err(t)?;
        self.frontier.push(hash, completed);
        self.prev = Some(hash);
        Ok(checked)
    }

    /// [`LeafChecker::push`], then the typed leaf (for callers that use
    /// every field, such as the exporter).
    pub fn push_leaf(
        &mut self,
        bytes: &[u8],
        stored_hash: Option<&[u8]>,
        completed: impl FnMut(CompletedNode),
    ) -> Result<(Leaf, Hash), LeafFailure> {
        let i = self.frontier.size();
        let c = self.push(bytes, stored_hash, completed)?;
        let h = c.hash;
        let leaf = c.into_leaf().map_err(|e| LeafFailure {
            index: i,
            reason: e.to_string(),
        })?;
        Ok((leaf, h))
    }

    fn check(&mut self, leaf: &LeafView<'_>, h: &Hash, bytes: &[u8]) -> Result<(), String> {
        let i = self.frontier.size();
        if leaf.seq != i {
            return Err(format!("leaf claims index {}", leaf.seq));
        }
        if leaf.log != self.origin {
            return Err(format!("leaf belongs to log {:?}", leaf.log));
        }
        crate::rules::check_values_but_links(leaf, &self.log_key)?;
        if (i == 0) != (leaf.kind == EventKind::LogGenesis) {
            return Err("log.genesis must be exactly the first entry".into());
        }
        if leaf.prev.map(parse_hash_b64) != self.prev.map(Some) {
            return Err("hash chain broken: prev does not name the previous leaf".into());
        }
        if let Some((boot, ts)) = &self.last_time {
            if boot == leaf.boot && leaf.ts < ts.as_str() {
                return Err("time went backwards within one writer boot".into());
            }
        }
        self.check_session(leaf, h)?;
        self.check_intent(leaf, h)?;
        for p in leaf.commits() {
            let c = commit_hash(&p).ok_or_else(|| format!("bad commitment {p:?}"))?;
            self.commits.push((c, i));
        }
        if matches!(leaf.kind, EventKind::KeyRotation | EventKind::KeyRevocation) {
            crate::keys::check_entry(leaf, &self.origin, &mut self.keys, &mut self.revocations)?;
        }
        match leaf.kind {
            EventKind::Redaction => {
                let d = self.erasure_data(leaf, i)?;
                self.redactions.push(RedactionSeen {
                    seq: i,
                    count: d.count,
                    reason: d.text("reason"),
                });
            }
            // retention, legal hold and archival
            EventKind::PayloadExpiry => {
                let d = self.erasure_data(leaf, i)?;
                self.expiries.push(ExpirySeen {
                    seq: i,
                    count: d.count,
                    class: d.text("class"),
                    retention: d.text("retention"),
                    before: d.text("before"),
                    actor: crate::holds::EntryAttrs::of_leaf(bytes)?.principal,
                });
            }
            EventKind::HoldPlace | EventKind::HoldRelease => {
                self.hold_entry(leaf, i, bytes)?;
            }
            EventKind::LogArchive => {
                let seen = archive_seen(leaf, i)?;
                self.archives.push(seen);
            }
            _ => {}
        }
        if self.first_ts.is_none() {
            self.first_ts = Some(leaf.ts.to_string());
        }
        match &mut self.last_time {
            Some((b, ts)) if b == leaf.boot => {
                ts.clear();
                ts.push_str(leaf.ts);
            }
            other => *other = Some((leaf.boot.to_string(), leaf.ts.to_string())),
        }
        Ok(())
    }

    /// Payload commitment → index of the first entry that lists it: the entry that
    /// committed it (later entries listing the same commitment refer to it, and the payload
    /// is stored once, under the first).
    ///
    /// Built at the end rather than entry by entry: a million commitments
    /// make a table far larger than the caches, and inserting as entries
    /// stream cost two cache misses each, a tenth of `stele-verify`'s
    /// time. In one loop here the misses of successive inserts overlap.
    pub fn committed(&self) -> CheckMap<Hash, u64> {
        let mut m = CheckMap::with_capacity_and_hasher(self.commits.len(), Default::default());
        for (c, seq) in &self.commits {
            m.entry(*c).or_insert(*seq);
        }
        m
    }

    /// The rules about commitments across the whole log, once every leaf
    /// is checked (`committed` = [`LeafChecker::committed`]): no leaf lists
    /// a commitment twice (a later leaf may list one an earlier leaf made:
    /// a reference to the same stored body), and every commitment a
    /// redaction names was made by an earlier leaf.
    pub fn check_commitments(&self, committed: &CheckMap<Hash, u64>) -> Result<(), LeafFailure> {
        if committed.len() != self.commits.len() {
            // `commits` is in index order: a repeat within one leaf is a
            // repeat of the previous index's entry in `seen`.
            let mut seen: CheckMap<Hash, u64> = CheckMap::default();
            for (c, i) in &self.commits {
                if seen.insert(*c, *i) == Some(*i) {
                    return Err(LeafFailure {
                        index: *i,
                        reason: format!(
                            "payload commitment {} is listed twice in entry {i}",
                            crate::payload::commit_text(c)
                        ),
                    });
                }
            }
        }
        for (c, r) in &self.redacted_by {
            let by = committed.get(c);
            // A resumed checker has not seen commitments made before it.
            if by.is_none() && self.start > 0 {
                continue;
            }
            if by.is_none_or(|by| by >= r) {
                return Err(LeafFailure {
                    index: *r,
                    reason: format!(
                        "redaction names {}, which no earlier entry committed",
                        crate::payload::commit_text(c)
                    ),
                });
            }
        }
        Ok(())
    }

    /// First and last timestamps seen.
    pub fn time_span(&self) -> Option<(String, String)> {
        self.first_ts
            .clone()
            .zip(self.last_time.as_ref().map(|(_, ts)| ts.clone()))
    }

    /// Intents without a result, in index order.
    pub fn unfinished(&self) -> Vec<Unfinished> {
        let mut v: Vec<Unfinished> = self
            .open
            .iter()
            .map(|(s, (k, _))| Unfinished { seq: *s, kind: *k })
            .collect();
        v.sort_by_key(|u| u.seq);
        v
    }

    fn check_session(&mut self, leaf: &LeafView<'_>, h: &Hash) -> Result<(), String> {
        let Some(s) = &leaf.session else {
            if matches!(
                leaf.kind,
                EventKind::SessionStart | EventKind::SessionEnd | EventKind::SessionInterrupted
            ) {
                return Err(format!("{} without a session", leaf.kind));
            }
            return Ok(());
        };
        let ends = matches!(
            leaf.kind,
            EventKind::SessionEnd | EventKind::SessionInterrupted
        );
        match self.sessions.get_mut(s.id) {
            // A session that began before a resumed checker's start.
            None if self.start > 0 && leaf.kind != EventKind::SessionStart && s.n > 0 => {
                crate::rules::hash_field("session.prev", s.prev.unwrap_or_default())?;
                let seen = SessionSeen {
                    n: s.n,
                    head: *h,
                    ended: ends,
                    first: leaf.seq,
                    last: leaf.seq,
                };
                self.sessions.insert(s.id.to_string(), seen);
            }
            None => {
                if leaf.kind != EventKind::SessionStart || s.n != 0 || s.prev.is_some() {
                    return Err(format!(
                        "session {} does not begin with session.start at n=0",
                        s.id
                    ));
                }
                let seen = SessionSeen {
                    n: 0,
                    head: *h,
                    ended: ends,
                    first: leaf.seq,
                    last: leaf.seq,
                };
                self.sessions.insert(s.id.to_string(), seen);
            }
            Some(seen) => {
                if seen.ended {
                    return Err(format!("session {} continues after its end", s.id));
                }
                if leaf.kind == EventKind::SessionStart {
                    return Err(format!("session {} starts twice", s.id));
                }
                if s.n != seen.n + 1 || s.prev.and_then(parse_hash_b64) != Some(seen.head) {
                    return Err(format!(
                        "session {} sub-chain broken (n={}, expected {})",
                        s.id,
                        s.n,
                        seen.n + 1
                    ));
                }
                seen.n = s.n;
                seen.head = *h;
                seen.ended = ends;
                seen.last = leaf.seq;
            }
        }
        Ok(())
    }

    fn check_intent(&mut self, leaf: &LeafView<'_>, h: &Hash) -> Result<(), String> {
        let want = match leaf.kind.role() {
            IntentRole::Intent => {
                self.open.insert(leaf.seq, (leaf.kind, *h));
                return Ok(());
            }
            IntentRole::Result(k) => Some(k),
            IntentRole::Plain if leaf.kind == EventKind::Interrupted => None,
            IntentRole::Plain => return Ok(()),
        };
        let r = leaf
            .refs
            .ok_or_else(|| format!("{} does not name its intent", leaf.kind))?;
        let Some((kind, ih)) = self.open.remove(&r.intent_seq) else {
            if r.intent_seq < self.start {
                // Opened before a resumed checker's start: not seen here.
                crate::rules::hash_field("refs.intent_leaf", r.intent_leaf)?;
                self.interrupted += u64::from(leaf.kind == EventKind::Interrupted);
                return Ok(());
            }
            return Err(format!(
                "{} names intent {} which is not open",
                leaf.kind, r.intent_seq
            ));
        };
        if want.is_some_and(|w| w != kind) || parse_hash_b64(r.intent_leaf) != Some(ih) {
            return Err(format!(
                "{} does not match intent {}",
                leaf.kind, r.intent_seq
            ));
        }
        if leaf.kind == EventKind::Interrupted {
            self.interrupted += 1;
        }
        Ok(())
    }

    /// A redaction's or expiry's commitments, each erased once.
    fn erasure_data(&mut self, leaf: &LeafView<'_>, i: u64) -> Result<Erasure, String> {
        let d = data_object(leaf)?;
        let commits = d
            .get("commits")
            .and_then(|c| c.as_array())
            .ok_or_else(|| format!("{} without commits", leaf.kind))?;
        for c in commits {
            let h = c
                .as_str()
                .and_then(commit_hash)
                .ok_or_else(|| format!("{} names a bad commitment", leaf.kind))?;
            if let Some(before) = self.redacted_by.insert(h, i) {
                return Err(format!(
                    "{} names {}, already erased by entry {before}",
                    leaf.kind,
                    c.as_str().unwrap_or_default()
                ));
            }
        }
        Ok(Erasure {
            count: commits.len(),
            data: d,
        })
    }

    /// What the `log.archive` leaf `bytes` records (not checked otherwise:
    /// for a leaf verified already).
    pub fn archive_of(&mut self, bytes: &[u8]) -> Result<ArchiveSeen, String> {
        let typed;
        let view = match LeafView::scan(bytes) {
            Some(v) => v,
            None => {
                typed = Leaf::parse_canonical(bytes).map_err(|e| e.to_string())?;
                LeafView::of(&typed)
            }
        };
        if view.kind != EventKind::LogArchive {
            return Err(format!(
                "entry {} is a {}, not a log.archive",
                view.seq, view.kind
            ));
        }
        archive_seen(&view, view.seq)
    }

    /// Replay a `hold.place` / `hold.release` (dual control). A resumed
    /// checker cannot judge the release of a hold placed before its start.
    fn hold_entry(&mut self, leaf: &LeafView<'_>, i: u64, bytes: &[u8]) -> Result<(), String> {
        let d = data_object(leaf)?;
        let principal = crate::holds::EntryAttrs::of_leaf(bytes)?.principal;
        if leaf.kind == EventKind::HoldRelease && self.start > 0 {
            let hold = d.get("hold").and_then(|v| v.as_u64()).unwrap_or(0);
            if hold < self.start && !self.holds.holds.contains_key(&hold) {
                return Ok(());
            }
        }
        self.holds.replay(leaf.kind, i, &principal, &d)
    }
}

/// What a `log.archive` leaf at index `i` records.
fn archive_seen(leaf: &LeafView<'_>, i: u64) -> Result<ArchiveSeen, String> {
    let d = data_object(leaf)?;
    let through = d
        .get("through")
        .and_then(|v| v.as_u64())
        .unwrap_or(u64::MAX);
    if through > i {
        return Err(format!(
            "log.archive names {through} archived entries, more than precede it"
        ));
    }
    let hash = |k: &str| d.get(k).and_then(|v| v.as_str()).and_then(parse_hash_b64);
    let text = |k: &str| {
        d.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let keys = match d.get("keys") {
        None => crate::archive_keys::ArchiveKeys::default(),
        Some(v) => {
            serde_json::from_value(v.clone()).map_err(|e| format!("log.archive keys: {e}"))?
        }
    };
    Ok(ArchiveSeen {
        seq: i,
        through,
        root: hash("root"),
        prev: hash("prev"),
        bundle: text("bundle"),
        reason: text("reason"),
        keys,
    })
}

/// The data of a redaction or expiry, read once.
struct Erasure {
    count: usize,
    data: serde_json::Map<String, serde_json::Value>,
}

impl Erasure {
    fn text(&self, k: &str) -> String {
        self.data
            .get(k)
            .and_then(|r| r.as_str())
            .unwrap_or_default()
            .to_string()
    }
}

/// A leaf's `data` as an object (the kinds that call this require one).
fn data_object(leaf: &LeafView<'_>) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let v = match leaf
        .data
        .ok_or_else(|| format!("{} without data", leaf.kind))?
    {
        DataView::Typed(v) => v.clone(),
        DataView::Raw(b) => serde_json::from_slice(b).map_err(|e| e.to_string())?,
    };
    match v {
        serde_json::Value::Object(m) => Ok(m),
        _ => Err(format!("{} data must be an object", leaf.kind)),
    }
}

/// The hash of a commitment as leaves write it: `sha256s:` and the
/// canonical base64 of 32 bytes (nothing else is a commitment in a leaf).
pub fn commit_hash(text: &str) -> Option<Hash> {
    parse_hash_b64(text.strip_prefix(COMMIT_PREFIX)?)
}
