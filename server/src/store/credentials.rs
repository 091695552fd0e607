//! Credentials beyond accounts: browser sessions (a cookie's SHA-256, never
//! the cookie; who it is for, how they logged in, the hash of its CSRF
//! token, when it expires, whether it was revoked by logout) and the
//! revocation of API tokens.

use async_trait::async_trait;

use super::User;
use crate::error::ServerError;

/// One browser session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    /// SHA-256 (hex) of the cookie's value.
    pub hash: String,
    /// Who (name, teams and role as at login; no password hash).
    pub user: User,
    /// How they logged in (`password`, `oidc`).
    pub method: String,
    /// SHA-256 (hex) of the session's CSRF token.
    pub csrf_hash: String,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds after which it no longer works.
    pub expires: i64,
}

/// What a presented session cookie turns out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebSessionLookup {
    /// A live session.
    Live(WebSession),
    /// This user's session, expired.
    Expired(String),
    /// This user's session, ended by logout.
    Revoked(String),
    /// No such session.
    Unknown,
}

/// An API token as `stele token list` shows it: never the token, never its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Its id: the first 12 hex digits of its SHA-256 (as `token create` prints).
    pub id: String,
    /// The account.
    pub user: String,
    /// Its name (what it is for; `login` for a password login's token).
    pub label: String,
    /// What it may be used for, as stored (`read,run,approve`).
    pub scopes: String,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds after which it no longer works.
    pub expires: i64,
    /// Unix seconds it was revoked at, if it was.
    pub revoked: Option<i64>,
    /// Whether its creation is in the audit log (until then it does not work).
    pub recorded: bool,
}

/// Where browser sessions and token revocations are kept (part of every [`super::Store`]).
#[async_trait]
pub trait CredentialStore {
    /// Keep a new session.
    async fn add_web_session(&self, s: WebSession) -> Result<(), ServerError>;
    /// The session whose cookie hashes to `hash`, as at `now`.
    async fn web_session(&self, hash: &str, now: i64) -> Result<WebSessionLookup, ServerError>;
    /// End a session (logout); false when it was not live.
    async fn revoke_web_session(&self, hash: &str, now: i64) -> Result<bool, ServerError>;
    /// Revoke the API token hashing to `hash`; false when it was not live.
    async fn revoke_token(&self, hash: &str, now: i64) -> Result<bool, ServerError>;
    /// API tokens, of `user` or of everyone, oldest first.
    async fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenInfo>, ServerError>;
    /// Revoke the one live token whose hash starts with `id`, queueing
    /// `change` (its subject set to the token's account) for the log; the
    /// account, or None when no single live token has that id.
    async fn revoke_token_by_id(
        &self,
        id: &str,
        now: i64,
        change: super::AdminChange,
    ) -> Result<Option<String>, ServerError>;
}
