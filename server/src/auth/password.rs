//! Passwords of local accounts: argon2id (the crate's defaults, OWASP's
//! minimum: 19 MiB, 2 passes), stored as PHC strings.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::Argon2;
use ring::rand::SecureRandom as _;

use crate::error::ServerError;

/// Shortest password accepted.
pub const MIN_LEN: usize = 12;

/// Hash `password` for storage; a password shorter than [`MIN_LEN`] is refused.
pub fn hash(password: &str) -> Result<String, ServerError> {
    if password.chars().count() < MIN_LEN {
        return Err(ServerError::Start(format!(
            "the password is too short: at least {MIN_LEN} characters"
        )));
    }
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ServerError::Start("the system's random generator failed".into()))?;
    let salt = SaltString::encode_b64(&bytes)
        .map_err(|e| ServerError::Start(format!("a password salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServerError::Start(format!("hashing the password: {e}")))
}

/// Whether `password` matches the stored `phc` string (a malformed one never matches).
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn argon2id_round_trip() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert!(!verify("correct horse battery", "not a hash"));
        assert!(hash("short").is_err());
    }
}
