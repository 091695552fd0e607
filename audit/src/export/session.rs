//! Session bundles: only the session's entries, each with its RFC 9162
//! inclusion proof against the export's checkpoint, read through the index
//! by session. The work is O(session · log2(size)), not O(size): no tiles,
//! no other entry (but the `redaction` entries that erased a session
//! payload, proven the same way). See `docs/export-format.md` §8.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use stele_attest::dsse::Envelope;
use stele_attest::intoto::Statement;
use stele_attest::{NoteVerifier, Signer};

use super::bundle_out::stored_checkpoints;
use super::layout::*;
use super::session_parts::{OpenSession, PartEntry};
use super::session_writer::{PushError, SessionWriter, Tail};
use super::write::{ExportOptions, ExportProgress, ExportReport};
use super::ExportError;
use crate::error::AuditError;
use crate::log::AuditLog;
use crate::merkle::{consistency_proof, inclusion_proof, Hash, NodeReader};
use crate::schema::TreeLayout;
use crate::store::{SessionLookup, Store};

/// Session entries between progress reports.
const PROGRESS_EVERY: u64 = 64;

/// Where the bundle is built and what it covers.
pub(super) struct Target<'a> {
    /// The temporary folder.
    pub tmp: &'a Path,
    /// Index of the `audit.export` entry.
    pub export_entry: u64,
    /// The checkpoint's size.
    pub size: u64,
    /// The signed checkpoint its commit produced.
    pub note: &'a str,
}

