//! The one writer of session bundles (docs/export-format.md §8). Both ways
//! of exporting a session feed it: the local exporter (`super::session`)
//! streams the session from its own log's store, and a team server
//! (`super::session_parts`) hands over the parts a worker shipped. It
//! checks every part as it takes it — each entry in the session's
//! sub-chain with its inclusion proof against the bundle's checkpoint,
//! each payload against its commitment — so a bad part fails naming the
//! entry before the bundle can be finished (the caller then removes the
//! temporary folder: nothing is left behind).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use stele_attest::private_fs;
use stele_attest::{Checkpoint, NoteVerifier, Signer};

use super::bundle_out::{write_checkpoints, Out};
use super::earlier::Continues;
use super::layout::*;
use super::ocsf::OcsfWriter;
use super::session_parts::{OpenSession, PartCheckpoint, PartEntry};
use super::start::BundleStart;
use super::summary::SummaryBuilder;
use super::write::{ExportReport, PolicyInput};
use super::ExportError;
use crate::event::EventKind;
use crate::keys::KeySchedule;
use crate::leaf::{hash_b64, Leaf};
use crate::merkle::{leaf_hash, verify_consistency, verify_inclusion, Hash};
use crate::payload::{commitment, parse_commit};
use crate::session_chain::{ChainFailure, SessionChain};

/// Why an entry was not taken: the entry itself is wrong (named by its
/// index), or writing failed.
#[derive(Debug)]
pub(super) enum PushError {
    /// The entry breaks the session's chain or its proof does not hold.
    Entry(ChainFailure),
    /// Writing its proof failed.
    Export(ExportError),
}

/// Everything of a session bundle but its entries and payload bodies,
/// taken when the bundle is sealed.
pub(super) struct Tail<'a> {
    /// Whether payload bodies were included (the predicate says so).
    pub payloads_included: bool,
    /// Entries outside the session that erased its payloads, proven.
    pub redactions: &'a [PartEntry],
    /// The rotation (and `log.archive`) entries that set the keys of the
    /// bundle's checkpoints, proven.
    pub key_entries: &'a [PartEntry],
    /// Earlier checkpoints kept in the bundle (`checkpoints/<size>`).
    pub checkpoints: &'a [PartCheckpoint],
    /// Consistency proofs from earlier sizes to the bundle's checkpoint.
    pub consistency: &'a [(u64, Vec<Hash>)],
    /// RFC 3161 tokens by checkpoint size.
    pub timestamps: &'a [(u64, Vec<u8>)],
    /// The session's attestation, if one was made.
    pub attestation: Option<&'a [u8]>,
    /// The bundle a moved session was imported from.
    pub earlier: Option<&'a [u8]>,
    /// Policy bundle folders to copy.
    pub policies: &'a [PolicyInput],
    /// Where the log's live part begins (archived prefix).
    pub start: Option<BundleStart>,
    /// Who exports and the index of the `audit.export` entry (in the
    /// exporter's log: outside this bundle's tree for a server).
    pub exporter: Exporter,
    /// Whether an unfinished session may be written.
    pub open: OpenSession,
}

/// A session bundle being built in a temporary folder.
pub(super) struct SessionWriter {
    o: Out,
    id: String,
    keys: KeySchedule,
    verifier: NoteVerifier,
    cp: Checkpoint,
    ocsf: OcsfWriter,
    summary: SummaryBuilder,
    chain: SessionChain,
    /// Commitments of the session's entries, each with the first entry
    /// that names it.
    commits: BTreeMap<Hash, u64>,
    written: BTreeSet<Hash>,
    checkpoint: PartCheckpoint,
    span: Option<(String, String)>,
    count: u64,
    continues: Option<Continues>,
}

impl SessionWriter {
    /// Start the bundle of session `id` in `tmp` (created here) against
    /// `checkpoint`, signed under `keys` (the schedule at its size), of
    /// the log `origin`.
    pub(super) fn new(
        tmp: &Path,
        origin: &str,
        keys: KeySchedule,
        id: &str,
        checkpoint: &PartCheckpoint,
    ) -> Result<Self, ExportError> {
        let verifier = NoteVerifier::parse(keys.current())?;
        let (cp, _) = Checkpoint::open(&checkpoint.note, &verifier)?;
        if cp.origin != origin || cp.size != checkpoint.size {
            return Err(ExportError::Invalid(format!(
                "the checkpoint is of {:?} at size {}, not of {origin:?} at size {}",
                cp.origin, cp.size, checkpoint.size
            )));
        }
        check_cosignatures(checkpoint)?;
        private_fs::create_dir_all(tmp).map_err(|e| ExportError::io(tmp, e))?;
        private_fs::create_dir_all(&tmp.join("ocsf")).map_err(|e| ExportError::io(tmp, e))?;
        let ocsf = OcsfWriter::create(&tmp.join(OCSF))?;
        Ok(Self {
            o: Out::new(tmp),
            checkpoint: checkpoint.clone(),
            id: id.to_string(),
            chain: SessionChain::new(origin, keys.first(), id),
            keys,
            verifier,
            cp,
            ocsf,
            summary: SummaryBuilder::default(),
            commits: BTreeMap::new(),
            written: BTreeSet::new(),
            span: None,
            count: 0,
            continues: None,
        })
    }

