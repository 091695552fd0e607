//! Which key signs the benchmark's checkpoints, and how long each
//! signature takes: the public in-process key, or a signer the caller
//! gives (`stele audit bench --signer configured`: the configuration's
//! PKCS#11 key, through its session pool) — so the cost of an HSM shows
//! as signing latency and as appends per second, measured the same way.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use stele_attest::{AttestError, Signer};

use crate::error::AuditError;

/// The key the benchmark signs with.
#[derive(Clone)]
pub enum BenchKey {
    /// An Ed25519 key in process memory, from a public seed (the logs it
    /// signs prove nothing; they are for timing).
    InMemory,
    /// A key the caller opened (a PKCS#11 token's, a key file's).
    Given(Arc<dyn Signer>),
}

impl std::fmt::Debug for BenchKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InMemory => f.write_str("InMemory"),
            Self::Given(s) => f.debug_tuple("Given").field(&s.describe()).finish(),
        }
    }
}

impl BenchKey {
    /// The signer.
    pub(crate) fn signer(&self) -> Result<Arc<dyn Signer>, AuditError> {
        match self {
            Self::InMemory => super::existing::bench_signer(),
            Self::Given(s) => Ok(s.clone()),
        }
    }

    /// What distinguishes cached logs signed by this key (a log opens only
    /// with the key that signs it): empty for the public key, else its
    /// key id.
    pub(crate) fn cache_tag(&self) -> String {
        match self {
            Self::InMemory => String::new(),
            Self::Given(s) => format!("-{}", hex::encode(s.key_id())),
        }
    }
}

/// How long checkpoint signatures took during one measured run.
#[derive(Debug, Clone, PartialEq)]
pub struct SigningFigures {
    /// Signatures made (one per group commit, more at rotations).
    pub signatures: u64,
    /// Median latency of one signature.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

/// A signer that times every signature of the signer it wraps.
pub(crate) struct TimedSigner {
    inner: Arc<dyn Signer>,
    samples: Mutex<Vec<Duration>>,
}

impl TimedSigner {
    pub(crate) fn new(inner: Arc<dyn Signer>) -> Self {
        Self {
            inner,
            samples: Mutex::new(Vec::new()),
        }
    }

    /// The figures of the signatures made since the last call (and forget
    /// them).
    pub(crate) fn take(&self) -> SigningFigures {
        let mut s =
            std::mem::take(&mut *self.samples.lock().unwrap_or_else(PoisonError::into_inner));
        s.sort();
        SigningFigures {
            signatures: s.len() as u64,
            p50: super::percentile(&s, 0.50),
            p99: super::percentile(&s, 0.99),
        }
    }
}

impl Signer for TimedSigner {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn public_key(&self) -> [u8; 32] {
        self.inner.public_key()
    }

    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], AttestError> {
        let t = Instant::now();
        let r = self.inner.sign(msg);
        let took = t.elapsed();
        self.samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(took);
        r
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_signature_is_timed_and_take_starts_afresh() {
        let t = TimedSigner::new(BenchKey::InMemory.signer().unwrap());
        for i in 0..10u8 {
            let sig = t.sign(&[i]).unwrap();
            assert!(t.verifier().verify(&[i], &sig));
        }
        let f = t.take();
        assert_eq!(f.signatures, 10);
        assert!(f.p50 <= f.p99);
        assert_eq!(t.take().signatures, 0);
    }

    #[test]
    fn a_given_key_has_its_own_cache_name() {
        let other: Arc<dyn Signer> = Arc::new(
            stele_attest::Ed25519Signer::from_seed("other.example/log", &[7; 32]).unwrap(),
        );
        assert_eq!(BenchKey::InMemory.cache_tag(), "");
        let tag = BenchKey::Given(other.clone()).cache_tag();
        assert_eq!(tag, format!("-{}", hex::encode(other.key_id())));
    }
}
