//! One-time login links for the desktop case (`stele serve --open`): a
//! random secret (as every secret stele hands out), kept only as its
//! SHA-256, for one account, working once and only until it expires.
//! Kept in the server's memory: a link lives minutes, and a restarted
//! server prints a fresh one.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::auth::tokens;
use crate::error::ServerError;

/// What a presented link turns out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// Live: now spent. The account it logs in.
    Valid(String),
    /// This account's link, already used once.
    Spent(String),
    /// This account's link, expired unused.
    Expired(String),
    /// No such link.
    Unknown,
}

#[derive(Debug)]
struct Link {
    user: String,
    expires: i64,
    spent: bool,
}

/// The links this server has handed out (by hash).
#[derive(Debug, Default)]
pub struct LoginLinks {
    links: Mutex<HashMap<String, Link>>,
}

impl LoginLinks {
    /// A new link secret for `user`, working once until `expires` (Unix
    /// seconds); the secret (shown once) and its id (the first 12 hex digits
    /// of its hash, for the record).
    pub fn issue(&self, user: &str, expires: i64) -> Result<(String, String), ServerError> {
        let (secret, hash) = tokens::generate()?;
        let id = hash[..12].to_string();
        self.lock().insert(
            hash,
            Link {
                user: user.to_string(),
                expires,
                spent: false,
            },
        );
        Ok((secret, id))
    }

    /// Spend `secret` at `now`: a live link works once, whatever happens after.
    pub fn redeem(&self, secret: &str, now: i64) -> Redeemed {
        let mut links = self.lock();
        let Some(link) = links.get_mut(&tokens::hash(secret)) else {
            return Redeemed::Unknown;
        };
        if link.spent {
            return Redeemed::Spent(link.user.clone());
        }
        if link.expires <= now {
            return Redeemed::Expired(link.user.clone());
        }
        link.spent = true;
        Redeemed::Valid(link.user.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Link>> {
        self.links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_link_works_once_and_only_before_it_expires() {
        let links = LoginLinks::default();
        let (s, id) = links.issue("ann", 100).unwrap();
        assert_eq!(id, tokens::hash(&s)[..12]);
        assert_eq!(links.redeem("stl_nope", 50), Redeemed::Unknown);
        assert_eq!(links.redeem(&s, 50), Redeemed::Valid("ann".into()));
        assert_eq!(links.redeem(&s, 51), Redeemed::Spent("ann".into()));
        let (late, _) = links.issue("ann", 100).unwrap();
        assert_eq!(links.redeem(&late, 100), Redeemed::Expired("ann".into()));
        // And stays refused.
        assert_eq!(links.redeem(&late, 200), Redeemed::Expired("ann".into()));
        // Kept only as its hash.
        let kept = format!("{:?}", links);
        assert!(!kept.contains(&s) && !kept.contains(&s[4..]), "{kept}");
    }
}
