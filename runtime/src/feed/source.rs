//! Reading the log for a sink, as a read-only SQLite reader (never the
//! writer's lock, never a write): its size, its newest signed checkpoint,
//! the verification of a range against it, and the OCSF records of a range.
//!
//! Ranges are read in chunks of [`CHUNK`] entries, each its own short read
//! transaction, so a slow receiver never holds a snapshot open (which would
//! keep the writer's WAL from being checkpointed). Entries below a size the
//! feed has seen never change: the log is append-only (triggers refuse
//! UPDATE and DELETE) and what was read is verified against a signature.

use std::path::Path;

use stele_attest::NoteVerifier;
use stele_audit::check::LeafChecker;
use stele_audit::export::ocsf::{write_event, OcsfOrigin};
use stele_audit::leaf::Leaf;
use stele_audit::leaf_view::LeafText;
use stele_audit::merkle::Hash;
use stele_audit::Store;

use super::alerts::{epoch_ms, Anchor, DetectorState, Finding};
use super::config::AlertRules;
use super::cursor::VerifiedPrefix;
use super::record::{FeedRecord, RecordKind};
use super::FeedError;

/// Entries per read transaction.
pub const CHUNK: u64 = 4096;

/// A log opened for feeding.
#[derive(Debug)]
pub struct LogSource {
    store: Store,
    verifier: NoteVerifier,
    origin: String,
    ocsf_origin: OcsfOrigin,
}

/// Why a range did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    /// First index of the range.
    pub from: u64,
    /// End of the range.
    pub to: u64,
    /// What is wrong.
    pub why: String,
}

