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

    /// For each of `sessions` with shipped entries: how many, how many are
    /// denials (decision effect `deny`) and how many approval entries
    /// (kind `approval.*`), across every shipped log.
    async fn shipped_session_counts(
        &self,
        sessions: &[String],
    ) -> Result<HashMap<String, SessionCounts>, ServerError>;

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

/// A session's shipped entries, counted (the reviewer's list).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCounts {
    /// Its entries.
    pub entries: u64,
    /// Decisions whose effect is `deny`.
    pub denials: u64,
    /// Entries of kind `approval.*`.
    pub approvals: u64,
}

/// Counts as the engines return them (never negative).
pub(crate) fn counts(entries: i64, denials: i64, approvals: i64) -> SessionCounts {
    let n = |x: i64| u64::try_from(x).unwrap_or(0);
    SessionCounts {
        entries: n(entries),
        denials: n(denials),
        approvals: n(approvals),
    }
}
