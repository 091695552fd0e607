//! Opening many signed checkpoints at once.
//!
//! A log signs a checkpoint for every group commit, so a busy log holds one
//! for every few dozen entries, and checking their Ed25519 signatures one by
//! one costs more than checking the entries. All of them are signed by one
//! trusted key, so they are checked together with Ed25519 batch verification
//! (`ed25519_dalek::verify_batch`: one multi-scalar multiplication with
//! 128-bit coefficients derived from all inputs), which accepts a batch only
//! if every signature in it is valid, except with probability about 2^-128.
//!
//! Every other rule of `Checkpoint::open` is applied to each note as before,
//! and when anything fails, the notes are opened one by one with
//! `Checkpoint::open` (strict single verification), so the first failing
//! note and its error are exactly the ones it reports.

use ed25519_dalek::{Signature, VerifyingKey};
use stele_attest::{AttestError, Checkpoint, NoteVerifier, SignedNote};

/// Open every note in `notes` with the log's key; returns their
/// checkpoints in order, or the position of the first note that fails and
/// why.
pub fn open_all(
    notes: &[&str],
    verifier: &NoteVerifier,
) -> Result<Vec<Checkpoint>, (usize, AttestError)> {
    match batch(notes, verifier) {
        Some(cps) => Ok(cps),
        None => notes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                Checkpoint::open(n, verifier)
                    .map(|(c, _)| c)
                    .map_err(|e| (i, e))
            })
            .collect(),
    }
}

/// The batch path; `None` when anything is off (then notes are opened one
/// by one to find and name the problem).
fn batch(notes: &[&str], verifier: &NoteVerifier) -> Option<Vec<Checkpoint>> {
    let key = VerifyingKey::from_bytes(&verifier.public_key()).ok()?;
    if key.is_weak() {
        return None;
    }
    let mut parsed = Vec::with_capacity(notes.len());
    let mut cps = Vec::with_capacity(notes.len());
    let mut sigs = Vec::with_capacity(notes.len());
    for note in notes {
        let n = SignedNote::parse(note).ok()?;
        // The same lines `SignedNote::verify` checks: every line naming
        // this key must hold a valid signature, and there must be one.
        let mine: Vec<&[u8]> = n
            .signatures
            .iter()
            .filter(|s| s.name == verifier.name() && s.key_id == verifier.key_id())
            .map(|s| s.sig.as_slice())
            .collect();
        if mine.is_empty() {
            return None;
        }
        for s in mine {
            sigs.push((parsed.len(), Signature::from_slice(s).ok()?));
        }
        let c = Checkpoint::parse_body(&n.text).ok()?;
        if c.origin != verifier.name() {
            return None;
        }
        cps.push(c);
        parsed.push(n);
    }
    let messages: Vec<&[u8]> = sigs
        .iter()
        .map(|(i, _)| parsed[*i].text.as_bytes())
        .collect();
    let signatures: Vec<Signature> = sigs.iter().map(|(_, s)| *s).collect();
    let keys = vec![key; signatures.len()];
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).ok()?;
    Some(cps)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use stele_attest::{Ed25519Signer, Signer as _};

    fn notes(signer: &Ed25519Signer, n: u64) -> Vec<String> {
        (1..=n)
            .map(|size| {
                Checkpoint {
                    origin: signer.name().to_string(),
                    size,
                    root: [size as u8; 32],
                }
                .sign(signer)
                .unwrap()
                .to_text()
            })
            .collect()
    }

    #[test]
    fn opens_valid_notes_and_names_the_first_bad_one() {
        let signer = Ed25519Signer::generate("example.org/log").unwrap();
        let v = signer.verifier();
        let good = notes(&signer, 40);
        let refs: Vec<&str> = good.iter().map(String::as_str).collect();
        let cps = open_all(&refs, &v).unwrap();
        assert_eq!(
            cps.iter().map(|c| c.size).collect::<Vec<_>>(),
            (1..=40).collect::<Vec<_>>()
        );

        // A changed root (signature no longer matches) at positions 7 and 30.
        let mut bad = good.clone();
        for at in [30, 7] {
            bad[at] = bad[at].replacen(&format!("\n{}\n", at + 1), &format!("\n{}\n", at + 100), 1);
        }
        let refs: Vec<&str> = bad.iter().map(String::as_str).collect();
        let (i, e) = open_all(&refs, &v).unwrap_err();
        assert_eq!(i, 7);
        assert!(matches!(e, AttestError::BadSignature(_)), "{e}");

        // A signature by another key with the same name.
        let other = Ed25519Signer::generate("example.org/log").unwrap();
        let mut forged = good;
        forged[3] = notes(&other, 4).pop().unwrap();
        let refs: Vec<&str> = forged.iter().map(String::as_str).collect();
        assert_eq!(open_all(&refs, &v).unwrap_err().0, 3);
    }
}