/// Build the session bundle of session `id` into `t.tmp`: the session
/// streamed from the store into the one session-bundle writer
/// (`super::session_writer`), then what else the bundle needs, gathered
/// from the store.
pub(super) fn build(
    log: &AuditLog,
    manifest_signer: &dyn Signer,
    opts: &ExportOptions,
    id: &str,
    t: &Target<'_>,
    progress: &mut dyn FnMut(ExportProgress),
) -> Result<ExportReport, ExportError> {
    let (size, note) = (t.size, t.note);
    let store = log.store()?;
    let keys = super::bundle_out::keys_at(&store, size)?;
    let verifier = NoteVerifier::parse(keys.current())?;
    let nodes = Nodes::new(&store)?;
    let start = super::start::of_store(&store)?;
    let from = start.as_ref().map_or(0, |(s, _)| s.size);
    let stored = stored_checkpoints(&store, note, size, &keys, &[], from)?;
    let mut w = SessionWriter::new(t.tmp, log.origin(), keys.clone(), id, &stored.newest)?;
    let row = store.session_row(id)?;
    let total = row.as_ref().map(|r| r.n + 1).unwrap_or(0);
    let lookup = store.for_each_session_entry(id, size, |e| {
        let count = w.count();
        if count.is_multiple_of(PROGRESS_EVERY) {
            progress(ExportProgress::SessionEntries { done: count, total });
        }
        // Derived data: what the index says must be what the leaf says.
        let damaged = |reason: String| AuditError::Integrity {
            index: e.seq,
            reason: format!(
                "session {id}: {reason} (the log or its index by session is damaged: run `stele audit verify`)"
            ),
        };
        if e.n != count {
            return Err(damaged(format!(
                "position {count} of the session is given as n={}",
                e.n
            )));
        }
        let path = inclusion_proof(&nodes, e.seq, size)?;
        let h = w.push(e.seq, e.leaf, &path).map_err(|x| match x {
            PushError::Entry(f) => damaged(f.reason),
            PushError::Export(x) => AuditError::Invalid(x.to_string()),
        })?;
        if e.leaf_hash != h {
            return Err(damaged("leaf bytes do not match the stored leaf hash".into()));
        }
        Ok(())
    })?;
    let Some(seen) = w.chain().seen().cloned() else {
        let archived = store.archived()?.map_or(0, |r| r.size);
        return Err(ExportError::Invalid(if archived > 0 {
            format!("no session {id:?} in the live log (entries below {archived} are archived: a session there is in its archive bundle)")
        } else {
            format!("no session {id:?} in the log")
        }));
    };
    let count = w.count();
    progress(ExportProgress::SessionEntries {
        done: count,
        total: count,
    });
    // The index must not have left out the session's newest entries: the
    // `sessions` row (also derived, kept by the same transactions) agrees.
    if let (Some(r), SessionLookup::Index) = (&row, lookup) {
        if r.last.is_none_or(|l| l < size) && (r.n != seen.n || r.head != seen.head) {
            return Err(ExportError::Invalid(format!(
                "session {id}: the index by session ends at n={} but the session's row says n={}: the log's derived tables are damaged (run `stele audit verify`)",
                seen.n, r.n
            )));
        }
    }
    let open = if opts.allow_open_session {
        OpenSession::Allow
    } else {
        OpenSession::Refuse
    };
    if !seen.ended && open == OpenSession::Refuse {
        return Err(ExportError::Invalid(format!(
            "session {id} has not ended; its completeness cannot be shown (export after it ends)"
        )));
    }
    let redactions = payloads(&store, &nodes, &mut w, opts, t)?;
    let earlier = match w.continues() {
        Some(c) => Some(earlier_slice(log.path(), id, c)?),
        None => None,
    };

    // Checkpoints: the newest, the published or cosigned ones below it and
    // the ones attestations sign, each earlier one with a consistency proof.
    // The rotations that set the keys of its checkpoints, each proven
    // (the entry before each boundary): a verifier rebuilds the schedule.
    // Of a log whose prefix `0 … N−1` is archived, the rotations below `N`
    // are gone: the predicate's `start` carries the `log.archive` entry's
    // record of them (replayed from the genesis key against the kept
    // rotation checkpoints), and that entry itself is proven under `keys/`
    // so the verifier can check the record is the log's own.
    let archive_entry = start.as_ref().map(|(_, seen)| seen.seq);
    let proven = keys
        .boundaries()
        .filter(|b| *b > from)
        .map(|b| b - 1)
        .chain(archive_entry);
    let mut key_entries = Vec::new();
    for r in proven {
        key_entries.push(proven_entry(&store, &nodes, r, size)?);
    }
    // Below `N` only the start's own checkpoint is tied to this one by a
    // consistency proof (the archived leaves such proofs may need are
    // gone); the rotation checkpoints below it serve the key replay alone.
    let mut consistent: BTreeSet<u64> = stored
        .earlier
        .iter()
        .map(|c| c.size)
        .filter(|s| *s >= from)
        .collect();
    let attestation = std::fs::read(super::attestation::attestation_path(log.path(), id)).ok();
    if let Some(s) = attestation
        .as_deref()
        .and_then(|a| attested_size(a, &verifier))
        .filter(|s| (from..size).contains(s))
    {
        consistent.insert(s);
    }
    let mut consistency = Vec::new();
    for s in consistent.into_iter().filter(|s| *s > 0) {
        consistency.push((s, consistency_proof(&nodes, s, size)?));
    }
    let tail = Tail {
        payloads_included: opts.payloads,
        redactions: &redactions,
        key_entries: &key_entries,
        checkpoints: &stored.earlier,
        consistency: &consistency,
        timestamps: &stored.tokens,
        attestation: attestation.as_deref(),
        earlier: earlier.as_deref(),
        policies: &opts.policies,
        start: start.map(|(s, _)| s),
        exporter: Exporter {
            principal: opts.exporter.principal.clone(),
            host: opts.exporter.host.clone(),
            runtime: opts.exporter.runtime.clone(),
            entry: t.export_entry,
        },
        open,
    };
    w.finish(&tail, manifest_signer)
}

/// Entry `r` with its proof at `size`, its bytes matching its stored hash.
fn proven_entry(
    store: &Store,
    nodes: &Nodes<'_>,
    r: u64,
    size: u64,
) -> Result<PartEntry, ExportError> {
    let e = store.entry(r)?;
    if crate::merkle::leaf_hash(&e.leaf)[..] != e.leaf_hash[..] {
        return Err(ExportError::Invalid(format!(
            "entry {r}: its bytes do not match its stored hash (run `stele audit verify`)"
        )));
    }
    Ok(PartEntry {
        seq: r,
        proof: inclusion_proof(nodes, r, size)?,
        leaf: e.leaf,
    })
}

