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

use stele_attest::checkpoint::Checkpoint;
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
    /// Open `db` read-only; its origin and key must be `verifier`'s.
    pub fn open(db: &Path, verifier: &NoteVerifier) -> Result<Self, FeedError> {
        let store = Store::open(db)?;
        let origin = store.meta_required("origin")?;
        let vkey = store.meta_required("vkey")?;
        if vkey != verifier.to_string() || origin != verifier.name() {
            return Err(FeedError::WrongKey {
                db: db.to_path_buf(),
                log_key: vkey,
            });
        }
        Ok(Self {
            ocsf_origin: OcsfOrigin::new(&origin),
            store,
            verifier: verifier.clone(),
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

    /// The newest checkpoint, its signature checked with the log's key.
    pub fn signed_head(&self) -> Result<Result<(u64, Hash), Unverified>, FeedError> {
        let Some((size, note)) = self.store.latest_checkpoint()? else {
            return Ok(Ok((0, stele_audit::merkle::empty_root())));
        };
        Ok(match Checkpoint::open(&note, &self.verifier) {
            Ok((cp, _)) if cp.size == size && cp.origin == self.origin => Ok((size, cp.root)),
            Ok((cp, _)) => Err(Unverified {
                from: size,
                to: size,
                why: format!(
                    "the checkpoint stored for size {size} says size {}",
                    cp.size
                ),
            }),
            Err(e) => Err(Unverified {
                from: size,
                to: size,
                why: format!("the newest checkpoint (size {size}) does not verify: {e}"),
            }),
        })
    }

    /// Check entries `[prefix.size, size)` in full (form, chain, leaf
    /// hashes) and that the tree they extend has `root`: the signed
    /// checkpoint then vouches for every one of them.
    pub fn verify(
        &self,
        prefix: &VerifiedPrefix,
        size: u64,
        root: &Hash,
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
        // The checker keeps its frontier private: a copy is kept alongside.
        let mut tree = frontier.clone();
        let mut checker =
            LeafChecker::resume(&self.origin, &self.verifier.to_string(), frontier, prev);
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
                match checker.push(bytes, Some(stored), |_| {}) {
                    Ok(c) => {
                        tree.push(c.hash, |_| {});
                        last = Some(c.hash);
                    }
                    Err(e) => failure = Some(e.to_string()),
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
        if checker.root() != *root {
            return Ok(Err(fail(format!(
                "the entries' root at size {size} differs from the signed checkpoint's"
            ))));
        }
        Ok(Ok(VerifiedPrefix::encode(&tree, last)))
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
