//! Sending the newest checkpoint to witnesses and storing their cosignatures.
//!
//! For each witness: `old` is the largest size it cosigned for us (from the
//! `cosignatures` table), the proof is our consistency proof from there. A
//! 409 naming a size larger than ours means the witness saw a longer log: this
//! database was rolled back or truncated — fail closed. A 409 naming a
//! smaller size is retried once from that size (a proof that then fails
//! means the witness saw a different log: a fork).

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags};
use stele_attest::cosignature::CosignatureVerifier;
use stele_attest::{Checkpoint, NoteVerifier, SignedNote};

use super::protocol::AddCheckpoint;
use crate::error::AuditError;
use crate::merkle::consistency_proof;
use crate::schema::configure;
use crate::store::Store;

/// A witness to publish to.
#[derive(Debug, Clone)]
pub struct WitnessTarget {
    /// Base URL (the request goes to `<url>/add-checkpoint`).
    pub url: String,
    /// Its cosigning key.
    pub key: CosignatureVerifier,
}

/// What publishing achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReport {
    /// The size published.
    pub size: u64,
    /// Witnesses that cosigned it.
    pub cosigned: Vec<String>,
}

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A witness holds a larger tree for this log than this database: the
    /// database was rolled back (restored from an older copy) or truncated.
    #[error("ROLLBACK DETECTED: witness {witness} has cosigned {witness_size} entries of this log but this database holds only {our_size}; the audit database was rolled back or truncated — stop appending and investigate")]
    Rollback {
        /// The witness.
        witness: String,
        /// Its size.
        witness_size: u64,
        /// Ours.
        our_size: u64,
    },
    /// The witness's view is inconsistent with ours (a fork).
    #[error("FORK: witness {witness} rejected our consistency proof from size {from}: {detail}")]
    Fork {
        /// The witness.
        witness: String,
        /// Size the proof started from.
        from: u64,
        /// The witness's answer.
        detail: String,
    },
    /// The witness could not be reached (network, timeout).
    #[error("witness {witness} at {url} unreachable: {detail}")]
    Unreachable {
        /// The witness.
        witness: String,
        /// Its URL.
        url: String,
        /// What happened.
        detail: String,
    },
    /// The witness refused (other than a conflict) or answered badly.
    #[error("witness {witness}: {detail}")]
    Witness {
        /// The witness.
        witness: String,
        /// What happened.
        detail: String,
    },
    /// The log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl PublishError {
    /// True when a witness holds proof that this log's history changed
    /// (a rollback or a fork): the log must not be appended to any more.
    pub fn is_history_conflict(&self) -> bool {
        matches!(self, Self::Rollback { .. } | Self::Fork { .. })
    }
}

/// Publish the newest checkpoint of the log at `db` to every witness and
/// store their cosignatures. Fails at the first witness that cannot cosign.
pub fn publish_to_witnesses(
    db: &Path,
    log_key: &NoteVerifier,
    witnesses: &[WitnessTarget],
) -> Result<PublishReport, PublishError> {
    let mut report = PublishReport {
        size: 0,
        cosigned: Vec::new(),
    };
    for w in witnesses {
        let c = publish_to_witness(db, log_key, w)?;
        report.size = c.size;
        report.cosigned.push(c.witness);
    }
    if witnesses.is_empty() {
        report.size = Store::open(db)?.latest_checkpoint()?.map_or(0, |(s, _)| s);
    }
    Ok(report)
}

/// One witness's cosignature, checked and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigned {
    /// The witness name.
    pub witness: String,
    /// The checkpoint size it cosigned.
    pub size: u64,
}

