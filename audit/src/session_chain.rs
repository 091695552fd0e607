//! The checks one session's entries allow on their own, without the rest
//! of the log: each leaf's form, schema and values (the rules every
//! verifier applies, [`crate::rules`]), and the session sub-chain — n from
//! 0 without a gap, each `session.prev` the hash of the session's previous
//! leaf, `session.start` first and nothing after `session.end` /
//! `session.interrupted` — with time order within a writer boot and the
//! pairing of results with the session's intents.
//!
//! The exporter runs it over what the index by session gives it (fail
//! closed on damage); the session-bundle verifier over what a bundle holds.

use std::collections::BTreeMap;

use crate::check::{commit_hash, SessionSeen};
use crate::event::{EventKind, IntentRole};
use crate::leaf::{hash_b64, Leaf};
use crate::leaf_view::LeafView;
use crate::merkle::{leaf_hash, Hash};

/// One session's entries, checked in session order.
#[derive(Debug)]
pub struct SessionChain {
    origin: String,
    log_key: String,
    id: String,
    seen: Option<SessionSeen>,
    /// Index → (kind, leaf hash) of every entry pushed.
    entries: BTreeMap<u64, (EventKind, Hash)>,
    /// Intents of the session without a result yet.
    open: BTreeMap<u64, (EventKind, Hash)>,
    /// Results (index) that name an intent outside the session (index).
    pub outside: Vec<(u64, u64)>,
    last_time: Option<(String, String)>,
}

/// The first problem found, at which entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {index}: {reason}")]
pub struct ChainFailure {
    /// The entry's index in the log.
    pub index: u64,
    /// What is wrong.
    pub reason: String,
}

impl SessionChain {
    /// A chain of session `id` in the log `origin` whose key (text form)
    /// is `log_key`.
    pub fn new(origin: &str, log_key: &str, id: &str) -> Self {
        Self {
            origin: origin.to_string(),
            log_key: log_key.to_string(),
            id: id.to_string(),
            seen: None,
            entries: BTreeMap::new(),
            open: BTreeMap::new(),
            outside: Vec::new(),
            last_time: None,
        }
    }

    /// Check the session's next leaf, stated to be at log index `seq`;
    /// returns it typed, with its leaf hash (recomputed from the bytes).
    pub fn push(&mut self, seq: u64, bytes: &[u8]) -> Result<(Leaf, Hash), ChainFailure> {
        let fail = |reason: String| ChainFailure { index: seq, reason };
        let leaf = Leaf::parse_canonical(bytes).map_err(|e| fail(e.to_string()))?;
        let h = leaf_hash(bytes);
        let view = LeafView::of(&leaf);
        crate::rules::check_values(&view, &self.log_key).map_err(fail)?;
        if leaf.seq != seq {
            return Err(fail(format!("leaf claims index {}", leaf.seq)));
        }
        if leaf.log != self.origin {
            return Err(fail(format!("leaf belongs to log {:?}", leaf.log)));
        }
        if let Some(s) = &self.seen {
            if seq <= s.last {
                return Err(fail(format!(
                    "comes after entry {} in the session but is not later in the log",
                    s.last
                )));
            }
        }
        self.link(&leaf, &h).map_err(fail)?;
        self.time(&leaf).map_err(fail)?;
        self.intent(&leaf, &h).map_err(fail)?;
        let mut commits = std::collections::BTreeSet::new();
        for p in &leaf.payload {
            let c = commit_hash(&p.commit).ok_or_else(|| fail("bad commitment".into()))?;
            if !commits.insert(c) {
                return Err(fail(format!(
                    "payload commitment {} is listed twice",
                    p.commit
                )));
            }
        }
        self.entries.insert(seq, (leaf.kind, h));
        Ok((leaf, h))
    }

    /// The session as checked so far (`None` before its first entry).
    pub fn seen(&self) -> Option<&SessionSeen> {
        self.seen.as_ref()
    }

    /// Intents of the session without a result, by index.
    pub fn unfinished(&self) -> impl Iterator<Item = (u64, EventKind)> + '_ {
        self.open.iter().map(|(s, (k, _))| (*s, *k))
    }

    /// Whether entry `seq` was pushed, with its kind and hash.
    pub fn entry(&self, seq: u64) -> Option<(EventKind, Hash)> {
        self.entries.get(&seq).copied()
    }

    fn link(&mut self, leaf: &Leaf, h: &Hash) -> Result<(), String> {
        let s = leaf.session.as_ref().ok_or_else(|| {
            format!(
                "{} belongs to no session, not to session {}",
                leaf.kind, self.id
            )
        })?;
        if s.id != self.id {
            return Err(format!(
                "belongs to session {:?}, not to session {}",
                s.id, self.id
            ));
        }
        let ends = matches!(
            leaf.kind,
            EventKind::SessionEnd | EventKind::SessionInterrupted
        );
        match &mut self.seen {
            None => {
                if leaf.kind != EventKind::SessionStart || s.n != 0 || s.prev.is_some() {
                    return Err(format!(
                        "session {} does not begin with session.start at n=0 (this is {} at n={})",
                        self.id, leaf.kind, s.n
                    ));
                }
                self.seen = Some(SessionSeen {
                    n: 0,
                    head: *h,
                    ended: ends,
                    first: leaf.seq,
                    last: leaf.seq,
                });
            }
            Some(seen) => {
                if seen.ended {
                    return Err(format!(
                        "session {} continues after its end (entry {})",
                        self.id, seen.last
                    ));
                }
                if leaf.kind == EventKind::SessionStart {
                    return Err(format!("session {} starts twice", self.id));
                }
                if s.n != seen.n + 1 {
                    return Err(format!(
                        "session {} sub-chain has a gap: n={} follows n={} (entry {})",
                        self.id, s.n, seen.n, seen.last
                    ));
                }
                if s.prev.as_deref() != Some(hash_b64(&seen.head).as_str()) {
                    return Err(format!(
                        "session {} sub-chain broken: session.prev does not name entry {}",
                        self.id, seen.last
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

    fn time(&mut self, leaf: &Leaf) -> Result<(), String> {
        if let Some((boot, ts)) = &self.last_time {
            if *boot == leaf.boot && leaf.ts < *ts {
                return Err("time went backwards within one writer boot".into());
            }
        }
        self.last_time = Some((leaf.boot.clone(), leaf.ts.clone()));
        Ok(())
    }

    fn intent(&mut self, leaf: &Leaf, h: &Hash) -> Result<(), String> {
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
            .as_ref()
            .ok_or_else(|| format!("{} does not name its intent", leaf.kind))?;
        if r.intent_seq >= leaf.seq {
            return Err(format!(
                "{} names intent {}, which is not before it",
                leaf.kind, r.intent_seq
            ));
        }
        match self.open.remove(&r.intent_seq) {
            Some((kind, ih)) => {
                if want.is_some_and(|w| w != kind)
                    || crate::leaf::parse_hash_b64(&r.intent_leaf) != Some(ih)
                {
                    return Err(format!(
                        "{} does not match intent {} (kind or leaf hash)",
                        leaf.kind, r.intent_seq
                    ));
                }
            }
            None if self.entries.contains_key(&r.intent_seq) => {
                return Err(format!(
                    "{} names entry {} of the session, which is not an open intent",
                    leaf.kind, r.intent_seq
                ));
            }
            // An intent of no session or another one: not in this chain.
            None => self.outside.push((leaf.seq, r.intent_seq)),
        }
        Ok(())
    }
}
