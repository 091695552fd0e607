//! Reading a shipped log back for a session bundle (docs/export-format.md
//! §8): a session's entries in one origin, the origins holding a session,
//! the payload bodies shipped, and the tree's nodes — what
//! [`crate::shipped::proofs`] builds inclusion proofs from.

use std::collections::HashMap;

use async_trait::async_trait;
use stele_audit::merkle::Hash;

use super::shipping::{ShippedEntry, ShippedPayload};
use crate::error::ServerError;

/// The reads of shipped logs a bundle needs (part of every [`super::Store`]).
#[async_trait]
pub trait ShippedReads {
    /// Every entry of `session` in `origin`'s shipped log, by index.
    async fn shipped_session_entries(
        &self,
        origin: &str,
        session: &str,
    ) -> Result<Vec<ShippedEntry>, ServerError>;

    /// The origins whose shipped logs hold entries of `session`, by name.
    async fn shipped_session_origins(&self, session: &str) -> Result<Vec<String>, ServerError>;

    /// The sessions with shipped entries at or after `since` and before
    /// `until` (leaf `ts` strings), by id.
    async fn shipped_sessions_between(
        &self,
        since: &str,
        until: &str,
    ) -> Result<Vec<String>, ServerError>;

    /// The bodies held of `origin` among the commitments `cmts` (one
    /// withheld by the worker — redacted, erased, expired — is absent).
    async fn shipped_payloads(
        &self,
        origin: &str,
        cmts: &[Vec<u8>],
    ) -> Result<Vec<ShippedPayload>, ServerError>;

    /// The hashes held of `origin`'s tree at `positions` (`(level, index)`;
    /// level 0: leaf hashes). A position not held is absent: a node of a
    /// batch stored before nodes were kept, or beyond the size held.
    async fn shipped_nodes(
        &self,
        origin: &str,
        positions: &[(u8, u64)],
    ) -> Result<HashMap<(u8, u64), Hash>, ServerError>;
}
