//! Payload commitments: `SHA-256(salt ‖ body)` with a fresh 32-byte salt.
//!
//! The salt makes a commitment to a short or guessable body (a yes/no answer,
//! a name) impossible to confirm by hashing guesses; erasing body and salt
//! (redaction) leaves the commitment in the leaf and nothing to recover.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::digest::{digest, Context, SHA256};
use ring::rand::{SecureRandom as _, SystemRandom};

use crate::error::AuditError;
use crate::event::{Disclosure, PayloadInput, PayloadRef};
use crate::merkle::Hash;

/// Prefix of commitments in leaves.
pub const COMMIT_PREFIX: &str = "sha256s:";

/// A payload ready to store: its leaf reference plus what goes in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedPayload {
    /// Goes into the leaf.
    pub reference: PayloadRef,
    /// Raw commitment (table key).
    pub cmt: Hash,
    /// The salt.
    pub salt: [u8; 32],
    /// The body.
    pub body: Vec<u8>,
}

/// `SHA-256(salt ‖ body)`.
pub fn commitment(salt: &[u8], body: &[u8]) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(salt);
    c.update(body);
    let mut h = [0u8; 32];
    h.copy_from_slice(c.finish().as_ref());
    h
}

/// Text form used in leaves: `sha256s:<base64>`.
pub fn commit_text(cmt: &Hash) -> String {
    format!("{COMMIT_PREFIX}{}", B64.encode(cmt))
}

/// Parse `sha256s:<base64>` (or bare base64 / hex) into raw bytes.
pub fn parse_commit(text: &str) -> Option<Hash> {
    let t = text.strip_prefix(COMMIT_PREFIX).unwrap_or(text);
    if let Ok(v) = B64.decode(t) {
        if let Ok(h) = v.try_into() {
            return Some(h);
        }
    }
    hex::decode(t).ok()?.try_into().ok()
}

/// Salt and commit to a payload.
pub fn seal(rng: &SystemRandom, p: PayloadInput) -> Result<SealedPayload, AuditError> {
    let mut salt = [0u8; 32];
    rng.fill(&mut salt)
        .map_err(|_| AuditError::Invalid("system random source failed".into()))?;
    let cmt = commitment(&salt, &p.body);
    let sha256 = match p.disclosure {
        Disclosure::CommitmentOnly => None,
        Disclosure::WithDigest => Some(hex::encode(digest(&SHA256, &p.body))),
    };
    Ok(SealedPayload {
        reference: PayloadRef {
            commit: commit_text(&cmt),
            media: p.media,
            role: p.role,
            sha256,
            size: p.body.len() as u64,
        },
        cmt,
        salt,
        body: p.body,
    })
}
