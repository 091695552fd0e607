//! C2SP tlog-checkpoint bodies (<https://c2sp.org/tlog-checkpoint>).
//!
//! `<origin>\n<size>\n<base64 root>\n` and nothing else: the C2SP format
//! allows extension lines after the root, stele's (docs/audit-format.md)
//! does not — it never writes them, and every verifier refuses them, so a
//! signed body means one thing only.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::error::AttestError;
use crate::note::SignedNote;
use crate::signer::Signer;
use crate::NoteVerifier;

/// A tree head: origin, size and root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (also the signing key name).
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// RFC 6962 root hash.
    pub root: [u8; 32],
}

impl Checkpoint {
    /// The note text (body) of this checkpoint.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parse a checkpoint body strictly.
    pub fn parse_body(text: &str) -> Result<Self, AttestError> {
        let bad = |r: &str| AttestError::CheckpointFormat(r.to_string());
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| bad("missing origin"))?;
        let size_s = lines.next().ok_or_else(|| bad("missing size"))?;
        if size_s.is_empty()
            || !size_s.bytes().all(|b| b.is_ascii_digit())
            || (size_s.len() > 1 && size_s.starts_with('0'))
        {
            return Err(bad("size must be a decimal number without leading zeros"));
        }
        let size: u64 = size_s.parse().map_err(|_| bad("size out of range"))?;
        let root_s = lines.next().ok_or_else(|| bad("missing root"))?;
        let root_v = B64.decode(root_s).map_err(|_| bad("root is not base64"))?;
        let root: [u8; 32] = root_v
            .as_slice()
            .try_into()
            .map_err(|_| bad("root must be 32 bytes"))?;
        if !text.ends_with('\n') {
            return Err(bad("must end with a newline"));
        }
        // After the root's newline: nothing.
        if lines.next() != Some("") || lines.next().is_some() {
            return Err(bad(
                "a checkpoint is exactly three lines (origin, size, root): extension lines are not allowed",
            ));
        }
        if !crate::note::valid_key_name(origin) {
            return Err(bad("origin holds a space, '+' or a control character"));
        }
        Ok(Self {
            origin: origin.to_string(),
            size,
            root,
        })
    }

    /// Sign this checkpoint as a signed note.
    pub fn sign(&self, signer: &dyn Signer) -> Result<SignedNote, AttestError> {
        if signer.name() != self.origin {
            return Err(AttestError::Signing(format!(
                "key name {:?} differs from checkpoint origin {:?}",
                signer.name(),
                self.origin
            )));
        }
        SignedNote::sign(&self.body(), signer)
    }

    /// Open a signed checkpoint note with the log's verifier key.
    pub fn open(note: &str, verifier: &NoteVerifier) -> Result<(Self, SignedNote), AttestError> {
        let n = SignedNote::open(note, verifier)?;
        let c = Self::parse_body(&n.text)?;
        if c.origin != verifier.name() {
            return Err(AttestError::CheckpointFormat(format!(
                "origin {:?} differs from key name {:?}",
                c.origin,
                verifier.name()
            )));
        }
        Ok((c, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Ed25519Signer;

    #[test]
    fn round_trip() {
        let s = Ed25519Signer::generate("example.com/log").unwrap();
        let c = Checkpoint {
            origin: "example.com/log".into(),
            size: 7,
            root: [9; 32],
        };
        let note = c.sign(&s).unwrap().to_text();
        let (back, _) = Checkpoint::open(&note, &s.verifier()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn strict_parse() {
        let root = B64.encode([1u8; 32]);
        assert!(Checkpoint::parse_body(&format!("o\n01\n{root}\n")).is_err());
        assert!(Checkpoint::parse_body(&format!("o\n-1\n{root}\n")).is_err());
        assert!(Checkpoint::parse_body("o\n1\nAAAA\n").is_err());
        assert!(Checkpoint::parse_body(&format!("\n1\n{root}\n")).is_err());
        assert_eq!(
            Checkpoint::parse_body(&format!("o\n0\n{root}\n"))
                .unwrap()
                .size,
            0
        );
        for ext in [
            format!("o\n1\n{root}\nextension\n"),
            format!("o\n1\n{root}\n\n"),
            format!("o\n1\n{root}\nx"),
            format!("o p\n1\n{root}\n"),
        ] {
            assert!(Checkpoint::parse_body(&ext).is_err(), "{ext:?}");
        }
    }
}
