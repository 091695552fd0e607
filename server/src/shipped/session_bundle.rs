//! A session bundle (docs/export-format.md §8) written by a server from a
//! worker's shipped log, without that worker: the session's entries with
//! their inclusion proofs against the newest checkpoint the servers hold of
//! that log (signed by the worker's key), the payload bodies shipped with
//! them, and — for a session that continued there from another worker's
//! log — the bundle it continued from, as kept when it was handed out. The
//! manifest is signed by this server's log key, and the export is recorded
//! in this server's log first (`audit.export`, its `data.shipped` naming
//! the worker's log). Used by reviewers (`GET
//! /api/v1/audit/sessions/{id}/export` of a session that ran on workers)
//! and by failover (a dead worker's session continued on another).

use std::path::PathBuf;
use std::sync::Arc;

use stele_audit::event::Actor;
use stele_audit::export::earlier::{bundle_digest, is_session_end, Continues as ContinuesMember};
use stele_audit::export::session_parts::{
    write_session_bundle, OpenSession, PartCheckpoint, PartEntry, PartPayload, Payloads,
    SessionParts,
};
use stele_audit::keys::KeySchedule;
use stele_audit::leaf::Leaf;
use stele_audit::merkle::Hash;
use stele_audit::{Event, EventKind};

use crate::error::ServerError;
use crate::shipped::proofs::inclusion_proofs;
use crate::state::AppState;
use crate::store::shipping::{ShippedEntry, ShippedLog};

/// What the servers hold of a session in the shipped logs: the newest
/// slice (the log it ran in last) and that log's state.
pub struct ShippedSession {
    /// The worker's log.
    pub log: ShippedLog,
    /// The session's entries in it.
    pub entries: Vec<ShippedEntry>,
    /// Those entries, parsed.
    pub leaves: Vec<Leaf>,
}

impl ShippedSession {
    /// Whether the session ended in that log.
    pub fn ended(&self) -> bool {
        self.leaves.last().is_some_and(is_session_end)
    }
}

/// One shipped log's entries of a session, parsed.
pub struct Slice {
    /// The log's origin.
    pub origin: String,
    /// The session's entries in it, by index.
    pub entries: Vec<ShippedEntry>,
    /// Those entries, parsed.
    pub leaves: Vec<Leaf>,
}

/// Every shipped log's entries of `session` (logs holding none left out).
pub async fn slices(state: &AppState, session: &str) -> Result<Vec<Slice>, ServerError> {
    let mut out = Vec::new();
    for origin in state.store.shipped_session_origins(session).await? {
        let entries = state
            .store
            .shipped_session_entries(&origin, session)
            .await?;
        let mut leaves = Vec::with_capacity(entries.len());
        for e in &entries {
            leaves.push(Leaf::parse_canonical(&e.leaf).map_err(|x| {
                ServerError::Shipped(format!("{origin}: shipped entry {}: {x}", e.seq))
            })?);
        }
        if !entries.is_empty() {
            out.push(Slice {
                origin,
                entries,
                leaves,
            });
        }
    }
    Ok(out)
}

/// Of `slices`, the log the session continued into last: one that no
/// other slice continues from (of several, the one whose last entry of the
/// session is newest). A stopped worker's entries written after the
/// session continued elsewhere do not make its log the newest.
pub fn newest(slices: Vec<Slice>) -> Result<Option<Slice>, ServerError> {
    let mut continued_from = std::collections::HashSet::new();
    for s in &slices {
        if let Some(first) = s.leaves.first() {
            match ContinuesMember::of(first) {
                Ok(Some(c)) => {
                    continued_from.insert(c.origin);
                }
                Ok(None) => {}
                Err(e) => return Err(ServerError::Shipped(format!("{}: {e}", s.origin))),
            }
        }
    }
    let ts = |s: &Slice| s.entries.last().map(|e| e.ts.clone()).unwrap_or_default();
    Ok(slices
        .into_iter()
        .filter(|s| !continued_from.contains(&s.origin))
        .max_by(|a, b| ts(a).cmp(&ts(b))))
}

/// The newest slice of `session` the shipped logs hold ([`newest`]), with
/// its log's state. None when no shipped log holds any of it.
pub async fn find(state: &AppState, session: &str) -> Result<Option<ShippedSession>, ServerError> {
    let Some(s) = newest(slices(state, session).await?)? else {
        return Ok(None);
    };
    let log = state
        .store
        .shipped_log(&s.origin)
        .await?
        .ok_or_else(|| ServerError::Shipped(format!("{}: no shipped log", s.origin)))?;
    Ok(Some(ShippedSession {
        log,
        entries: s.entries,
        leaves: s.leaves,
    }))
}

/// Why a bundle was written (recorded in the `audit.export` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A reviewer's export: the session must have ended.
    Review,
    /// A failover: the session has not ended; its bundle is handed to the
    /// worker that continues it.
    Failover,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Review => "review",
            Purpose::Failover => "failover",
        }
    }
}

