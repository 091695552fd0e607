//! Strict Ed25519 verification for one trusted key, checked many times.
//!
//! Every signature stele checks — a checkpoint in the database, in an
//! export, in a proof, at start-up — goes through [`StrictKey::verify`], so
//! every path gives the same answer. The rule is that of
//! `ed25519_dalek::VerifyingKey::verify_strict` (a property test compares
//! the two on valid, altered and small-order-perturbed signatures):
//!
//! - `s` is a canonical scalar (`s < ℓ`);
//! - neither the public key `A` nor `R` is a point of small order;
//! - the *encoding* of `[s]B − [k]A`, `k = SHA-512(R ‖ A ‖ M) mod ℓ`, equals
//!   the 32 bytes of `R` (cofactorless: a signature whose `R` carries a
//!   small-order component, which the cofactored and batch equations accept,
//!   is rejected; so is a non-canonical encoding of `R`).
//!
//! Batch verification cannot give this answer (its random linear
//! combination cannot see small-order components deterministically), so
//! there is none. Instead the key's multiples are precomputed once
//! (`VartimeEdwardsPrecomputation` over `B` and `−A`), which makes each
//! check cheaper than `verify_strict` (no decompression of `R`, no
//! per-call table for `A`): see `examples/sig_cost.rs`.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint, VartimeEdwardsPrecomputation};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::VartimePrecomputedMultiscalarMul;

/// A trusted Ed25519 public key with its precomputed tables.
pub struct StrictKey {
    key: [u8; 32],
    /// `None` when the key is not a valid, canonical point of large order:
    /// then nothing verifies.
    table: Option<VartimeEdwardsPrecomputation>,
}

impl std::fmt::Debug for StrictKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrictKey")
            .field("key", &hex::encode(self.key))
            .field("usable", &self.table.is_some())
            .finish()
    }
}

impl StrictKey {
    /// Precompute for `key` (the 32-byte encoding of `A`).
    pub fn new(key: [u8; 32]) -> Self {
        let table = usable_point(&key).map(|a| {
            VartimeEdwardsPrecomputation::new([
                curve25519_dalek::constants::ED25519_BASEPOINT_POINT,
                -a,
            ])
        });
        Self { key, table }
    }

    /// Whether `key` is a canonical encoding of a point that is not of
    /// small order (the only keys anything can verify under).
    pub fn is_usable(&self) -> bool {
        self.table.is_some()
    }

    /// Strict verification of `sig` over `msg` (see the module docs).
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> bool {
        let Some(table) = &self.table else {
            return false;
        };
        let mut r = [0u8; 32];
        r.copy_from_slice(&sig[..32]);
        let mut s = [0u8; 32];
        s.copy_from_slice(&sig[32..]);
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s)) else {
            return false;
        };
        let mut h = ring::digest::Context::new(&ring::digest::SHA512);
        h.update(&r);
        h.update(&self.key);
        h.update(msg);
        let mut wide = [0u8; 64];
        wide.copy_from_slice(h.finish().as_ref());
        let k = Scalar::from_bytes_mod_order_wide(&wide);
        let expected = table.vartime_multiscalar_mul([s, k]);
        // Equal encodings: R is exactly this point, canonically encoded.
        expected.compress().to_bytes() == r && !expected.is_small_order()
    }
}

/// The point `key` encodes, if canonical and not of small order.
fn usable_point(key: &[u8; 32]) -> Option<EdwardsPoint> {
    let p = CompressedEdwardsY(*key).decompress()?;
    (p.compress().to_bytes() == *key && !p.is_small_order()).then_some(p)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};

    fn dalek_strict(key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
        ed25519_dalek::VerifyingKey::from_bytes(key)
            .map(|k| {
                k.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
                    .is_ok()
            })
            .unwrap_or(false)
    }

    /// R + T for each point T of the small-order subgroup (encodings of
    /// the eight torsion points).
    fn torsion() -> Vec<EdwardsPoint> {
        let t = curve25519_dalek::constants::EIGHT_TORSION;
        t.to_vec()
    }

    #[test]
    fn agrees_with_verify_strict_on_valid_altered_and_torsion_signatures() {
        for seed in 0u8..24 {
            let sk = SigningKey::from_bytes(&[seed; 32]);
            let key = sk.verifying_key().to_bytes();
            let strict = StrictKey::new(key);
            assert!(strict.is_usable());
            for m in 0..4u8 {
                let msg = vec![m; usize::from(seed) * 7 + usize::from(m)];
                let sig = sk.sign(&msg).to_bytes();
                assert!(strict.verify(&msg, &sig), "valid signature rejected");
                assert!(dalek_strict(&key, &msg, &sig));
                // One flipped bit anywhere.
                for bit in [0usize, 100, 255, 256, 300, 511] {
                    let mut bad = sig;
                    bad[bit / 8] ^= 1 << (bit % 8);
                    assert_eq!(strict.verify(&msg, &bad), dalek_strict(&key, &msg, &bad));
                    assert!(!strict.verify(&msg, &bad));
                }
                // R' = R + T: passes the cofactored equation, never strict.
                let r = CompressedEdwardsY(sig[..32].try_into().unwrap())
                    .decompress()
                    .unwrap();
                for t in torsion() {
                    let mut m2 = sig;
                    m2[..32].copy_from_slice(&(r + t).compress().to_bytes());
                    let want = dalek_strict(&key, &msg, &m2);
                    assert_eq!(strict.verify(&msg, &m2), want);
                    assert_eq!(want, t.is_identity_point(), "torsion {t:?}");
                }
                // s + ℓ: same point, non-canonical scalar.
                let mut big = sig;
                let s = Scalar::from_canonical_bytes(sig[32..].try_into().unwrap()).unwrap();
                let l_plus = add_l(&s.to_bytes());
                if let Some(b) = l_plus {
                    big[32..].copy_from_slice(&b);
                    assert!(!strict.verify(&msg, &big));
                    assert!(!dalek_strict(&key, &msg, &big));
                }
            }
        }
    }

    #[test]
    fn small_order_and_non_canonical_keys_verify_nothing() {
        for t in torsion() {
            let k = StrictKey::new(t.compress().to_bytes());
            assert!(!k.is_usable());
            assert!(!k.verify(b"x", &[0; 64]));
        }
        // y = p (non-canonical encoding of y = 0): not usable.
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        assert!(!StrictKey::new(p).is_usable());
    }

    /// `s + ℓ` as 32 little-endian bytes, when it fits in 256 bits.
    fn add_l(s: &[u8; 32]) -> Option<[u8; 32]> {
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(s[i]) + u16::from(L[i]) + carry;
            out[i] = v as u8;
            carry = v >> 8;
        }
        (carry == 0).then_some(out)
    }

    trait Identity {
        fn is_identity_point(&self) -> bool;
    }
    impl Identity for EdwardsPoint {
        fn is_identity_point(&self) -> bool {
            use curve25519_dalek::traits::IsIdentity as _;
            self.is_identity()
        }
    }
}
