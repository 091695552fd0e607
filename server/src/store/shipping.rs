//! Workers' logs as shipped to the servers (docs/server.md "Workers:
//! shipping"): per origin, the worker's registered key and where the
//! accepted copy stands (size, root, the tree's right edge, the newest
//! leaf hash and time, the newest checkpoint, and whether the key was
//! revoked); and every accepted entry's exact bytes with the fields
//! reviewers search by (time, session, principal, teams, kind, decision,
//! path) and its leaf hash; the payload bodies the batch carried; and the
//! Merkle tree's nodes its leaves completed (what inclusion proofs are
//! read from, [`crate::shipped::proofs`]). A batch is stored by a
//! compare-and-set on the origin's size, in one transaction: two servers
//! taking the same batch keep it once.

use async_trait::async_trait;
use stele_audit::merkle::{leaf_hash, Hash};

use crate::error::ServerError;

/// Where one origin's shipped copy stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShippedLog {
    /// The worker log's origin (its key's name).
    pub origin: String,
    /// Its verifier key (text form), registered on the first batch.
    pub verifier: String,
    /// The account whose worker ships it.
    pub account: String,
    /// The worker's name.
    pub worker: String,
    /// Entries held.
    pub size: i64,
    /// The root at `size`.
    pub root: Vec<u8>,
    /// The frontier's hashes, largest subtree first, concatenated (32 bytes each).
    pub frontier: Vec<u8>,
    /// The leaf hash of entry `size - 1`.
    pub last_hash: Option<Vec<u8>>,
    /// The newest `(boot, ts)` held.
    pub last_time: Option<(String, String)>,
    /// The newest checkpoint accepted (a signed note).
    pub checkpoint: String,
    /// Unix seconds of the last change.
    pub updated: i64,
    /// Unix seconds when an admin revoked its key.
    pub revoked_at: Option<i64>,
}

/// One shipped entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShippedEntry {
    /// Its index in its log.
    pub seq: i64,
    /// Its exact bytes.
    pub leaf: Vec<u8>,
    /// Its time.
    pub ts: String,
    /// Its session.
    pub session: Option<String>,
    /// The principal.
    pub principal: String,
    /// Teams, as `,a,b,` (so `LIKE '%,a,%'` finds a team; empty: `,`).
    pub teams: String,
    /// Its kind.
    pub kind: String,
    /// A decision's effect.
    pub effect: Option<String>,
    /// The path acted on.
    pub path: Option<String>,
    /// Its leaf hash (stored since schema 10 / PostgreSQL 5; computed
    /// from `leaf` when read from a row stored before).
    pub leaf_hash: Hash,
}

/// A payload body a shipped batch carried, as the worker stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShippedPayload {
    /// Its commitment, `SHA-256(salt ‖ body)` (32 bytes).
    pub cmt: Vec<u8>,
    /// The index of the first shipped entry that lists it.
    pub seq: i64,
    /// Its media type, as the listing leaf states it.
    pub media: String,
    /// The salt.
    pub salt: Vec<u8>,
    /// The body.
    pub body: Vec<u8>,
}

/// A Merkle tree node a batch's leaves completed: the hash of leaves
/// `[index << level, (index + 1) << level)`, level ≥ 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShippedNode {
    /// Height above the leaves.
    pub level: u8,
    /// Index among the nodes of that level.
    pub index: u64,
    /// The hash.
    pub hash: Hash,
}

/// What a batch holds besides its entries: the bodies it carried and the
/// tree nodes it completed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShippedParts {
    /// Payload bodies (one already held for the origin is kept as it is).
    pub payloads: Vec<ShippedPayload>,
    /// Tree nodes (level ≥ 1).
    pub nodes: Vec<ShippedNode>,
    /// Commitments the batch's redaction and expiry entries erase: their
    /// bodies held for the origin are deleted (after this batch's own are
    /// stored).
    pub erased: Vec<Vec<u8>>,
}

/// An entry's leaf hash as read: the stored one, or computed from its bytes
/// for a row stored before the column was (NULL there).
pub(crate) fn stored_leaf_hash(stored: Option<Vec<u8>>, leaf: &[u8]) -> Hash {
    stored
        .and_then(|h| Hash::try_from(h.as_slice()).ok())
        .unwrap_or_else(|| leaf_hash(leaf))
}