    /// Take the session's next entry with its inclusion proof; returns its
    /// leaf hash.
    pub(super) fn push(
        &mut self,
        seq: u64,
        bytes: &[u8],
        proof: &[Hash],
    ) -> Result<Hash, PushError> {
        let (leaf, h) = self.chain.push(seq, bytes).map_err(PushError::Entry)?;
        self.prove(seq, &h, proof).map_err(PushError::Entry)?;
        if self.count == 0 {
            self.continues = Continues::of(&leaf)
                .map_err(|reason| PushError::Entry(ChainFailure { index: seq, reason }))?;
        }
        self.count += 1;
        self.summary.add(&leaf);
        self.ocsf
            .push(&leaf, &h, &self.cp.origin)
            .map_err(PushError::Export)?;
        for c in leaf.payload.iter().filter_map(|p| parse_commit(&p.commit)) {
            self.commits.entry(c).or_insert(seq);
        }
        match &mut self.span {
            None => self.span = Some((leaf.ts.clone(), leaf.ts.clone())),
            Some((_, b)) => b.clone_from(&leaf.ts),
        }
        self.o
            .put(
                &format!("{PROOFS_DIR}{seq}.tlog-proof"),
                crate::proof::render(bytes, seq, proof, &self.checkpoint.note).as_bytes(),
            )
            .map_err(PushError::Export)?;
        Ok(h)
    }

    /// Entries taken so far.
    pub(super) fn count(&self) -> u64 {
        self.count
    }

    /// The session's chain as checked so far.
    pub(super) fn chain(&self) -> &SessionChain {
        &self.chain
    }

    /// What the session continues (moved sessions), from its first entry.
    pub(super) fn continues(&self) -> Option<&Continues> {
        self.continues.as_ref()
    }

    /// The payload commitments of the session's entries, sorted, each once.
    pub(super) fn commits(&self) -> Vec<Hash> {
        self.commits.keys().copied().collect()
    }

    /// Write one payload file (`salt ‖ body`): it must be committed to by
    /// an entry of the session.
    pub(super) fn put_payload(
        &mut self,
        cmt: &Hash,
        salt: &[u8],
        body: &[u8],
    ) -> Result<(), ExportError> {
        let name = hex::encode(cmt);
        let Some(seq) = self.commits.get(cmt) else {
            return Err(ExportError::Invalid(format!(
                "payload {name}: no entry of session {} commits to it",
                self.id
            )));
        };
        if commitment(salt, body) != *cmt {
            return Err(at(
                *seq,
                format!("payload {name}: its salt and body do not match the entry's commitment"),
            ));
        }
        if self.written.insert(*cmt) {
            let mut b = Vec::with_capacity(salt.len() + body.len());
            b.extend_from_slice(salt);
            b.extend_from_slice(body);
            self.o.put(&format!("{PAYLOADS_DIR}{name}"), &b)?;
        }
        Ok(())
    }

