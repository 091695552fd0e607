//! RFC 3161 timestamp tokens over checkpoints: the request sent to a Time
//! Stamping Authority, the token taken from its response, and the token's
//! verification (message imprint, CMS signature, the TSA certificate's
//! chain to a configured trust anchor, its time-stamping purpose and
//! validity). DER is parsed with RustCrypto's `cms`, `x509-cert` and
//! `x509-tsp`; signatures are checked with `ring`.
//!
//! What a token stamps is the SHA-256 of a signed checkpoint note as the
//! log signed it — the body and the log's own signature line, without
//! witness cosignatures (added later, and not the log's): see
//! [`imprint_of_checkpoint`].

use der::asn1::{Int, OctetString};
use der::{Decode, Encode};
use x509_cert::spki::AlgorithmIdentifier;
use x509_tsp::{MessageImprint, TimeStampReq, TimeStampResp, TspVersion};

mod oids;
mod sig;
mod verify;

pub use verify::{check_imprint, verify_token, Stamp, TsaTrust};

/// Why a timestamp request, response or token is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// Not DER of the expected structure.
    #[error("timestamp {what} is malformed: {detail}")]
    Malformed {
        /// Which structure.
        what: &'static str,
        /// The parser's complaint.
        detail: String,
    },
    /// The TSA did not grant the request.
    #[error("the TSA refused the request (status {status}){text}")]
    Refused {
        /// PKIStatus value.
        status: u8,
        /// Its status text, if any (with a leading ": ").
        text: String,
    },
    /// The token stamps another digest (or another hash algorithm).
    #[error("the token stamps {found}, not the checkpoint's SHA-256 {expected}")]
    WrongImprint {
        /// What the checkpoint hashes to.
        expected: String,
        /// What the token names.
        found: String,
    },
    /// The token answers another request.
    #[error("the token's nonce does not match the request's")]
    WrongNonce,
    /// The CMS structure is not a valid timestamp token.
    #[error("not a valid timestamp token: {0}")]
    Invalid(String),
    /// The signature does not verify.
    #[error("the token's signature does not verify: {0}")]
    BadSignature(String),
    /// The signer is not the configured TSA (or not issued by it).
    #[error("the token is not signed by a trusted TSA: {0}")]
    Untrusted(String),
    /// An algorithm this verifier does not accept.
    #[error("unsupported algorithm {0}")]
    Unsupported(String),
}

impl TimestampError {
    fn malformed(what: &'static str) -> impl Fn(der::Error) -> Self {
        move |e| Self::Malformed {
            what,
            detail: e.to_string(),
        }
    }
}

/// The digest a token over a checkpoint note stamps: SHA-256 of the note
/// with only the log's signature line (`log_key`'s), which must be there.
pub fn imprint_of_checkpoint(
    note: &str,
    log_key: &crate::NoteVerifier,
) -> Result<[u8; 32], TimestampError> {
    let mut n = crate::SignedNote::parse(note)
        .map_err(|e| TimestampError::Invalid(format!("checkpoint note: {e}")))?;
    n.signatures
        .retain(|s| s.name == log_key.name() && s.key_id == log_key.key_id());
    if n.signatures.is_empty() {
        return Err(TimestampError::Invalid(
            "the checkpoint carries no signature of the log's key".into(),
        ));
    }
    let d = ring::digest::digest(&ring::digest::SHA256, n.to_text().as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    Ok(out)
}

/// A DER `TimeStampReq` for a SHA-256 digest, asking for the TSA's
/// certificate in the token (so it verifies with only the trust anchor).
pub fn request_der(digest: &[u8; 32], nonce: u64) -> Result<Vec<u8>, TimestampError> {
    let enc = TimestampError::malformed("request");
    let req = TimeStampReq {
        version: TspVersion::V1,
        message_imprint: MessageImprint {
            hash_algorithm: AlgorithmIdentifier {
                oid: oids::SHA256,
                parameters: None,
            },
            hashed_message: OctetString::new(digest.to_vec()).map_err(&enc)?,
        },
        req_policy: None,
        nonce: Some(int_of_u64(nonce).map_err(&enc)?),
        cert_req: true,
        extensions: None,
    };
    req.to_der().map_err(enc)
}

/// The token (DER `ContentInfo`) in a DER `TimeStampResp`, when the TSA
/// granted the request. The token is checked by [`verify_token`], not here.
pub fn token_of_response(resp: &[u8]) -> Result<Vec<u8>, TimestampError> {
    let r = TimeStampResp::from_der(resp).map_err(TimestampError::malformed("response"))?;
    let status = r.status.status as u8;
    // granted (0) or grantedWithMods (1)
    if status > 1 {
        let text = r
            .status
            .status_string
            .as_ref()
            .map(|t| {
                let parts: Vec<String> = t.iter().map(|s| s.to_string()).collect();
                format!(": {}", parts.join("; "))
            })
            .unwrap_or_default();
        return Err(TimestampError::Refused { status, text });
    }
    let token = r
        .time_stamp_token
        .ok_or_else(|| TimestampError::Invalid("a granted response without a token".into()))?;
    token.to_der().map_err(TimestampError::malformed("token"))
}

/// A non-negative DER INTEGER of `v`.
fn int_of_u64(v: u64) -> der::Result<Int> {
    let mut b = v.to_be_bytes().to_vec();
    // Positive: a leading zero byte when the high bit is set.
    if b[0] & 0x80 != 0 {
        b.insert(0, 0);
    }
    while b.len() > 1 && b[0] == 0 && b[1] & 0x80 == 0 {
        b.remove(0);
    }
    Int::new(&b)
}