/// Publish the newest checkpoint of the log at `db` to one witness, check
/// its cosignature and store it.
pub fn publish_to_witness(
    db: &Path,
    log_key: &NoteVerifier,
    w: &WitnessTarget,
) -> Result<Cosigned, PublishError> {
    let store = Store::open(db)?;
    let (size, note) = store
        .latest_checkpoint()?
        .ok_or_else(|| AuditError::NotFound("checkpoint".into()))?;
    // A witness must never hold a checkpoint a power failure could take
    // back (the log would then look rolled back): flush what was read.
    crate::durability::sync_wal(db)?;
    // The note must be ours: never send a checkpoint another key signed.
    Checkpoint::open(&note, log_key).map_err(AuditError::Sign)?;
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(AuditError::sqlite(db))?;
    configure(&conn).map_err(AuditError::sqlite(db))?;
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(15))
        .build();
    let name = w.key.name().to_string();
    let mut old: u64 = conn
        .query_row(
            "SELECT coalesce(max(size), 0) FROM cosignatures WHERE witness = ?1",
            [&name],
            |r| r.get::<_, i64>(0),
        )
        .map_err(AuditError::sqlite(db))? as u64;
    let mut retried = false;
    let line = loop {
        let proof = consistency_proof(&store, old.min(size), size)?;
        let body = AddCheckpoint {
            old,
            proof,
            note: note.clone(),
        }
        .to_body();
        let url = format!("{}/add-checkpoint", w.url.trim_end_matches('/'));
        let (status, text) = match agent
            .post(&url)
            .set("Content-Type", "text/plain")
            .send_string(&body)
        {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
            Err(e) => {
                return Err(PublishError::Unreachable {
                    witness: name,
                    url: w.url.clone(),
                    detail: e.to_string(),
                })
            }
        };
        match status {
            200 => break text,
            409 => {
                let theirs: u64 = text.trim().parse().map_err(|_| PublishError::Witness {
                    witness: name.clone(),
                    detail: format!("409 with a bad size {text:?}"),
                })?;
                if theirs > size {
                    return Err(PublishError::Rollback {
                        witness: name,
                        witness_size: theirs,
                        our_size: size,
                    });
                }
                if retried {
                    return Err(PublishError::Witness {
                        witness: name,
                        detail: format!("still conflicting at size {theirs}"),
                    });
                }
                old = theirs;
                retried = true;
            }
            422 => {
                return Err(PublishError::Fork {
                    witness: name,
                    from: old,
                    detail: text.trim().to_string(),
                })
            }
            code => {
                return Err(PublishError::Witness {
                    witness: name,
                    detail: format!("HTTP {code}: {}", text.trim()),
                })
            }
        }
    };
    // Check the cosignature before storing it.
    let mut signed = SignedNote::parse(&note).map_err(AuditError::Sign)?;
    let first = line.lines().next().unwrap_or_default();
    let sig = SignedNote::parse(&format!("{}\n{first}\n", signed.text)).map_err(|e| {
        PublishError::Witness {
            witness: name.clone(),
            detail: format!("bad cosignature line: {e}"),
        }
    })?;
    signed.signatures = sig.signatures;
    w.key
        .verify_note(&signed)
        .map_err(|e| PublishError::Witness {
            witness: name.clone(),
            detail: e.to_string(),
        })?;
    keep_cosignature(&conn, db, size, &name, first, &note)?;
    Ok(Cosigned {
        witness: name,
        size,
    })
}

/// Store a checked cosignature line by `witness` of the checkpoint `note`
/// (of `size` entries) in the log at `db`, and keep that checkpoint for
/// good: exports carry both. Also used by a worker for the cosignatures
/// its server returns when it ships its log.
pub fn store_cosignature(
    db: &Path,
    size: u64,
    witness: &str,
    line: &str,
    note: &str,
) -> Result<(), AuditError> {
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(AuditError::sqlite(db))?;
    configure(&conn).map_err(AuditError::sqlite(db))?;
    keep_cosignature(&conn, db, size, witness, line, note)
}

fn keep_cosignature(
    conn: &Connection,
    db: &Path,
    size: u64,
    witness: &str,
    line: &str,
    note: &str,
) -> Result<(), AuditError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    conn.execute(
        "INSERT OR REPLACE INTO cosignatures(size, witness, line, received_at) VALUES (?1, ?2, ?3, ?4)",
        params![size as i64, witness, line, now as i64],
    )
    .map_err(AuditError::sqlite(db))?;
    // Kept for good from now on (the head row is replaced by every commit).
    conn.execute(
        "INSERT INTO checkpoints(size, note, published) VALUES (?1, ?2, 1) \
         ON CONFLICT(size) DO UPDATE SET published = 1",
        params![size as i64, note],
    )
    .map_err(AuditError::sqlite(db))?;
    Ok(())
}
