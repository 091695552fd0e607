//! The `Signer` trait and the Ed25519 key held in memory.

use ed25519_dalek::{Signer as _, SigningKey};

use crate::error::AttestError;
use crate::note::{key_id, valid_key_name, NoteVerifier};

/// Produces Ed25519 signatures for one named key.
///
/// The log signs checkpoints only through this trait, so a hardware or cloud
/// key store can replace the file-backed key without touching the log.
pub trait Signer: Send + Sync {
    /// The key name (for a log: its origin).
    fn name(&self) -> &str;
    /// The raw Ed25519 public key.
    fn public_key(&self) -> [u8; 32];
    /// Sign `msg`.
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], AttestError>;

    /// The 4-byte signed-note key id of this key.
    fn key_id(&self) -> [u8; 4] {
        key_id(self.name(), &self.public_key())
    }

    /// The verifier for this key, for checking what it signed.
    fn verifier(&self) -> NoteVerifier {
        NoteVerifier::new(self.name(), self.public_key())
    }

    /// Where the private key is kept, in words (`stele doctor`, messages);
    /// never any secret.
    fn describe(&self) -> String {
        "Ed25519 key in process memory".to_string()
    }
}

/// An Ed25519 private key held in process memory (zeroed on drop).
pub struct Ed25519Signer {
    name: String,
    key: SigningKey,
}

impl std::fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Ed25519Signer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Ed25519Signer {
    /// A signer from a 32-byte seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, AttestError> {
        if !valid_key_name(name) {
            return Err(AttestError::KeyName(name.to_string()));
        }
        Ok(Self {
            name: name.to_string(),
            key: SigningKey::from_bytes(seed),
        })
    }

    /// A fresh random key.
    pub fn generate(name: &str) -> Result<Self, AttestError> {
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .map_err(|_| AttestError::Signing("system random source failed".into()))?;
        Self::from_seed(name, &seed)
    }

    /// The seed (private key); only the key file writer needs it.
    pub(crate) fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }
}

impl Signer for Ed25519Signer {
    fn name(&self) -> &str {
        &self.name
    }

    fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], AttestError> {
        Ok(self.key.sign(msg).to_bytes())
    }
}
