//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 keys.
//!
//! A note is UTF-8 text ending in a newline, a blank line, then signature
//! lines `— <name> <base64(key id ‖ signature)>`. The key id is the first four
//! bytes of `SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use std::sync::Arc;

use crate::error::AttestError;
use crate::signer::Signer;
use crate::strict::StrictKey;

/// Signature type byte of Ed25519 in signed notes.
pub const ALG_ED25519: u8 = 0x01;
/// The signature line prefix: an em dash and a space.
const SIG_PREFIX: &str = "\u{2014} ";
/// At most this many signature lines are accepted (bounds work on hostile input).
const MAX_SIGNATURES: usize = 100;

/// True when `name` is allowed as a signed-note key name.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// The 4-byte key id of an Ed25519 key named `name`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    key_id_for(ALG_ED25519, name, public_key)
}

/// The 4-byte signed-note key id: `SHA-256(name ‖ "\n" ‖ alg ‖ key)[..4]`
/// (the signature type byte distinguishes log keys from cosigner keys).
pub fn key_id_for(alg: u8, name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[alg]);
    ctx.update(public_key);
    let d = ctx.finish();
    let mut id = [0u8; 4];
    id.copy_from_slice(&d.as_ref()[..4]);
    id
}

/// A public key that can check signatures in notes: `name+hash+base64`.
#[derive(Debug, Clone)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    key: [u8; 32],
    /// The key's precomputed tables, shared by clones.
    strict: Arc<StrictKey>,
}

impl PartialEq for NoteVerifier {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.key == other.key
    }
}

impl Eq for NoteVerifier {}

impl NoteVerifier {
    /// A verifier for an Ed25519 public key named `name`.
    pub fn new(name: &str, key: [u8; 32]) -> Self {
        Self {
            name: name.to_string(),
            id: key_id(name, &key),
            key,
            strict: Arc::new(StrictKey::new(key)),
        }
    }

    /// Parse the text form `name+hex(id)+base64(0x01 ‖ key)`.
    pub fn parse(vkey: &str) -> Result<Self, AttestError> {
        let bad = |reason: &str| AttestError::KeyFormat {
            path: None,
            reason: reason.to_string(),
        };
        let vkey = vkey.trim();
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("verifier key must look like name+hash+base64"));
        };
        if !valid_key_name(name) {
            return Err(AttestError::KeyName(name.to_string()));
        }
        let id = u32::from_str_radix(hash, 16)
            .ok()
            .filter(|_| hash.len() == 8)
            .ok_or_else(|| bad("key hash must be 8 hex digits"))?
            .to_be_bytes();
        let raw = B64
            .decode(key)
            .map_err(|_| bad("key is not valid base64"))?;
        if raw.len() != 33 || raw[0] != ALG_ED25519 {
            return Err(bad("key must be an Ed25519 key (type 0x01, 32 bytes)"));
        }
        let mut k = [0u8; 32];
        k.copy_from_slice(&raw[1..]);
        let v = Self::new(name, k);
        if v.id != id {
            return Err(bad("key hash does not match the name and key"));
        }
        if !v.strict.is_usable() {
            return Err(bad(
                "not a canonical Ed25519 point of large order (no signature could verify)",
            ));
        }
        Ok(v)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> [u8; 4] {
        self.id
    }

    /// The raw public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key
    }

    /// Check a raw Ed25519 signature over `msg` (strict verification, the
    /// one rule every path uses: [`crate::strict`]).
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> bool {
        self.strict.verify(msg, sig)
    }
}

impl std::fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_ED25519);
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

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name on the line.
    pub name: String,
    /// Key id (first four bytes of the decoded signature field).
    pub key_id: [u8; 4],
    /// The rest of the decoded field (64 bytes for Ed25519; longer for cosignatures).
    pub sig: Vec<u8>,
}

impl NoteSignature {
    /// The line as it appears in a note, without the trailing newline.
    pub fn line(&self) -> String {
        let mut raw = self.key_id.to_vec();
        raw.extend_from_slice(&self.sig);
        format!("{SIG_PREFIX}{} {}", self.name, B64.encode(raw))
    }
}

/// A parsed signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    /// The signed text (ends with a newline).
    pub text: String,
    /// All signature lines in order.
    pub signatures: Vec<NoteSignature>,
}

impl SignedNote {
    /// Sign `text` (must end with a newline) with one key.
    pub fn sign(text: &str, signer: &dyn Signer) -> Result<Self, AttestError> {
        check_text(text)?;
        let sig = signer.sign(text.as_bytes())?;
        Ok(Self {
            text: text.to_string(),
            signatures: vec![NoteSignature {
                name: signer.name().to_string(),
                key_id: signer.key_id(),
                sig: sig.to_vec(),
            }],
        })
    }

