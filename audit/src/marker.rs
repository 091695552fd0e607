//! The log's record of its own verification, kept in `meta` as notes signed
//! with the log key (so someone with the database but not the key can
//! delete or replay an older one — which only makes stele verify more —
//! but cannot forge progress).
//!
//! - [`VerifiedThrough`]: every entry below `size` has been checked once in
//!   full (by the start-up check of the entries appended since the previous
//!   start-up, or by a full verification), and the tree root at `size` was
//!   `root`. The next start-up checks only the entries from `size` on.
//! - [`FullCheck`]: when the whole log was last verified (every entry,
//!   every checkpoint, every payload, the database's structure), up to which
//!   size, and what it found. A log found altered stays refused.
//!
//! Note bodies (C2SP signed notes; the first line keeps them apart from
//! checkpoints, whose first line is the origin):
//!
//! ```text
//! stele.dev/verified-through/v1      stele.dev/full-check/v1
//! <origin>                           <origin>
//! <size>                             <size>
//! <base64 root>                      <base64 root>
//!                                    <unix seconds at the end of the check>
//!                                    verified | tampered [<index>]
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use stele_attest::{NoteVerifier, SignedNote, Signer};

use crate::error::AuditError;
use crate::leaf::parse_hash_b64;
use crate::merkle::Hash;

/// `meta` key of the [`VerifiedThrough`] note.
pub(crate) const VERIFIED_THROUGH: &str = "verified_through";
/// `meta` key of the [`FullCheck`] note.
pub(crate) const FULL_CHECK: &str = "full_check";

const VT_HEADER: &str = "stele.dev/verified-through/v1";
const FULL_HEADER: &str = "stele.dev/full-check/v1";

/// Entries `[0, size)` were each checked once; the root at `size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VerifiedThrough {
    pub size: u64,
    pub root: Hash,
}

/// What a full verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finding {
    Verified,
    Tampered(Option<u64>),
}

/// The last full verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FullCheck {
    pub size: u64,
    pub root: Hash,
    /// Unix seconds when it ended.
    pub at: u64,
    pub finding: Finding,
}

impl VerifiedThrough {
    /// The signed note text.
    pub fn sign(&self, signer: &dyn Signer) -> Result<String, AuditError> {
        let body = format!(
            "{VT_HEADER}\n{}\n{}\n{}\n",
            signer.name(),
            self.size,
            B64.encode(self.root)
        );
        Ok(SignedNote::sign(&body, signer)?.to_text())
    }

    /// Parse and check a stored note; `None` when it does not verify with
    /// the log's key or is not this kind of note.
    pub fn open(note: &str, verifier: &NoteVerifier) -> Option<Self> {
        let lines = open_lines(note, verifier, VT_HEADER)?;
        match lines.as_slice() {
            [size, root] => Some(Self {
                size: number(size)?,
                root: parse_hash_b64(root)?,
            }),
            _ => None,
        }
    }
}

impl FullCheck {
    /// The signed note text.
    pub fn sign(&self, signer: &dyn Signer) -> Result<String, AuditError> {
        let finding = match self.finding {
            Finding::Verified => "verified".to_string(),
            Finding::Tampered(None) => "tampered".to_string(),
            Finding::Tampered(Some(i)) => format!("tampered {i}"),
        };
        let body = format!(
            "{FULL_HEADER}\n{}\n{}\n{}\n{}\n{finding}\n",
            signer.name(),
            self.size,
            B64.encode(self.root),
            self.at
        );
        Ok(SignedNote::sign(&body, signer)?.to_text())
    }

    /// Parse and check a stored note (see [`VerifiedThrough::open`]).
    pub fn open(note: &str, verifier: &NoteVerifier) -> Option<Self> {
        let lines = open_lines(note, verifier, FULL_HEADER)?;
        let [size, root, at, finding] = lines.as_slice() else {
            return None;
        };
        let finding = match finding.split_once(' ') {
            None if *finding == "verified" => Finding::Verified,
            None if *finding == "tampered" => Finding::Tampered(None),
            Some(("tampered", i)) => Finding::Tampered(Some(number(i)?)),
            _ => return None,
        };
        Some(Self {
            size: number(size)?,
            root: parse_hash_b64(root)?,
            at: number(at)?,
            finding,
        })
    }
}

/// The body lines after the header and origin of a note signed by the log
/// key.
fn open_lines<'a>(note: &'a str, verifier: &NoteVerifier, header: &str) -> Option<Vec<&'a str>> {
    SignedNote::open(note, verifier).ok()?;
    let (body, _) = note.split_once("\n\n")?;
    let mut lines = body.split('\n');
    if lines.next()? != header || lines.next()? != verifier.name() {
        return None;
    }
    Some(lines.collect())
}

/// A decimal number without leading zeros.
fn number(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

/// Unix seconds now.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use stele_attest::Ed25519Signer;

    #[test]
    fn round_trip_and_forgeries() {
        let k = Ed25519Signer::from_seed("audit.test/log", &[3; 32]).unwrap();
        let v = k.verifier();
        let vt = VerifiedThrough {
            size: 12,
            root: [7; 32],
        };
        let note = vt.sign(&k).unwrap();
        assert_eq!(VerifiedThrough::open(&note, &v), Some(vt));
        assert_eq!(FullCheck::open(&note, &v), None, "kinds do not mix");
        for f in [
            Finding::Verified,
            Finding::Tampered(None),
            Finding::Tampered(Some(4)),
        ] {
            let fc = FullCheck {
                size: 9,
                root: [1; 32],
                at: 1_700_000_000,
                finding: f,
            };
            assert_eq!(FullCheck::open(&fc.sign(&k).unwrap(), &v), Some(fc));
        }
        // Edited size: the signature no longer holds.
        assert_eq!(
            VerifiedThrough::open(&note.replace("\n12\n", "\n13\n"), &v),
            None
        );
        // Signed by another key of the same name.
        let other = Ed25519Signer::from_seed("audit.test/log", &[4; 32]).unwrap();
        assert_eq!(VerifiedThrough::open(&vt.sign(&other).unwrap(), &v), None);
    }
}