    /// Everything else, then `VERIFY.md` and the signed manifest.
    pub(super) fn finish(
        mut self,
        t: &Tail<'_>,
        manifest_signer: &dyn Signer,
    ) -> Result<ExportReport, ExportError> {
        let id = self.id.clone();
        let Some(seen) = self.chain.seen().cloned() else {
            return Err(ExportError::Invalid(format!("no entry of session {id:?}")));
        };
        if !seen.ended && t.open == OpenSession::Refuse {
            return Err(ExportError::Invalid(format!(
                "session {id} has not ended; its completeness cannot be shown (export after it ends)"
            )));
        }
        let size = self.cp.size;
        for r in t.redactions {
            if self.chain.entry(r.seq).is_some() {
                continue; // a session entry: its proof is already there
            }
            let leaf = Leaf::parse_canonical(&r.leaf).map_err(|x| at(r.seq, x.to_string()))?;
            if !matches!(leaf.kind, EventKind::Redaction | EventKind::PayloadExpiry) {
                return Err(at(
                    r.seq,
                    "named as the erasure of a session payload, it is not a redaction or expiry entry".into(),
                ));
            }
            self.put_proven(REDACTIONS_DIR, r)?;
        }
        if let Some(c) = &self.continues {
            let bytes = t.earlier.ok_or_else(|| {
                ExportError::Invalid(format!(
                    "session {id} continues a session of {}, but the bundle it was imported from is not given",
                    c.origin
                ))
            })?;
            if super::earlier::bundle_digest(bytes) != c.bundle {
                return Err(ExportError::Invalid(format!(
                    "the earlier bundle given is not the one session {id} was imported from (its digest differs from the {} its session.start names)",
                    c.bundle
                )));
            }
            self.o.put(super::earlier::EARLIER_FILE, bytes)?;
        }
        for k in t.key_entries {
            self.put_proven(KEYS_DIR, k)?;
        }
        for c in t.checkpoints {
            let old = crate::keys::open_checkpoint(&c.note, &self.keys, &[]).map_err(|e| {
                ExportError::Invalid(format!("the checkpoint at size {}: {e}", c.size))
            })?;
            if old.size != c.size || old.size >= size {
                return Err(ExportError::Invalid(format!(
                    "the checkpoint given for size {} is of size {} (it must be below {size})",
                    c.size, old.size
                )));
            }
            check_cosignatures(c)?;
            if let Some((_, proof)) = t.consistency.iter().find(|(s, _)| *s == c.size) {
                verify_consistency(old.size, size, &old.root, &self.cp.root, proof).map_err(
                    |e| {
                        ExportError::Invalid(format!(
                            "the consistency proof from size {} to {size}: {e}",
                            c.size
                        ))
                    },
                )?;
            }
        }
        let cp_sizes =
            write_checkpoints(&mut self.o, &self.checkpoint, t.checkpoints, t.timestamps)?;
        let policies = self.o.policies(t.policies)?;
        let sessions = vec![SessionRange {
            id: id.clone(),
            first: seen.first,
            last: seen.last,
            entries: seen.n + 1,
            ended: seen.ended,
        }];
        if let Some(a) = t.attestation {
            self.o.put(
                &format!(
                    "{ATTESTATIONS_DIR}{}.intoto.jsonl",
                    super::attestation::file_stem(&id)
                ),
                a,
            )?;
        }
        for (s, proof) in t.consistency.iter().filter(|(s, _)| *s > 0) {
            let text: String = proof.iter().map(|h| hash_b64(h) + "\n").collect();
            self.o
                .put(&format!("{CONSISTENCY_DIR}{s}"), text.as_bytes())?;
        }
        let d = self.ocsf.finish()?;
        self.o.digests.insert(OCSF.to_string(), d);
        let selection = Selection::Session { id: id.clone() };
        self.o.put(
            SUMMARY,
            self.summary
                .render(&self.cp.origin, size, &selection_text(&selection))
                .as_bytes(),
        )?;
        let predicate = ExportPredicate {
            origin: self.cp.origin.clone(),
            log_key: self.verifier.to_string(),
            keys: super::bundle_out::listed_keys(&self.keys),
            revoked: Vec::new(),
            tree_size: size,
            root: hash_b64(&self.cp.root),
            range: selection,
            sessions,
            selected: self.count,
            time_span: self.span.clone(),
            exporter: t.exporter.clone(),
            policies,
            payloads_included: t.payloads_included,
            checkpoints: cp_sizes,
            layout: BundleLayout::Session,
            ocsf_mapping: super::ocsf::OcsfMapping::CURRENT,
            start: t.start.clone(),
        };
        let files = self
            .o
            .seal(&predicate, &self.verifier.to_string(), manifest_signer)?;
        Ok(ExportReport {
            tree_size: size,
            selected: self.count,
            files,
            export_entry: t.exporter.entry,
        })
    }

    /// An entry outside the session, proven, under `dir`.
    fn put_proven(&mut self, dir: &str, e: &PartEntry) -> Result<(), ExportError> {
        let h = leaf_hash(&e.leaf);
        self.prove(e.seq, &h, &e.proof)
            .map_err(|f| at(f.index, f.reason))?;
        let text = crate::proof::render(&e.leaf, e.seq, &e.proof, &self.checkpoint.note);
        self.o
            .put(&format!("{dir}{}.tlog-proof", e.seq), text.as_bytes())
    }

    /// Whether `proof` takes leaf hash `h` at `seq` to the checkpoint's root.
    fn prove(&self, seq: u64, h: &Hash, proof: &[Hash]) -> Result<(), ChainFailure> {
        verify_inclusion(h, seq, self.cp.size, proof, &self.cp.root).map_err(|e| ChainFailure {
            index: seq,
            reason: format!(
                "its inclusion proof does not lead to the root of the checkpoint at size {}: {e}",
                self.cp.size
            ),
        })
    }
}

/// An error naming entry `index`.
fn at(index: u64, reason: String) -> ExportError {
    ExportError::Invalid(format!("entry {index}: {reason}"))
}

/// Cosignature lines are signed-note signature lines, one each.
fn check_cosignatures(c: &PartCheckpoint) -> Result<(), ExportError> {
    for l in &c.cosignatures {
        let l = l.trim_end_matches('\n');
        if !l.starts_with("\u{2014} ") || l.contains('\n') {
            return Err(ExportError::Invalid(format!(
                "a cosignature of the checkpoint at size {} is not one signature line: {l:?}",
                c.size
            )));
        }
    }
    Ok(())
}