impl LogSource {
    /// Open `db` read-only. `trusted` must be one of the log's keys (its
    /// genesis key or one it rotated to) and carry its origin; which key
    /// signs which checkpoint is then taken from the log's own
    /// `key.rotation` entries as they are verified.
    pub fn open(db: &Path, trusted: &NoteVerifier) -> Result<Self, FeedError> {
        let store = Store::open(db)?;
        let origin = store.meta_required("origin")?;
        let keys = store.key_schedule()?;
        let known = keys.ranges().iter().any(|r| r.key == trusted.to_string());
        if !known || origin != trusted.name() {
            return Err(FeedError::WrongKey {
                db: db.to_path_buf(),
                log_key: keys
                    .ranges()
                    .iter()
                    .map(|r| r.key.as_str())
                    .collect::<Vec<_>>()
                    .join(" then "),
            });
        }
        Ok(Self {
            ocsf_origin: OcsfOrigin::new(&origin),
            store,
            verifier: trusted.clone(),
            origin,
        })
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Number of entries.
    pub fn size(&self) -> Result<u64, FeedError> {
        Ok(self.store.size()?)
    }

    /// Leaf hash and time of entry `seq`.
    pub fn entry_meta(&self, seq: u64) -> Result<(Hash, String), FeedError> {
        let e = self.store.entry(seq)?;
        let hash: Hash = e.leaf_hash.as_slice().try_into().map_err(|_| {
            FeedError::Read(format!("entry {seq}: stored leaf hash is not 32 bytes"))
        })?;
        let ts = LeafText::scan(&e.leaf)
            .map(|t| t.ts.text().into_owned())
            .or_else(|| Leaf::parse_canonical(&e.leaf).ok().map(|l| l.ts))
            .unwrap_or_default();
        Ok((hash, ts))
    }

    /// The newest stored checkpoint `(size, note)`, not yet checked.
    pub fn newest_checkpoint(&self) -> Result<Option<(u64, String)>, FeedError> {
        Ok(self.store.latest_checkpoint()?)
    }

    /// Check entries `[prefix.size, size)` in full (form, chain, leaf
    /// hashes, key rotations and revocations), then the checkpoint `note`
    /// for `size` and the checkpoint of every key rotation in the range
    /// against the key schedule those entries set: each signed by every
    /// unrevoked key whose range holds its size, each with the root of the
    /// entries at its size. The trusted key must be one of the schedule's.
    pub fn verify(
        &self,
        prefix: &VerifiedPrefix,
        size: u64,
        note: &str,
    ) -> Result<Result<VerifiedPrefix, Unverified>, FeedError> {
        let from = prefix.size;
        let fail = |why: String| Unverified {
            from,
            to: size,
            why,
        };
        if size < from {
            return Ok(Err(fail(format!(
                "the log has {size} entries, fewer than the {from} verified before (rolled back or replaced)"
            ))));
        }
        let Some((frontier, prev)) = prefix.decode() else {
            return Ok(Err(fail("the verified prefix is malformed".into())));
        };
        let keys = match &prefix.keys {
            Some(k) => k.clone(),
            // A cursor from before rotations were followed: its prefix
            // was verified with the genesis key, which the record names.
            None => self.store.key_schedule()?.at(from),
        };
        // The checker keeps its frontier private: a copy is kept alongside.
        let mut tree = frontier.clone();
        let mut checker =
            LeafChecker::resume(&self.origin, keys.first(), frontier, prev).with_keys(keys);
        checker.revocations = prefix.revoked.clone();
        // Root of the tree at each rotation's boundary, met on the way.
        let mut boundaries: Vec<(u64, Hash)> = Vec::new();
        let mut last = prev;
        let mut at = from;
        let mut failure = None;
        while at < size && failure.is_none() {
            let end = (at + CHUNK).min(size);
            self.store.for_each_entry(at, end, |seq, bytes, stored| {
                if failure.is_some() {
                    return Ok(());
                }
                if seq != checker.size() {
                    failure = Some(format!("entry {} is missing", checker.size()));
                    return Ok(());
                }
                let ranges = checker.keys.ranges().len();
                match checker.push(bytes, Some(stored), |_| {}) {
                    Ok(c) => {
                        tree.push(c.hash, |_| {});
                        last = Some(c.hash);
                    }
                    Err(e) => failure = Some(e.to_string()),
                }
                if checker.keys.ranges().len() != ranges {
                    boundaries.push((checker.size(), checker.root()));
                }
                Ok(())
            })?;
            if failure.is_none() && checker.size() != end {
                failure = Some(format!("entry {} is missing", checker.size()));
            }
            at = end;
        }
        if let Some(why) = failure {
            return Ok(Err(fail(why)));
        }
        let (keys, revoked) = (&checker.keys, &checker.revocations);
        let open = |note: &str, at: u64| -> Result<Hash, String> {
            let cp = stele_audit::keys::open_checkpoint(note, keys, revoked)
                .map_err(|e| format!("the checkpoint for size {at} does not verify: {e}"))?;
            if cp.size != at || cp.origin != self.origin {
                return Err(format!(
                    "the checkpoint stored for size {at} says size {} of {:?}",
                    cp.size, cp.origin
                ));
            }
            Ok(cp.root)
        };
        let root = match open(note, size) {
            Ok(r) => r,
            Err(why) => return Ok(Err(fail(why))),
        };
        if checker.root() != root {
            return Ok(Err(fail(format!(
                "the entries' root at size {size} differs from the signed checkpoint's"
            ))));
        }
        // Each rotation's checkpoint, signed by the old and the new key, is
        // what links one key to the next: it must be there and agree.
        for (b, want) in &boundaries {
            let Some(n) = self.store.checkpoint_at(*b)? else {
                return Ok(Err(fail(format!(
                    "the checkpoint of the key rotation at size {b} (signed by both keys) is missing"
                ))));
            };
            match open(&n, *b) {
                Ok(r) if r == *want => {}
                Ok(_) => {
                    return Ok(Err(fail(format!(
                        "the entries' root at size {b} differs from the key rotation's checkpoint"
                    ))))
                }
                Err(why) => return Ok(Err(fail(why))),
            }
        }
        let trusted = self.verifier.to_string();
        if !keys.ranges().iter().any(|r| r.key == trusted) {
            return Ok(Err(fail(format!(
                "the log's key.rotation entries never name the trusted key {trusted}"
            ))));
        }
        Ok(Ok(VerifiedPrefix::encode(
            &tree,
            last,
            checker.keys.clone(),
            checker.revocations.clone(),
        )))
    }

    /// The records of entries `[from, to)` (each entry's OCSF event, then
    /// the findings it triggered), rules run with `detectors`. Returns the
    /// leaf hash of entry `to - 1`.
    pub fn read(
        &self,
        from: u64,
        to: u64,
        rules: &AlertRules,
        detectors: &mut DetectorState,
        out: &mut Vec<FeedRecord>,
    ) -> Result<Option<Hash>, FeedError> {
        let mut last = None;
        let mut findings: Vec<Finding> = Vec::new();
        let mut at = from;
        while at < to {
            let end = (at + CHUNK).min(to);
            let mut next = at;
            self.store.for_each_entry(at, end, |seq, bytes, stored| {
                if seq != next {
                    return Err(stele_audit::AuditError::NotFound(format!("entry {next}")));
                }
                next += 1;
                let hash: Hash = stored.try_into().unwrap_or([0; 32]);
                let typed: Leaf;
                let text = match LeafText::scan(bytes) {
                    Some(t) => t,
                    None => {
                        typed = Leaf::parse_canonical(bytes).map_err(|e| {
                            stele_audit::AuditError::NotFound(format!("entry {seq}: {e}"))
                        })?;
                        LeafText::of(&typed)
                    }
                };
                let ts = text.ts.text().into_owned();
                let time_ms = epoch_ms(&ts).unwrap_or(0);
                let mut json = Vec::with_capacity(bytes.len() + 512);
                write_event(&text, &hash, &self.ocsf_origin, &mut json);
                let denied = text
                    .decision
                    .is_some_and(|d| d.effect == stele_audit::Effect::Deny);
                out.push(FeedRecord {
                    seq,
                    leaf_hash: hash,
                    kind: RecordKind::Entry {
                        kind: text.kind,
                        denied,
                    },
                    ts: ts.clone(),
                    time_ms,
                    json,
                });
                findings.clear();
                let anchor = Anchor {
                    origin: &self.origin,
                    seq,
                    hash: &hash,
                    time_ms,
                };
                detectors.observe(rules, &text, anchor, &mut findings);
                for f in findings.drain(..) {
                    out.push(FeedRecord {
                        seq,
                        leaf_hash: hash,
                        kind: RecordKind::Finding(f.rule),
                        ts: ts.clone(),
                        time_ms,
                        json: f.json,
                    });
                }
                last = Some(hash);
                Ok(())
            })?;
            if next != end {
                return Err(FeedError::Read(format!("entry {next} is missing")));
            }
            at = end;
        }
        Ok(last)
    }
}
