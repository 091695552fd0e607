//! Signature checks for tokens and certificates: RSA PKCS#1 v1.5 and ECDSA
//! (P-256, P-384) with SHA-2, through `ring`. Anything else is refused
//! by name.

use der::oid::ObjectIdentifier as Oid;
use ring::signature::{self as rs, UnparsedPublicKey, VerificationAlgorithm};
use x509_cert::spki::SubjectPublicKeyInfoOwned;

use super::oids;
use super::TimestampError;

/// A SHA-2 digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Digest {
    Sha256,
    Sha384,
    Sha512,
}

impl Digest {
    pub(crate) fn of(oid: &Oid) -> Result<Self, TimestampError> {
        match *oid {
            oids::SHA256 => Ok(Self::Sha256),
            oids::SHA384 => Ok(Self::Sha384),
            oids::SHA512 => Ok(Self::Sha512),
            other => Err(TimestampError::Unsupported(format!("digest {other}"))),
        }
    }

    pub(crate) fn hash(self, data: &[u8]) -> Vec<u8> {
        let alg = match self {
            Self::Sha256 => &ring::digest::SHA256,
            Self::Sha384 => &ring::digest::SHA384,
            Self::Sha512 => &ring::digest::SHA512,
        };
        ring::digest::digest(alg, data).as_ref().to_vec()
    }
}

/// Check `sig` over `msg` by the key `spki` under the signature algorithm
/// `alg`; `digest` is the hash to use when `alg` names none
/// (`rsaEncryption` in a CMS signer info).
pub(crate) fn verify(
    spki: &SubjectPublicKeyInfoOwned,
    alg: &Oid,
    digest: Option<Digest>,
    msg: &[u8],
    sig: &[u8],
) -> Result<(), TimestampError> {
    let unsupported = || {
        TimestampError::Unsupported(format!("signature {alg} with a {} key", spki.algorithm.oid))
    };
    let scheme: &'static dyn VerificationAlgorithm = match spki.algorithm.oid {
        oids::RSA => match (*alg, digest) {
            (oids::RSA_SHA256, _) | (oids::RSA, Some(Digest::Sha256)) => {
                &rs::RSA_PKCS1_2048_8192_SHA256
            }
            (oids::RSA_SHA384, _) | (oids::RSA, Some(Digest::Sha384)) => {
                &rs::RSA_PKCS1_2048_8192_SHA384
            }
            (oids::RSA_SHA512, _) | (oids::RSA, Some(Digest::Sha512)) => {
                &rs::RSA_PKCS1_2048_8192_SHA512
            }
            _ => return Err(unsupported()),
        },
        oids::EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<Oid>().ok());
            match (curve, *alg) {
                (Some(oids::P256), oids::ECDSA_SHA256) => &rs::ECDSA_P256_SHA256_ASN1,
                (Some(oids::P256), oids::ECDSA_SHA384) => &rs::ECDSA_P256_SHA384_ASN1,
                (Some(oids::P384), oids::ECDSA_SHA256) => &rs::ECDSA_P384_SHA256_ASN1,
                (Some(oids::P384), oids::ECDSA_SHA384) => &rs::ECDSA_P384_SHA384_ASN1,
                _ => return Err(unsupported()),
            }
        }
        _ => return Err(unsupported()),
    };
    UnparsedPublicKey::new(scheme, spki.subject_public_key.raw_bytes())
        .verify(msg, sig)
        .map_err(|_| TimestampError::BadSignature(format!("{alg} signature does not match")))
}
