//! C2SP tlog-cosignature v1 (<https://c2sp.org/tlog-cosignature>), Ed25519
//! algorithm (signature type 0x04).
//!
//! A witness signs `"cosignature/v1\ntime <t>\n" ‖ checkpoint body`, where
//! `<t>` is POSIX seconds; the note signature line carries
//! `key id (4) ‖ timestamp (8, big endian) ‖ Ed25519 signature (64)`. The key
//! id is `SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[..4]`, so a witness key can
//! never be mistaken for a log (type 0x01) key.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};

use crate::error::AttestError;
use crate::note::{key_id_for, valid_key_name, NoteSignature, SignedNote};
use crate::signer::Signer;

/// Signature type byte of Ed25519 cosignatures.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// The key id of a cosigning key.
pub fn cosigner_key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    key_id_for(ALG_COSIGNATURE_V1, name, public_key)
}

/// The message a cosigner signs.
pub fn signed_message(checkpoint_body: &str, timestamp: u64) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    m.extend_from_slice(checkpoint_body.as_bytes());
    m
}

/// Cosign a checkpoint body at `timestamp` (seconds since the epoch).
pub fn cosign(
    signer: &dyn Signer,
    checkpoint_body: &str,
    timestamp: u64,
) -> Result<NoteSignature, AttestError> {
    let sig = signer.sign(&signed_message(checkpoint_body, timestamp))?;
    let mut raw = timestamp.to_be_bytes().to_vec();
    raw.extend_from_slice(&sig);
    Ok(NoteSignature {
        name: signer.name().to_string(),
        key_id: cosigner_key_id(signer.name(), &signer.public_key()),
        sig: raw,
    })
}

/// A witness's public key in the vkey form `name+hex(id)+base64(0x04 ‖ key)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: String,
    id: [u8; 4],
    key: [u8; 32],
}

impl CosignatureVerifier {
    /// A verifier for the witness key `key` named `name`.
    pub fn new(name: &str, key: [u8; 32]) -> Self {
        Self {
            name: name.to_string(),
            id: cosigner_key_id(name, &key),
            key,
        }
    }

    /// The verifier of a signer's key used as a witness key.
    pub fn of(signer: &dyn Signer) -> Self {
        Self::new(signer.name(), signer.public_key())
    }

    /// Parse the vkey text form.
    pub fn parse(vkey: &str) -> Result<Self, AttestError> {
        let bad = |r: &str| AttestError::KeyFormat {
            path: None,
            reason: r.to_string(),
        };
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("witness key must look like name+hash+base64"));
        };
        if !valid_key_name(name) {
            return Err(AttestError::KeyName(name.to_string()));
        }
        let raw = B64
            .decode(b64)
            .map_err(|_| bad("witness key is not base64"))?;
        if raw.len() != 33 || raw[0] != ALG_COSIGNATURE_V1 {
            return Err(bad(
                "witness key must be type 0x04 (cosignature/v1 Ed25519) with a 32-byte key",
            ));
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&raw[1..]);
        let v = Self::new(name, key);
        if hex::encode(v.id) != id_hex {
            return Err(bad("witness key hash does not match the key"));
        }
        Ok(v)
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key id.
    pub fn key_id(&self) -> [u8; 4] {
        self.id
    }

    /// Whether a signature line claims to be by this key.
    pub fn matches(&self, s: &NoteSignature) -> bool {
        s.name == self.name && s.key_id == self.id
    }

    /// Verify a cosignature line over `checkpoint_body`; returns its timestamp.
    pub fn verify(&self, checkpoint_body: &str, s: &NoteSignature) -> Result<u64, AttestError> {
        let bad = || AttestError::BadSignature(format!("cosignature by {}", self.name));
        if !self.matches(s) || s.sig.len() != 72 {
            return Err(bad());
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&s.sig[..8]);
        let timestamp = u64::from_be_bytes(ts);
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&s.sig[8..]);
        let vk = VerifyingKey::from_bytes(&self.key).map_err(|_| bad())?;
        vk.verify_strict(
            &signed_message(checkpoint_body, timestamp),
            &Signature::from_bytes(&sig),
        )
        .map_err(|_| bad())?;
        Ok(timestamp)
    }

    /// Find and verify this witness's cosignature in a signed note.
    pub fn verify_note(&self, note: &SignedNote) -> Result<u64, AttestError> {
        let line = note
            .signatures
            .iter()
            .find(|s| self.matches(s))
            .ok_or_else(|| AttestError::NoteUnverified(format!("cosignature by {}", self.name)))?;
        self.verify(&note.text, line)
    }
}

impl std::fmt::Display for CosignatureVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = vec![ALG_COSIGNATURE_V1];
        raw.extend_from_slice(&self.key);
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            B64.encode(raw)
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Ed25519Signer;

    /// The example cosignature line of the C2SP tlog-cosignature document:
    /// its signature field decodes to 4 + 8 + 64 bytes whose timestamp is
    /// 0x641850CB read as a big-endian u64.
    #[test]
    fn parses_the_specification_example_line() {
        let note = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\
\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\
\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";
        let n = SignedNote::parse(note).unwrap();
        let w = &n.signatures[1];
        assert_eq!(w.name, "witness.example.com/w1");
        assert_eq!(w.sig.len(), 72);
        let ts = u64::from_be_bytes(w.sig[..8].try_into().unwrap());
        // 2023-03-20T12:25:47Z
        assert_eq!(ts, 1_679_315_147);
    }

    #[test]
    fn cosign_verify_and_reject() {
        let w = Ed25519Signer::from_seed("witness.test/w1", &[9; 32]).unwrap();
        let v = CosignatureVerifier::of(&w);
        assert_eq!(CosignatureVerifier::parse(&v.to_string()).unwrap(), v);
        // A log (0x01) key id differs from the cosigner (0x04) id for the same key.
        assert_ne!(v.key_id(), w.key_id());
        let body = "o\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let line = cosign(&w, body, 1_700_000_000).unwrap();
        assert_eq!(v.verify(body, &line).unwrap(), 1_700_000_000);
        assert!(v
            .verify(
                "o\n4\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
                &line
            )
            .is_err());
        let mut later = line.clone();
        later.sig[7] ^= 1; // changing the timestamp breaks the signature
        assert!(v.verify(body, &later).is_err());
    }
}
