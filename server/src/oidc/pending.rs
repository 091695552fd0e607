//! Logins started at the provider and not yet finished: the state, nonce
//! and PKCE verifier stay here on the server (never in the browser), for
//! `login_timeout_secs`, and are taken out by the first callback that
//! names them: a replayed or late callback finds nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openidconnect::{Nonce, PkceCodeVerifier};

/// Most logins waiting at once; more are refused until some finish or expire.
const MAX_PENDING: usize = 10_000;

/// One started login.
pub struct PendingLogin {
    /// The nonce the ID token must carry.
    pub nonce: Nonce,
    /// The PKCE verifier the code exchange sends.
    pub verifier: PkceCodeVerifier,
    /// SHA-256 of the secret in the browser's binding cookie.
    pub binding_hash: String,
    /// When it began.
    pub began: Instant,
}

/// Why a callback's state is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateRefusal {
    /// Never issued, or already used.
    Unknown,
    /// Issued longer ago than the login timeout.
    Expired,
    /// Issued to another browser (the binding cookie differs or is missing).
    OtherBrowser,
}

impl StateRefusal {
    /// Why, in words.
    pub fn reason(self) -> &'static str {
        match self {
            StateRefusal::Unknown => "unknown or already used login state",
            StateRefusal::Expired => "the login took too long (state expired)",
            StateRefusal::OtherBrowser => "the login was started in another browser",
        }
    }
}

/// The logins waiting for their callback.
#[derive(Default)]
pub struct Pending {
    by_state: Mutex<HashMap<String, PendingLogin>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

impl Pending {
    /// Keep a started login; false when too many are waiting.
    pub fn insert(&self, state: String, login: PendingLogin, ttl: Duration) -> bool {
        let Ok(mut m) = self.by_state.lock() else {
            return false;
        };
        m.retain(|_, p| p.began.elapsed() <= ttl);
        if m.len() >= MAX_PENDING {
            return false;
        }
        m.insert(state, login);
        true
    }

    /// Take out the login `state` names (single use), if it is live and
    /// was started by the browser holding `binding_hash`.
    pub fn take(
        &self,
        state: &str,
        binding_hash: Option<&str>,
        ttl: Duration,
    ) -> Result<PendingLogin, StateRefusal> {
        let Ok(mut m) = self.by_state.lock() else {
            return Err(StateRefusal::Unknown);
        };
        // Removed whatever the outcome: a state is tried once.
        let p = m.remove(state).ok_or(StateRefusal::Unknown)?;
        if p.began.elapsed() > ttl {
            return Err(StateRefusal::Expired);
        }
        if binding_hash != Some(p.binding_hash.as_str()) {
            return Err(StateRefusal::OtherBrowser);
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn login(binding: &str) -> PendingLogin {
        PendingLogin {
            nonce: Nonce::new("n".into()),
            verifier: PkceCodeVerifier::new("v".repeat(43)),
            binding_hash: binding.into(),
            began: Instant::now(),
        }
    }

    #[test]
    fn a_state_is_single_use_bound_to_its_browser_and_expires() {
        let p = Pending::default();
        let ttl = Duration::from_secs(60);
        assert!(p.insert("s1".into(), login("b"), ttl));
        assert!(p.take("s1", Some("b"), ttl).is_ok());
        assert_eq!(
            p.take("s1", Some("b"), ttl).err(),
            Some(StateRefusal::Unknown)
        );
        assert!(p.insert("s2".into(), login("b"), ttl));
        assert_eq!(
            p.take("s2", Some("x"), ttl).err(),
            Some(StateRefusal::OtherBrowser)
        );
        // Refused once is gone: the right browser cannot use it afterwards.
        assert_eq!(
            p.take("s2", Some("b"), ttl).err(),
            Some(StateRefusal::Unknown)
        );
        assert!(p.insert("s3".into(), login("b"), ttl));
        assert_eq!(
            p.take("s3", None, ttl).err(),
            Some(StateRefusal::OtherBrowser)
        );
        assert!(p.insert("s4".into(), login("b"), ttl));
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            p.take("s4", Some("b"), Duration::from_millis(5)).err(),
            Some(StateRefusal::Expired)
        );
        assert_eq!(
            p.take("never", Some("b"), ttl).err(),
            Some(StateRefusal::Unknown)
        );
    }
}
