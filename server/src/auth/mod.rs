//! Who is asking: local accounts (argon2id passwords, one-time set-up
//! secrets) and API tokens (random, shown once, SHA-256 at rest). The
//! principal of every request comes from here, never from a body or `$USER`.
//! Cookies, CSRF tokens and OIDC are later parts of issue 18 (docs/server.md).

pub mod cookies;
pub mod login_link;
pub mod password;
pub mod principal;
pub mod scopes;
pub mod throttle;
pub mod tokens;

pub use principal::Principal;
