//! Errors of the PKCS#11 signer. Each names the module, token and key label
//! concerned; none ever holds the PIN.

use std::path::PathBuf;

/// What went wrong with a PKCS#11 key.
#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    /// The configuration is incomplete or contradictory.
    #[error("PKCS#11 key configuration: {0}")]
    Config(String),
    /// The PIN could not be read.
    #[error("PKCS#11 PIN: {0}")]
    Pin(String),
    /// The module (shared library) could not be loaded or initialised.
    #[error("PKCS#11 module {module}: {reason}")]
    Module {
        /// The module path.
        module: PathBuf,
        /// Why.
        reason: String,
    },
    /// No token (or more than one) carries the label.
    #[error("PKCS#11 module {module}: {reason}")]
    Token {
        /// The module path.
        module: PathBuf,
        /// Why (names the token label and the labels present).
        reason: String,
    },
    /// The key is missing, ambiguous or not an Ed25519 key stele made.
    #[error("PKCS#11 token {token:?} (module {module}): key {label:?}: {reason}")]
    Key {
        /// The module path.
        module: PathBuf,
        /// The token label.
        token: String,
        /// The key label.
        label: String,
        /// Why.
        reason: String,
    },
    /// A PKCS#11 call failed.
    #[error(
        "PKCS#11 token {token:?} (module {module}), key {label:?}: {operation} failed: {reason}"
    )]
    Call {
        /// The module path.
        module: PathBuf,
        /// The token label.
        token: String,
        /// The key label.
        label: String,
        /// The operation (login, sign, …).
        operation: &'static str,
        /// The PKCS#11 return value, named.
        reason: String,
    },
}