    /// Parse a note without verifying any signature.
    pub fn parse(note: &str) -> Result<Self, AttestError> {
        let bad = |r: &str| AttestError::NoteFormat(r.to_string());
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| bad("no blank line before signatures"))?;
        let text = &note[..split + 1];
        check_text(text)?;
        let sigs = &note[split + 2..];
        if !sigs.ends_with('\n') {
            return Err(bad("signature block must end with a newline"));
        }
        let mut signatures = Vec::new();
        for line in sigs[..sigs.len() - 1].split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(bad("too many signatures"));
            }
            let rest = line
                .strip_prefix(SIG_PREFIX)
                .ok_or_else(|| bad("signature line must start with an em dash and a space"))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| bad("signature line needs name and signature"))?;
            if !valid_key_name(name) {
                return Err(bad("invalid key name on a signature line"));
            }
            let raw = B64
                .decode(b64)
                .map_err(|_| bad("signature is not valid base64"))?;
            if raw.len() < 5 {
                return Err(bad("signature too short"));
            }
            let mut key_id = [0u8; 4];
            key_id.copy_from_slice(&raw[..4]);
            signatures.push(NoteSignature {
                name: name.to_string(),
                key_id,
                sig: raw[4..].to_vec(),
            });
        }
        if signatures.is_empty() {
            return Err(bad("no signatures"));
        }
        Ok(Self {
            text: text.to_string(),
            signatures,
        })
    }

    /// Parse and require a valid signature by `verifier`; a line claiming that
    /// key whose signature fails is an error, other keys' lines are ignored.
    pub fn open(note: &str, verifier: &NoteVerifier) -> Result<Self, AttestError> {
        let parsed = Self::parse(note)?;
        parsed.verify(verifier)?;
        Ok(parsed)
    }

    /// Require a valid Ed25519 signature by `verifier` on this note.
    pub fn verify(&self, verifier: &NoteVerifier) -> Result<(), AttestError> {
        let mut ok = false;
        for s in &self.signatures {
            if s.name != verifier.name() || s.key_id != verifier.key_id() {
                continue;
            }
            let sig: [u8; 64] = s
                .sig
                .as_slice()
                .try_into()
                .map_err(|_| AttestError::BadSignature(verifier.name().to_string()))?;
            if !verifier.verify(self.text.as_bytes(), &sig) {
                return Err(AttestError::BadSignature(verifier.name().to_string()));
            }
            ok = true;
        }
        if ok {
            Ok(())
        } else {
            Err(AttestError::NoteUnverified(verifier.to_string()))
        }
    }

    /// Add another signature (e.g. a second key during rotation).
    pub fn add_signature(&mut self, signer: &dyn Signer) -> Result<(), AttestError> {
        let sig = signer.sign(self.text.as_bytes())?;
        self.signatures.push(NoteSignature {
            name: signer.name().to_string(),
            key_id: signer.key_id(),
            sig: sig.to_vec(),
        });
        Ok(())
    }

    /// The note in its text form.
    pub fn to_text(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.line());
            out.push('\n');
        }
        out
    }
}

fn check_text(text: &str) -> Result<(), AttestError> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err(AttestError::NoteFormat(
            "text must be non-empty and end with a newline".into(),
        ));
    }
    if text.chars().any(|c| c != '\n' && c.is_control()) {
        return Err(AttestError::NoteFormat(
            "text contains control characters".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::Ed25519Signer;

    // The example from the C2SP signed-note specification.
    const SPEC_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const SPEC_NOTE: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn spec_vector_verifies() {
        let v = NoteVerifier::parse(SPEC_VKEY).unwrap();
        assert_eq!(hex::encode(v.key_id()), "c74f20a3");
        let n = SignedNote::open(SPEC_NOTE, &v).unwrap();
        assert!(n.text.starts_with("If you think"));
        assert_eq!(n.to_text(), SPEC_NOTE);
        assert_eq!(v.to_string(), SPEC_VKEY);
    }

    #[test]
    fn tampered_text_fails() {
        let v = NoteVerifier::parse(SPEC_VKEY).unwrap();
        let bad = SPEC_NOTE.replace("cryptography", "cryptographY");
        assert!(matches!(
            SignedNote::open(&bad, &v),
            Err(AttestError::BadSignature(_))
        ));
    }

    #[test]
    fn round_trip_and_other_key_rejected() {
        let a = Ed25519Signer::generate("example.com/log").unwrap();
        let b = Ed25519Signer::generate("example.com/log").unwrap();
        let note = SignedNote::sign("hello\n", &a).unwrap().to_text();
        assert!(SignedNote::open(&note, &a.verifier()).is_ok());
        assert!(matches!(
            SignedNote::open(&note, &b.verifier()),
            Err(AttestError::NoteUnverified(_))
        ));
        let parsed = NoteVerifier::parse(&a.verifier().to_string()).unwrap();
        assert_eq!(parsed, a.verifier());
    }

    #[test]
    fn malformed_notes_rejected() {
        for n in [
            "",
            "hello\n",
            "hello\n\n",
            "hello\n\n\u{2014} a\n",
            "hello\n\n- a AAAA\n",
        ] {
            assert!(SignedNote::parse(n).is_err(), "{n:?}");
        }
    }
}
