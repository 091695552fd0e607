//! RFC 3161 timestamps on checkpoints: the newest checkpoint's imprint
//! (`stele_attest::timestamp::imprint_of_checkpoint`) is sent to a
//! configured Time Stamping Authority over HTTP
//! (`application/timestamp-query`); the token it returns is verified
//! against the configured trust anchor — imprint, nonce, signature, chain,
//! purpose — before it is stored beside the checkpoint (kept for good, like
//! a witnessed one). Exports carry the tokens (`timestamps/<size>.tsr`) and
//! `stele-verify` checks them again.

use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use ring::rand::{SecureRandom as _, SystemRandom};
use rusqlite::{params, Connection, OpenFlags};
use stele_attest::timestamp::{
    imprint_of_checkpoint, request_der, token_of_response, verify_token, Stamp, TimestampError,
    TsaTrust,
};
use stele_attest::{Checkpoint, NoteVerifier};

use crate::error::AuditError;
use crate::schema::configure;
use crate::store::Store;

/// Largest TSA response read.
const MAX_RESPONSE: u64 = 256 * 1024;

/// A Time Stamping Authority to ask.
#[derive(Debug, Clone)]
pub struct TsaTarget {
    /// Its URL (the request is POSTed there).
    pub url: String,
    /// The certificate(s) its tokens must chain to.
    pub trust: TsaTrust,
    /// How long to wait for its answer.
    pub timeout: Duration,
}

/// A stored token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamped {
    /// The checkpoint size it stamps.
    pub size: u64,
    /// What the verified token says.
    pub stamp: Stamp,
    /// How long the TSA took to answer.
    pub round_trip: Duration,
}

/// Why stamping failed.
#[derive(Debug, thiserror::Error)]
pub enum TsaError {
    /// The TSA could not be reached.
    #[error("TSA {url} unreachable: {detail}")]
    Unreachable {
        /// Its URL.
        url: String,
        /// What happened.
        detail: String,
    },
    /// The TSA answered with an HTTP error or a wrong media type.
    #[error("TSA {url}: {detail}")]
    Http {
        /// Its URL.
        url: String,
        /// What it answered.
        detail: String,
    },
    /// The TSA's answer is not a token this log accepts.
    #[error("TSA {url}: {source}")]
    Token {
        /// Its URL.
        url: String,
        /// What is wrong with the token.
        source: TimestampError,
    },
    /// The log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Stamp the newest checkpoint of the log at `db` (unless it is stamped
/// already) and store the token. `log_key` is the log's verifier key.
pub fn stamp_latest(
    db: &Path,
    log_key: &NoteVerifier,
    tsa: &TsaTarget,
) -> Result<Stamped, TsaError> {
    let store = Store::open(db)?;
    let (size, note) = store
        .latest_checkpoint()?
        .ok_or_else(|| AuditError::NotFound("checkpoint".into()))?;
    drop(store);
    // The TSA must never stamp a checkpoint a power failure could take back.
    crate::durability::sync_wal(db)?;
    Checkpoint::open(&note, log_key).map_err(AuditError::Sign)?;
    let token_err = |source| TsaError::Token {
        url: tsa.url.clone(),
        source,
    };
    let digest = imprint_of_checkpoint(&note, log_key).map_err(token_err)?;
    let mut nb = [0u8; 8];
    SystemRandom::new()
        .fill(&mut nb)
        .map_err(|_| AuditError::Invalid("random source failed".into()))?;
    let nonce = u64::from_be_bytes(nb) >> 1;
    let req = request_der(&digest, nonce).map_err(token_err)?;
    let started = std::time::Instant::now();
    let resp = post(tsa, &req)?;
    let round_trip = started.elapsed();
    let token = token_of_response(&resp).map_err(token_err)?;
    let stamp = verify_token(&token, &digest, &tsa.trust).map_err(token_err)?;
    if stamp.nonce != Some(nonce) {
        return Err(token_err(TimestampError::WrongNonce));
    }
    store_token(db, size, &note, &token, &stamp)?;
    Ok(Stamped {
        size,
        stamp,
        round_trip,
    })
}

fn post(tsa: &TsaTarget, req: &[u8]) -> Result<Vec<u8>, TsaError> {
    let agent = ureq::AgentBuilder::new().timeout(tsa.timeout).build();
    let resp = match agent
        .post(&tsa.url)
        .set("Content-Type", "application/timestamp-query")
        .set("Accept", "application/timestamp-reply")
        .send_bytes(req)
    {
        Ok(r) => r,
        Err(ureq::Error::Status(code, r)) => {
            return Err(TsaError::Http {
                url: tsa.url.clone(),
                detail: format!("HTTP {code} {}", r.status_text()),
            })
        }
        Err(e) => {
            return Err(TsaError::Unreachable {
                url: tsa.url.clone(),
                detail: e.to_string(),
            })
        }
    };
    if resp.content_type() != "application/timestamp-reply" {
        return Err(TsaError::Http {
            url: tsa.url.clone(),
            detail: format!(
                "answered {:?}, not application/timestamp-reply",
                resp.content_type()
            ),
        });
    }
    let mut body = Vec::new();
    resp.into_reader()
        .take(MAX_RESPONSE)
        .read_to_end(&mut body)
        .map_err(|e| TsaError::Unreachable {
            url: tsa.url.clone(),
            detail: e.to_string(),
        })?;
    Ok(body)
}

/// Store a verified token for the checkpoint `note` at `size` (the
/// checkpoint is kept from now on).
fn store_token(
    db: &Path,
    size: u64,
    note: &str,
    token: &[u8],
    stamp: &Stamp,
) -> Result<(), AuditError> {
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(AuditError::sqlite(db))?;
    configure(&conn).map_err(AuditError::sqlite(db))?;
    crate::schema::upgrade_timestamps(&conn).map_err(AuditError::sqlite(db))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let tx = conn
        .unchecked_transaction()
        .map_err(AuditError::sqlite(db))?;
    tx.execute(
        "INSERT INTO checkpoints(size, note, published) VALUES (?1, ?2, 1) \
         ON CONFLICT(size) DO UPDATE SET published = 1",
        params![size as i64, note],
    )
    .map_err(AuditError::sqlite(db))?;
    tx.execute(
        "INSERT OR REPLACE INTO timestamps(size, token, tsa, gen_time, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![size as i64, token, stamp.tsa, stamp.gen_time_unix, now as i64],
    )
    .map_err(AuditError::sqlite(db))?;
    tx.commit().map_err(AuditError::sqlite(db))?;
    Ok(())
}
