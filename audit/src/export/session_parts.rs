//! Session bundles written from parts rather than from a local log: a team
//! server holds each shipped leaf's bytes, the worker's signed checkpoints
//! and their cosignatures, payload bodies and the tree's nodes, but not the
//! worker's SQLite file. [`write_session_bundle`] writes the same bundle
//! the worker's own `stele audit export --session` would (the same writer,
//! `super::session_writer`), its manifest signed by the caller's export
//! key and its `exporter` naming the caller and the `audit.export` entry
//! in the caller's own log (outside the bundle's tree, as for archive
//! bundles). See docs/export-format.md §8.

use std::path::Path;

use stele_attest::Signer;

use super::layout::Exporter;
use super::session_writer::{PushError, SessionWriter, Tail};
use super::start::BundleStart;
use super::write::{ExportReport, PolicyInput};
use super::ExportError;
use crate::event::Actor;
use crate::keys::KeySchedule;
use crate::merkle::Hash;

/// Whether a session that has not ended may be written. Its bundle then
/// fails verification (its completeness cannot be shown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenSession {
    /// Refuse a session without its `session.end` (the default).
    Refuse,
    /// Write it anyway.
    Allow,
}

/// One entry of the log with its RFC 9162 inclusion proof against the
/// bundle's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartEntry {
    /// Its index in the log.
    pub seq: u64,
    /// The canonical leaf bytes.
    pub leaf: Vec<u8>,
    /// The inclusion proof (audit path) at the checkpoint's size.
    pub proof: Vec<Hash>,
}

/// A payload body as committed: the bundle holds `salt ‖ body` under its
/// commitment `SHA-256(salt ‖ body)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartPayload {
    /// The commitment an entry of the session names.
    pub cmt: Hash,
    /// The salt.
    pub salt: Vec<u8>,
    /// The body.
    pub body: Vec<u8>,
}

/// Whether the bundle holds payload bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payloads {
    /// These bodies (a commitment without one, e.g. erased, is left out).
    Included(Vec<PartPayload>),
    /// Left out on purpose (`--no-payloads`): the predicate says so.
    Withheld,
}

/// A signed checkpoint of the log with the witness cosignature lines on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartCheckpoint {
    /// Its tree size.
    pub size: u64,
    /// The signed note, as the log signed it.
    pub note: String,
    /// Cosignature lines (`— <witness> <base64>`) on that same note.
    pub cosignatures: Vec<String>,
}

/// Everything a session bundle is made of.
#[derive(Debug, Clone)]
pub struct SessionParts {
    /// The log's origin.
    pub origin: String,
    /// The log's keys as they stood at the checkpoint's size
    /// ([`KeySchedule::single`] for a log that never rotated).
    pub keys: KeySchedule,
    /// The session's id.
    pub session: String,
    /// The bundle's checkpoint (every proof is against it).
    pub checkpoint: PartCheckpoint,
    /// The session's entries in log order, each with its proof.
    pub entries: Vec<PartEntry>,
    /// Payload bodies, or withheld.
    pub payloads: Payloads,
    /// Entries outside the session (`redaction`, `payload.expiry`) that
    /// erased payloads of its entries, each with its proof.
    pub redactions: Vec<PartEntry>,
    /// The entries before each key rotation boundary (and the
    /// `log.archive` entry of a log whose prefix is archived), each with
    /// its proof: what lets a verifier rebuild the key schedule.
    pub key_entries: Vec<PartEntry>,
    /// Earlier checkpoints to keep (published, cosigned, rotation ones).
    pub earlier_checkpoints: Vec<PartCheckpoint>,
    /// Consistency proofs from earlier sizes to the checkpoint's.
    pub consistency: Vec<(u64, Vec<Hash>)>,
    /// RFC 3161 tokens by checkpoint size.
    pub timestamps: Vec<(u64, Vec<u8>)>,
    /// The session's attestation (`attestations/`), if one was made.
    pub attestation: Option<Vec<u8>>,
    /// The bundle a moved session was imported from (required when its
    /// `session.start` names one).
    pub earlier_bundle: Option<Vec<u8>>,
    /// Policy bundle folders in force.
    pub policies: Vec<PolicyInput>,
    /// Where the log's live part begins, for a log whose prefix is archived.
    pub start: Option<BundleStart>,
    /// Who exports (a server: its principal and host).
    pub exporter: Actor,
    /// Index of the `audit.export` entry recording this export in the
    /// exporter's own log.
    pub export_entry: u64,
    /// Whether an unfinished session may be written.
    pub open: OpenSession,
}

/// Write the session bundle of `parts` as one `.tar` file at `out`, its
/// manifest signed by `manifest_signer`. Every part is checked first —
/// each entry in the session's sub-chain (from its `session.start`, in
/// order, none missing, none of another session) with its proof against
/// the checkpoint, each payload against its commitment — and a bad part
/// fails naming its entry; nothing is written then (the bundle is built in
/// a temporary folder beside `out`, and only a whole one is renamed into
/// place).
pub fn write_session_bundle(
    parts: &SessionParts,
    manifest_signer: &dyn Signer,
    out: &Path,
) -> Result<ExportReport, ExportError> {
    let tmp = super::write::temp_beside(out)?;
    let _ = std::fs::remove_dir_all(&tmp);
    let r = build(parts, manifest_signer, &tmp)
        .and_then(|report| super::write::finish(&tmp, out, true).map(|()| report));
    if r.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    r
}

fn build(
    parts: &SessionParts,
    manifest_signer: &dyn Signer,
    tmp: &Path,
) -> Result<ExportReport, ExportError> {
    let id = &parts.session;
    let mut w = SessionWriter::new(
        tmp,
        &parts.origin,
        parts.keys.clone(),
        id,
        &parts.checkpoint,
    )?;
    for e in &parts.entries {
        w.push(e.seq, &e.leaf, &e.proof).map_err(|x| match x {
            PushError::Entry(f) => {
                ExportError::Invalid(format!("session {id}: entry {}: {}", f.index, f.reason))
            }
            PushError::Export(e) => e,
        })?;
    }
    if let Payloads::Included(p) = &parts.payloads {
        for p in p {
            w.put_payload(&p.cmt, &p.salt, &p.body)?;
        }
    }
    let tail = Tail {
        payloads_included: matches!(parts.payloads, Payloads::Included(_)),
        redactions: &parts.redactions,
        key_entries: &parts.key_entries,
        checkpoints: &parts.earlier_checkpoints,
        consistency: &parts.consistency,
        timestamps: &parts.timestamps,
        attestation: parts.attestation.as_deref(),
        earlier: parts.earlier_bundle.as_deref(),
        policies: &parts.policies,
        start: parts.start.clone(),
        exporter: Exporter {
            principal: parts.exporter.principal.clone(),
            host: parts.exporter.host.clone(),
            runtime: parts.exporter.runtime.clone(),
            entry: parts.export_entry,
        },
        open: parts.open,
    };
    w.finish(&tail, manifest_signer)
}