/// Payload files of the session's commitments (unless withheld); returns
/// the entries outside the session that erased any of them, each proven.
fn payloads(
    store: &Store,
    nodes: &Nodes<'_>,
    w: &mut SessionWriter,
    opts: &ExportOptions,
    t: &Target<'_>,
) -> Result<Vec<PartEntry>, ExportError> {
    let mut redactions = BTreeSet::new();
    for c in w.commits() {
        let Some(p) = store.payload(&c)? else {
            continue;
        };
        match (p.salt, p.body, p.redacted_seq) {
            // Present: written unless withheld (`--no-payloads`).
            (Some(salt), Some(body), _) if opts.payloads => w.put_payload(&c, &salt, &body)?,
            (Some(_), Some(_), _) => {}
            (_, _, Some(r)) if r < t.size => {
                redactions.insert(r);
            }
            (_, _, Some(r)) => {
                return Err(ExportError::Invalid(format!(
                    "a payload of the session was redacted by entry {r}, after the export began: export again"
                )))
            }
            _ => {}
        }
    }
    redactions
        .into_iter()
        .filter(|r| w.chain().entry(*r).is_none())
        .map(|r| proven_entry(store, nodes, r, t.size))
        .collect()
}

/// The bundle a moved session was imported from, kept beside the
/// database, as the bundle's earlier slice (the writer checks it is the
/// file the `continues` member names, byte for byte).
fn earlier_slice(
    db: &Path,
    id: &str,
    c: &super::earlier::Continues,
) -> Result<Vec<u8>, ExportError> {
    let path = super::earlier::imported_bundle_path(db, id);
    let bytes = std::fs::read(&path).map_err(|e| {
        ExportError::Invalid(format!(
            "session {id} continues a session of {} (imported), but the bundle it was imported from cannot be read at {}: {e}",
            c.origin,
            path.display()
        ))
    })?;
    if super::earlier::bundle_digest(&bytes) != c.bundle {
        return Err(ExportError::Invalid(format!(
            "{} is not the bundle session {id} was imported from (its digest differs from the {} its session.start names)",
            path.display(),
            c.bundle
        )));
    }
    Ok(bytes)
}

/// The checkpoint size an attestation signs (`None` if it does not open).
fn attested_size(bytes: &[u8], verifier: &NoteVerifier) -> Option<u64> {
    let env = Envelope::from_json(bytes).ok()?;
    let st = Statement::open(&env, verifier, SESSION_PREDICATE_TYPE).ok()?;
    st.predicate["checkpoint"]["size"].as_u64()
}

/// Tree nodes read once: the layout looked up once, and nodes every proof
/// shares (near the root, along the right edge) kept.
struct Nodes<'a> {
    store: &'a Store,
    layout: TreeLayout,
    memo: RefCell<HashMap<(u8, u64), Hash>>,
}

impl<'a> Nodes<'a> {
    fn new(store: &'a Store) -> Result<Self, ExportError> {
        let layout = TreeLayout::of(store.conn()).map_err(AuditError::sqlite(store.path()))?;
        Ok(Self {
            store,
            layout,
            memo: RefCell::new(HashMap::new()),
        })
    }
}

impl NodeReader for Nodes<'_> {
    type Error = AuditError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, AuditError> {
        if let Some(h) = self.memo.borrow().get(&(level, index)) {
            return Ok(*h);
        }
        let h = crate::store::read_node(
            self.store.conn(),
            self.store.path(),
            self.layout,
            level,
            index,
        )?;
        // Leaves and low nodes are each used by one proof or a few.
        if level >= 8 {
            self.memo.borrow_mut().insert((level, index), h);
        }
        Ok(h)
    }
}
