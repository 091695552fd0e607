//! Session bundles a server handed out to continue a session on another
//! worker (docs/server.md "Workers: failover"), kept by their digest
//! (`sha256:<hex>`, what the continuing `session.start` names): a later
//! bundle of the session carries the one it continued from, byte for
//! byte, as its earlier slice, whichever server writes it.

use async_trait::async_trait;

use crate::error::ServerError;

/// The kept bundles (part of every [`super::Store`]).
#[async_trait]
pub trait KeptBundles {
    /// Keep `bytes` (a bundle of `session` from `origin`'s shipped log,
    /// whose last entry of the session is `last`) under `digest`; keeping
    /// the same digest again changes nothing.
    async fn keep_bundle(
        &self,
        digest: &str,
        session: &str,
        origin: &str,
        last: i64,
        bytes: &[u8],
        now: i64,
    ) -> Result<(), ServerError>;
    /// Where `session` continued elsewhere from `origin`'s log: the
    /// earliest last entry of a bundle kept of it (None: it never did).
    async fn continued_from(&self, session: &str, origin: &str)
        -> Result<Option<i64>, ServerError>;
    /// The bundle kept under `digest`.
    async fn kept_bundle(&self, digest: &str) -> Result<Option<Vec<u8>>, ServerError>;
}
