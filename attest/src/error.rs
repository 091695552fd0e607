//! Errors of the attest crate.

use std::path::PathBuf;

/// Everything that can go wrong signing, parsing or verifying.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// A key file could not be read or written.
    #[error("key file {path}: {source}")]
    KeyIo {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key file exists with permissions others can read.
    #[error(
        "key file {path} has mode {mode:o}; it must not be readable by group or others (chmod 600)"
    )]
    KeyPermissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// A key file or verifier key string is malformed.
    #[error("malformed key{}: {reason}", .path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    KeyFormat {
        /// The file, when the key came from one.
        path: Option<PathBuf>,
        /// What is wrong.
        reason: String,
    },
    /// A key name is not allowed in the signed-note format.
    #[error(
        "invalid key name {0:?}: must be non-empty, with no spaces, '+' or control characters"
    )]
    KeyName(String),
    /// A signed note is malformed.
    #[error("malformed signed note: {0}")]
    NoteFormat(String),
    /// No signature from the required key verified.
    #[error("signed note: no valid signature by {0}")]
    NoteUnverified(String),
    /// A signature line from a known key did not verify.
    #[error("signed note: signature by {0} does not verify")]
    BadSignature(String),
    /// A checkpoint body is malformed.
    #[error("malformed checkpoint: {0}")]
    CheckpointFormat(String),
    /// The signer failed (e.g. an HSM error).
    #[error("signing failed: {0}")]
    Signing(String),
    /// A DSSE envelope or in-toto statement is malformed or of the wrong type.
    #[error("envelope: {0}")]
    Envelope(String),
}
