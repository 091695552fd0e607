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
use stele_attest::private_fs;
use stele_attest::{Checkpoint, NoteVerifier, Signer};

use super::bundle_out::{put_checkpoints, Out};
use super::layout::*;
use super::ocsf;
use super::summary::SummaryBuilder;
use super::write::{ExportOptions, ExportProgress, ExportReport};
use super::ExportError;
use crate::error::AuditError;
use crate::event::EventKind;
use crate::leaf::{hash_b64, Leaf};
use crate::log::AuditLog;
use crate::merkle::{consistency_proof, inclusion_proof, Hash, NodeReader};
use crate::payload::parse_commit;
use crate::schema::TreeLayout;
use crate::session_chain::SessionChain;
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

/// Build the session bundle of session `id` into `t.tmp`.
pub(super) fn build(
    log: &AuditLog,
    manifest_signer: &dyn Signer,
    opts: &ExportOptions,
    id: &str,
    t: &Target<'_>,
    progress: &mut dyn FnMut(ExportProgress),
) -> Result<ExportReport, ExportError> {
    let (size, note) = (t.size, t.note);
    private_fs::create_dir_all(t.tmp).map_err(|e| ExportError::io(t.tmp, e))?;
    let mut o = Out::new(t.tmp);
    let store = log.store()?;
    let keys = super::bundle_out::keys_at(&store, size)?;
    let verifier = NoteVerifier::parse(keys.current())?;
    let (cp, _) = Checkpoint::open(note, &verifier)?;
    let nodes = Nodes::new(&store)?;
    private_fs::create_dir_all(&t.tmp.join("ocsf")).map_err(|e| ExportError::io(t.tmp, e))?;
    let mut ocsf_w = ocsf::OcsfWriter::create(&t.tmp.join(OCSF))?;
    let mut summary = SummaryBuilder::default();
    let mut chain = SessionChain::new(log.origin(), keys.first(), id);
    let row = store.session_row(id)?;
    let total = row.as_ref().map(|r| r.n + 1).unwrap_or(0);
    let mut commits: Vec<Hash> = Vec::new();
    let mut span: Option<(String, String)> = None;
    let mut count = 0u64;
    let mut continues = None;
    let lookup = store.for_each_session_entry(id, size, |e| {
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
        let (leaf, h) = chain
            .push(e.seq, e.leaf)
            .map_err(|f| damaged(f.reason))?;
        if e.leaf_hash != h {
            return Err(damaged("leaf bytes do not match the stored leaf hash".into()));
        }
        if count == 0 {
            continues = super::earlier::Continues::of(&leaf).map_err(damaged)?;
        }
        count += 1;
        summary.add(&leaf);
        ocsf_w.push(&leaf, &h, &cp.origin).map_err(|x| match x {
            ExportError::Audit(a) => a,
            other => AuditError::Invalid(other.to_string()),
        })?;
        commits.extend(leaf.payload.iter().filter_map(|p| parse_commit(&p.commit)));
        match &mut span {
            None => span = Some((leaf.ts.clone(), leaf.ts.clone())),
            Some((_, b)) => b.clone_from(&leaf.ts),
        }
        let path = inclusion_proof(&nodes, e.seq, size)?;
        o.put(
            &format!("{PROOFS_DIR}{}.tlog-proof", e.seq),
            crate::proof::render(e.leaf, e.seq, &path, note).as_bytes(),
        )
        .map_err(|x| AuditError::Invalid(x.to_string()))
    })?;
    let Some(seen) = chain.seen().cloned() else {
        let archived = store.archived()?.map_or(0, |r| r.size);
        return Err(ExportError::Invalid(if archived > 0 {
            format!("no session {id:?} in the live log (entries below {archived} are archived: a session there is in its archive bundle)")
        } else {
            format!("no session {id:?} in the log")
        }));
    };
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
    if !seen.ended && !opts.allow_open_session {
        return Err(ExportError::Invalid(format!(
            "session {id} has not ended; its completeness cannot be shown (export after it ends)"
        )));
    }
    let d = ocsf_w.finish()?;
    o.digests.insert(OCSF.to_string(), d);
    let sessions = vec![SessionRange {
        id: id.to_string(),
        first: seen.first,
        last: seen.last,
        entries: seen.n + 1,
        ended: seen.ended,
    }];

    payloads(&store, &nodes, &chain, opts, &mut commits, t, &mut o)?;
    if let Some(c) = &continues {
        earlier_slice(log.path(), id, c, &mut o)?;
    }

    // Checkpoints: the newest, the published or cosigned ones below it and
    // the ones attestations sign, each earlier one with a consistency proof.
    // The rotations that set the keys of its checkpoints, each proven
    // (the entry before each boundary): a verifier rebuilds the schedule.
    // Of a log whose prefix `0 … N−1` is archived, the rotations below `N`
    // are gone: the predicate's `start` carries the `log.archive` entry's
    // record of them (replayed from the genesis key against the kept
    // rotation checkpoints), and that entry itself is proven under `keys/`
    // so the verifier can check the record is the log's own.
    let start = super::start::of_store(&store)?;
    let from = start.as_ref().map_or(0, |(s, _)| s.size);
    let archive_entry = start.as_ref().map(|(_, seen)| seen.seq);
    let proven = keys
        .boundaries()
        .filter(|b| *b > from)
        .map(|b| b - 1)
        .chain(archive_entry);
    for r in proven {
        let e = store.entry(r)?;
        let path = inclusion_proof(&nodes, r, size)?;
        o.put(
            &format!("{KEYS_DIR}{r}.tlog-proof"),
            crate::proof::render(&e.leaf, r, &path, note).as_bytes(),
        )?;
    }
    let cp_sizes = put_checkpoints(&mut o, &store, note, size, &keys, &[], from)?;
    // Below `N` only the start's own checkpoint is tied to this one by a
    // consistency proof (the archived leaves such proofs may need are
    // gone); the rotation checkpoints below it serve the key replay alone.
    let mut consistent: BTreeSet<u64> = cp_sizes.iter().copied().filter(|s| *s >= from).collect();
    let policies = o.policies(&opts.policies)?;
    for a in o.attestations(log.path(), &sessions)? {
        if let Some(s) = attested_size(&a, &verifier).filter(|s| (from..size).contains(s)) {
            consistent.insert(s);
        }
    }
    for s in consistent.into_iter().filter(|s| *s > 0) {
        let proof = consistency_proof(&nodes, s, size)?;
        let text: String = proof.iter().map(|h| hash_b64(h) + "\n").collect();
        o.put(&format!("{CONSISTENCY_DIR}{s}"), text.as_bytes())?;
    }

    let selection_text = selection_text(&opts.selection);
    o.put(
        SUMMARY,
        summary.render(&cp.origin, size, &selection_text).as_bytes(),
    )?;
    let predicate = ExportPredicate {
        origin: cp.origin.clone(),
        log_key: verifier.to_string(),
        keys: super::bundle_out::listed_keys(&keys),
        revoked: Vec::new(),
        tree_size: size,
        root: hash_b64(&cp.root),
        range: opts.selection.clone(),
        sessions,
        selected: count,
        time_span: span,
        exporter: Exporter {
            principal: opts.exporter.principal.clone(),
            host: opts.exporter.host.clone(),
            runtime: opts.exporter.runtime.clone(),
            entry: t.export_entry,
        },
        policies,
        payloads_included: opts.payloads,
        checkpoints: cp_sizes,
        layout: BundleLayout::Session,
        ocsf_mapping: super::ocsf::OcsfMapping::CURRENT,
        start: start.map(|(s, _)| s),
    };
    let files = o.seal(&predicate, &verifier.to_string(), manifest_signer)?;
    Ok(ExportReport {
        tree_size: size,
        selected: count,
        files,
        export_entry: t.export_entry,
    })
}

