//! Opening many signed checkpoints at once.
//!
//! A log signs a checkpoint for every group commit, so a busy log holds one
//! for every few entries to every few dozen. Each is opened with
//! `Checkpoint::open`: strict Ed25519 verification, the one rule every path
//! uses (`stele_attest::strict`). Batch verification used to check them
//! together, but its random linear combination accepts, with a probability
//! an attacker can retry for, a signature whose `R` carries a small-order
//! component — one that strict verification (the start-up check,
//! `stele-verify`, third-party verifiers) rejects. The trusted key's
//! multiples are precomputed once instead (`NoteVerifier`), which keeps
//! most of the speed batching gave.

use stele_attest::{AttestError, Checkpoint, NoteVerifier};

/// Open every note in `notes` with the log's key; returns their
/// checkpoints in order, or the position of the first note that fails and
/// why.
pub fn open_all(
    notes: &[&str],
    verifier: &NoteVerifier,
) -> Result<Vec<Checkpoint>, (usize, AttestError)> {
    notes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            Checkpoint::open(n, verifier)
                .map(|(c, _)| c)
                .map_err(|e| (i, e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;
    use curve25519_dalek::edwards::CompressedEdwardsY;
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

    /// The note with its signature's R replaced by R + T.
    fn perturbed(note: &str, t: &curve25519_dalek::EdwardsPoint) -> String {
        let (body, line) = note.split_once("\n\n").unwrap();
        let (head, b64) = line.trim_end().rsplit_once(' ').unwrap();
        let mut raw = B64.decode(b64).unwrap();
        let r = CompressedEdwardsY(raw[4..36].try_into().unwrap())
            .decompress()
            .unwrap();
        raw[4..36].copy_from_slice(&(r + t).compress().to_bytes());
        format!("{body}\n\n{head} {}\n", B64.encode(raw))
    }

    /// A checkpoint re-signed so that only the cofactored equation holds
    /// (R' = R + a small-order point) is rejected every time, wherever it
    /// sits among valid ones: the old batch path let it through in most
    /// trials.
    #[test]
    fn small_order_perturbed_signatures_are_always_rejected() {
        let signer = Ed25519Signer::generate("example.org/log").unwrap();
        let v = signer.verifier();
        let good = notes(&signer, 24);
        for (k, t) in curve25519_dalek::constants::EIGHT_TORSION
            .iter()
            .enumerate()
            .skip(1)
        {
            for trial in 0..6 {
                let at = (k * 5 + trial * 3) % good.len();
                let mut bad = good.clone();
                bad[at] = perturbed(&good[at], t);
                let refs: Vec<&str> = bad.iter().map(String::as_str).collect();
                let (i, e) = open_all(&refs, &v).unwrap_err();
                assert_eq!(i, at, "torsion point {k}, trial {trial}");
                assert!(matches!(e, AttestError::BadSignature(_)), "{e}");
                // Two perturbed notes (their torsion could cancel in a sum).
                let other = (at + 11) % good.len();
                bad[other] = perturbed(&good[other], &-t);
                let refs: Vec<&str> = bad.iter().map(String::as_str).collect();
                assert_eq!(open_all(&refs, &v).unwrap_err().0, at.min(other));
            }
        }
    }
}
