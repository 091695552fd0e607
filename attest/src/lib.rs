//! Signing identities and signed statements for stele.
//!
//! - [`Signer`]: the one interface for producing signatures (an HSM or KMS can
//!   implement it later); [`Ed25519Signer`] is the file-backed implementation.
//! - [`keyfile`]: private key files (mode 0600) and verifier keys in the C2SP
//!   signed-note text form (`name+hash+base64`).
//! - [`note`]: C2SP signed notes (sign, open, verify).
//! - [`checkpoint`]: C2SP tlog-checkpoint bodies; [`cosignature`]: C2SP
//!   witness cosignatures (type 0x04).
//! - [`dsse`] envelopes around [`intoto`] statements (signed exports and
//!   session attestations).

pub mod checkpoint;
pub mod cosignature;
pub mod dsse;
pub mod error;
pub mod intoto;
pub mod keyfile;
pub mod note;
pub mod private_fs;
pub mod signer;
pub mod strict;
pub mod timestamp;

pub use checkpoint::Checkpoint;
pub use error::AttestError;
pub use keyfile::{generate_key_file, load_key_file};
pub use note::{NoteVerifier, SignedNote};
pub use signer::{Ed25519Signer, Signer};
