//! The provider's signing keys when it rotates them: an ID token whose
//! header names a key id (`kid`) the cached JWKS lacks makes the server
//! fetch the JWKS again — at most once per [`MIN_REFETCH_INTERVAL`], so
//! a flood of tokens naming made-up key ids cannot make the server hammer
//! the provider — and verify against the fresh set. A key id still unknown
//! is refused (and the refusal recorded like every failed login).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use openidconnect::core::CoreProviderMetadata;
use openidconnect::JsonWebKey as _;

/// Least time between two refetches caused by unknown key ids.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// The key id an ID token's (not yet verified) header names, if any.
pub fn header_kid(jwt: &str) -> Option<String> {
    let header = jwt.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("kid")?.as_str().map(str::to_string)
}

/// Whether the provider's cached key set has a key with id `kid`.
pub fn knows(meta: &CoreProviderMetadata, kid: &str) -> bool {
    meta.jwks()
        .keys()
        .iter()
        .any(|k| k.key_id().is_some_and(|id| id.as_str() == kid))
}

/// `kid` as it may appear in a message (it comes from an unverified token).
pub fn shown(kid: &str) -> String {
    let cut: String = kid.chars().take(80).collect();
    format!("{cut:?}")
}

/// When unknown key ids last caused a refetch.
#[derive(Debug, Default)]
pub struct RefetchLimit {
    last: Mutex<Option<Instant>>,
}

impl RefetchLimit {
    /// Whether a refetch may happen at `now` (and if so, it counts as done).
    pub fn allow(&self, now: Instant) -> bool {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *last {
            Some(at) if now.saturating_duration_since(at) < MIN_REFETCH_INTERVAL => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn refetches_are_spaced() {
        let limit = RefetchLimit::default();
        let t = Instant::now();
        assert!(limit.allow(t));
        assert!(!limit.allow(t + Duration::from_secs(1)));
        assert!(!limit.allow(t + MIN_REFETCH_INTERVAL - Duration::from_millis(1)));
        assert!(limit.allow(t + MIN_REFETCH_INTERVAL));
        assert!(!limit.allow(t + MIN_REFETCH_INTERVAL + Duration::from_secs(1)));
    }

    #[test]
    fn the_key_id_comes_from_the_header() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256","kid":"k-2"}"#),
            b64(r#"{"kid":"not-this"}"#)
        );
        assert_eq!(header_kid(&jwt).as_deref(), Some("k-2"));
        assert_eq!(
            header_kid(&format!("{}.e30.", b64(r#"{"alg":"RS256"}"#))),
            None
        );
        assert_eq!(header_kid("garbage"), None);
        assert_eq!(shown(&"x".repeat(200)).len(), 82);
    }
}