/// Payload files of the session's commitments (unless withheld), and the
/// `redaction` entries that erased any of them, each with its proof.
fn payloads(
    store: &Store,
    nodes: &Nodes<'_>,
    chain: &SessionChain,
    opts: &ExportOptions,
    commits: &mut Vec<Hash>,
    t: &Target<'_>,
    o: &mut Out,
) -> Result<(), ExportError> {
    commits.sort_unstable();
    commits.dedup();
    let mut redactions = BTreeSet::new();
    for c in commits.iter() {
        let Some(p) = store.payload(c)? else { continue };
        match (p.salt, p.body, p.redacted_seq) {
            // Present: written unless withheld (`--no-payloads`).
            (Some(salt), Some(body), _) if opts.payloads => {
                let mut b = salt;
                b.extend_from_slice(&body);
                o.put(&format!("{PAYLOADS_DIR}{}", hex::encode(c)), &b)?;
            }
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
    for r in redactions {
        if chain.entry(r).is_some() {
            continue; // a session entry: its proof is already there
        }
        let e = store.entry(r)?;
        let leaf = Leaf::parse_canonical(&e.leaf).map_err(|x| AuditError::Integrity {
            index: r,
            reason: x.to_string(),
        })?;
        if !matches!(leaf.kind, EventKind::Redaction | EventKind::PayloadExpiry)
            || crate::merkle::leaf_hash(&e.leaf)[..] != e.leaf_hash[..]
        {
            return Err(ExportError::Invalid(format!(
                "entry {r}, named as the erasure of a session payload, is not a redaction or expiry entry with its stored hash"
            )));
        }
        let path = inclusion_proof(nodes, r, t.size)?;
        o.put(
            &format!("{REDACTIONS_DIR}{r}.tlog-proof"),
            crate::proof::render(&e.leaf, r, &path, t.note).as_bytes(),
        )?;
    }
    Ok(())
}

/// The bundle a moved session was imported from, kept beside the
/// database, as the bundle's earlier slice: it must be the file the
/// `continues` member names, byte for byte.
fn earlier_slice(
    db: &Path,
    id: &str,
    c: &super::earlier::Continues,
    o: &mut Out,
) -> Result<(), ExportError> {
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
    o.put(super::earlier::EARLIER_FILE, &bytes)
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