/// How storing a batch went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Stored; the origin now holds the batch.
    Yes,
    /// The origin is not at the batch's start (another server stored
    /// something first): nothing was stored; the size it holds.
    Moved(i64),
    /// The origin's key was revoked meanwhile: nothing was stored.
    Revoked,
}

/// The shipped logs (part of every [`super::Store`]).
#[async_trait]
pub trait ShippingStore {
    /// Where `origin`'s shipped copy stands.
    async fn shipped_log(&self, origin: &str) -> Result<Option<ShippedLog>, ServerError>;
    /// Store `entries` (starting at `from`, the size held) with `parts`
    /// (their bodies and tree nodes) and move the origin to `to` — a new row
    /// when `from` is 0 and none exists.
    async fn append_shipped(
        &self,
        from: i64,
        to: &ShippedLog,
        entries: &[ShippedEntry],
        parts: &ShippedParts,
    ) -> Result<Appended, ServerError>;
    /// Entries of `origin` with `from <= seq < to`, in order.
    async fn shipped_entries(
        &self,
        origin: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<ShippedEntry>, ServerError>;
    /// Revoke the key of `log` (its origin, key, account and worker; the
    /// row is made when nothing was shipped yet) at `now`; false when it
    /// was revoked already.
    async fn revoke_shipped(&self, log: &ShippedLog, now: i64) -> Result<bool, ServerError>;
    /// The entries matching `q` across every shipped log, by time, each
    /// with its origin.
    async fn search_shipped(
        &self,
        q: &ShippedQuery,
    ) -> Result<Vec<(String, ShippedEntry)>, ServerError>;
}

/// A reviewer's search over the shipped entries: every field given must
/// match (times are leaf `ts` strings, which sort as times).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShippedQuery {
    /// One session's timeline.
    pub session: Option<String>,
    /// One principal's entries.
    pub principal: Option<String>,
    /// Entries of principals in this team.
    pub team: Option<String>,
    /// One kind.
    pub kind: Option<String>,
    /// Decisions with this effect (`allow`, `deny`, `ask`).
    pub effect: Option<String>,
    /// Entries acting on this path.
    pub path: Option<String>,
    /// At or after this time.
    pub since: Option<String>,
    /// Before this time.
    pub until: Option<String>,
    /// Most entries answered.
    pub limit: i64,
}

/// The `WHERE … ORDER BY … LIMIT` of a search over `shipped_entries` and
/// its text parameters, numbered by `param` (`?1` or `$1`); shared by both
/// engines so they answer alike.
pub(crate) fn search_sql(q: &ShippedQuery, param: fn(usize) -> String) -> (String, Vec<String>) {
    let mut conds = Vec::new();
    let mut args = Vec::new();
    let mut add = |cond: &str, v: String| {
        args.push(v);
        conds.push(cond.replace('#', &param(args.len())));
    };
    if let Some(v) = &q.session {
        add("session = #", v.clone());
    }
    if let Some(v) = &q.principal {
        add("principal = #", v.clone());
    }
    if let Some(v) = &q.team {
        let escaped = v
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        add("teams LIKE # ESCAPE '\\'", format!("%,{escaped},%"));
    }
    if let Some(v) = &q.kind {
        add("kind = #", v.clone());
    }
    if let Some(v) = &q.effect {
        add("effect = #", v.clone());
    }
    if let Some(v) = &q.path {
        add("path = #", v.clone());
    }
    if let Some(v) = &q.since {
        add("ts >= #", v.clone());
    }
    if let Some(v) = &q.until {
        add("ts < #", v.clone());
    }
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    (
        format!("{filter} ORDER BY ts, origin, seq LIMIT {}", q.limit.max(0)),
        args,
    )
}

/// The columns of a `shipped_logs` row, in the order both engines read them.
pub(crate) const LOG_COLUMNS: &str = "origin, verifier, account, worker, size, root, frontier, \
     last_hash, last_boot, last_ts, checkpoint, updated, revoked_at";

/// The columns a search answers, `origin` first.
pub(crate) const SEARCH_COLUMNS: &str =
    "origin, seq, leaf, ts, session, principal, teams, kind, effect, path, leaf_hash";

/// The columns of an entry, in the order both engines read them.
pub(crate) const ENTRY_COLUMNS: &str =
    "seq, leaf, ts, session, principal, teams, kind, effect, path, leaf_hash";
