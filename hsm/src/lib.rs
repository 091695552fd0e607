//! Ed25519 signing keys held in a PKCS#11 token: a hardware security
//! module, a cloud KMS's PKCS#11 front, or SoftHSM in tests.
//!
//! - [`Pkcs11Config`]: which module, token and key, and where the PIN comes
//!   from (a file or an environment variable; the PIN itself is never
//!   logged, printed or kept in a `Debug` form).
//! - [`Pkcs11Signer`]: a [`stele_attest::Signer`] whose private key never
//!   leaves the token (CKM_EDDSA), with a pool of sessions so that any
//!   thread can sign, and one reconnection on a token error before it fails
//!   (closed: no signature, so no checkpoint, so no append).
//! - [`generate`]: a new key pair made *in* the token, private part
//!   `CKA_SENSITIVE` and not `CKA_EXTRACTABLE`.
//!
//! The key's signed-note name (the log origin) is kept in the key objects'
//! `CKA_ID`, so a key found by its label also says which log it signs.

mod config;
mod error;
mod generate;
mod signer;
mod token;

pub use config::{PinSource, Pkcs11Config};
pub use error::HsmError;
pub use generate::{generate, KeyProtection};
pub use signer::Pkcs11Signer;
