//! Secrets handed to people: API tokens and one-time set-up secrets. 32
//! random bytes from the system's generator, shown once (`stl_` + base64url),
//! kept only as their SHA-256.

use base64::Engine as _;
use ring::rand::SecureRandom as _;

use crate::error::ServerError;

/// The prefix of every secret stele hands out (so secret scanners find them).
pub const PREFIX: &str = "stl_";

/// A new secret: what to show once, and the hash to keep.
pub fn generate() -> Result<(String, String), ServerError> {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ServerError::Start("the system's random generator failed".into()))?;
    let secret = format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hash(&secret);
    Ok((secret, hash))
}

/// The SHA-256 (hex) a secret is kept as.
pub fn hash(secret: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        secret.as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn secrets_are_fresh_and_kept_only_hashed() {
        let (a, ha) = generate().unwrap();
        let (b, hb) = generate().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 43, "{a}");
        assert_eq!(ha, hash(&a));
        assert_ne!(ha, hb);
        assert!(!ha.contains(&a[PREFIX.len()..]));
    }
}