/// A written bundle.
pub struct Written {
    /// The `.tar` bytes.
    pub bytes: Vec<u8>,
    /// The index of its `audit.export` entry in this server's log.
    pub export_entry: u64,
}

/// Write the session bundle of `s` (its session `session`) for `purpose`,
/// exported by `exporter`.
pub async fn write(
    state: &Arc<AppState>,
    session: &str,
    s: &ShippedSession,
    purpose: Purpose,
    exporter: Actor,
) -> Result<Written, ServerError> {
    let origin = s.log.origin.clone();
    let size = u64::try_from(s.log.size).unwrap_or(0);
    let seqs: Vec<u64> = s
        .entries
        .iter()
        .map(|e| u64::try_from(e.seq).unwrap_or(u64::MAX))
        .collect();
    let proofs = inclusion_proofs(&*state.store, &origin, &seqs, size).await?;
    let mut cmts: Vec<Vec<u8>> = Vec::new();
    for l in &s.leaves {
        for p in &l.payload {
            if let Some(c) = stele_audit::payload::parse_commit(&p.commit) {
                cmts.push(c.to_vec());
            }
        }
    }
    cmts.sort();
    cmts.dedup();
    let payloads = state
        .store
        .shipped_payloads(&origin, &cmts)
        .await?
        .into_iter()
        .filter_map(|p| {
            let cmt: Hash = p.cmt.as_slice().try_into().ok()?;
            Some(PartPayload {
                cmt,
                salt: p.salt,
                body: p.body,
            })
        })
        .collect();
    let earlier_bundle = match s.leaves.first().map(ContinuesMember::of) {
        Some(Ok(Some(c))) => Some(state.store.kept_bundle(&c.bundle).await?.ok_or_else(|| {
            ServerError::Shipped(format!(
                "session {session} continued from bundle {} in {origin}, which no server kept",
                c.bundle
            ))
        })?),
        Some(Err(e)) => return Err(ServerError::Shipped(format!("{origin}: {e}"))),
        _ => None,
    };
    let entries = s
        .entries
        .iter()
        .zip(proofs)
        .map(|(e, proof)| PartEntry {
            seq: u64::try_from(e.seq).unwrap_or(u64::MAX),
            leaf: e.leaf.clone(),
            proof,
        })
        .collect();
    // Recorded before anything is written.
    let data = serde_json::json!({
        "selection": {"kind": "session", "id": session},
        "payloads": true,
        "out": "(sent)",
        "manifest_key": state.signer.0.verifier().to_string(),
        "shipped": {"origin": origin, "size": size, "worker": s.log.worker},
        "purpose": purpose.as_str(),
    });
    let log = state.log.clone();
    let ev = Event::new(EventKind::AuditExport, exporter.clone()).with_data(data);
    let receipt = tokio::task::spawn_blocking(move || log.append_blocking(ev))
        .await
        .map_err(|e| ServerError::Task(e.to_string()))??;
    let parts = SessionParts {
        origin: origin.clone(),
        keys: KeySchedule::single(&s.log.verifier),
        session: session.to_string(),
        checkpoint: PartCheckpoint {
            size,
            note: s.log.checkpoint.clone(),
            cosignatures: Vec::new(),
        },
        entries,
        payloads: Payloads::Included(payloads),
        redactions: Vec::new(),
        key_entries: Vec::new(),
        earlier_checkpoints: Vec::new(),
        consistency: Vec::new(),
        timestamps: Vec::new(),
        attestation: None,
        earlier_bundle,
        policies: Vec::new(),
        start: None,
        exporter,
        export_entry: receipt.seq,
        open: match purpose {
            Purpose::Review => OpenSession::Refuse,
            Purpose::Failover => OpenSession::Allow,
        },
    };
    let dir = state
        .config
        .db()
        .parent()
        .map(|d| d.join("exports.tmp"))
        .ok_or_else(|| ServerError::Task("no state folder".into()))?;
    let out: PathBuf = dir.join(format!("{}.tar", uuid::Uuid::new_v4()));
    let signer = state.signer.0.clone();
    let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ServerError> {
        stele_runtime::paths::ensure_private_dir(&dir)
            .map_err(|e| ServerError::Task(format!("export folder: {e}")))?;
        let made = write_session_bundle(&parts, signer.as_ref(), &out)
            .map_err(|e| ServerError::Shipped(format!("session {}: {e}", parts.session)));
        let read = made.and_then(|_| {
            std::fs::read(&out).map_err(|e| ServerError::Io {
                what: format!("reading the export {}", out.display()),
                source: e,
            })
        });
        let _ = std::fs::remove_file(&out);
        read
    })
    .await
    .map_err(|e| ServerError::Task(e.to_string()))??;
    Ok(Written {
        bytes,
        export_entry: receipt.seq,
    })
}

/// `sha256:<hex>` of a written bundle (what a continuing `session.start` names).
pub fn digest(w: &Written) -> String {
    bundle_digest(&w.bytes)
}
