//! Reading one session's entries: through the derived `session_links`
//! (each session entry names the session's previous one; `sessions.last`
//! the newest), at a cost proportional to the session, when the log has
//! them, else by
//! reading every entry (a read-only view of a log no writer of schema 3 has
//! opened). Derived data is never trusted: callers check each entry's
//! session id, position and sub-chain link.

use rusqlite::OptionalExtension as _;

use super::Store;
use crate::error::AuditError;

/// How [`Store::for_each_session_entry`] found the entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionLookup {
    /// Through the index by session.
    Index,
    /// By reading every entry (no index in this log).
    Scan,
}

/// One entry of a session as the store gives it.
#[derive(Debug, Clone, Copy)]
pub struct SessionEntry<'a> {
    /// Its position in the session as the index gives it (counted from
    /// the first entry found) or the scanned leaf states it.
    pub n: u64,
    /// Its index in the log.
    pub seq: u64,
    /// The canonical leaf bytes.
    pub leaf: &'a [u8],
    /// The stored leaf hash.
    pub leaf_hash: &'a [u8],
}

impl Store {
    /// Whether this log has the index by session.
    pub fn has_session_index(&self) -> Result<bool, AuditError> {
        crate::schema::has_session_index(self.conn()).map_err(AuditError::sqlite(self.path()))
    }

    /// Call `f` with each entry of session `id` below index `below`, in
    /// session order. With the index: one lookup per entry; without it:
    /// every entry below `below` is read and those that state this session
    /// are passed on.
    pub fn for_each_session_entry(
        &self,
        id: &str,
        below: u64,
        mut f: impl FnMut(SessionEntry<'_>) -> Result<(), AuditError>,
    ) -> Result<SessionLookup, AuditError> {
        let err = AuditError::sqlite(self.path());
        if !self.has_session_index()? {
            self.for_each_entry(
                0,
                below,
                |seq, leaf, leaf_hash| match crate::schema::session_of(leaf) {
                    Some((sid, n)) if sid == id => f(SessionEntry {
                        n,
                        seq,
                        leaf,
                        leaf_hash,
                    }),
                    _ => Ok(()),
                },
            )?;
            return Ok(SessionLookup::Scan);
        }
        let damaged = |seq: u64, reason: String| AuditError::Integrity {
            index: seq,
            reason: format!("session {id}: {reason} (the index by session is damaged)"),
        };
        let Some(row) = self.session_row(id)? else {
            return Ok(SessionLookup::Index);
        };
        let mut at = row
            .last
            .ok_or_else(|| damaged(0, "the session's row does not name its newest entry".into()))?;
        // Newest to oldest; at most as many steps as the session has
        // entries (so a damaged link cannot make a loop).
        let mut seqs = Vec::new();
        let mut link = self
            .conn()
            .prepare_cached("SELECT prev FROM session_links WHERE seq = ?1")
            .map_err(&err)?;
        for _ in 0..=row.n {
            if at < below {
                seqs.push(at);
            }
            let prev: Option<Option<i64>> = link
                .query_row([at as i64], |r| r.get(0))
                .optional()
                .map_err(&err)?;
            match prev {
                None => return Err(damaged(at, format!("entry {at} has no link"))),
                Some(None) => break,
                Some(Some(p)) if (p as u64) < at => at = p as u64,
                Some(Some(p)) => {
                    return Err(damaged(at, format!("entry {at} links forward to {p}")))
                }
            }
        }
        seqs.reverse();
        for (n, seq) in seqs.into_iter().enumerate() {
            let e = self
                .entry(seq)
                .map_err(|_| damaged(seq, format!("it leads to entry {seq}, which is missing")))?;
            f(SessionEntry {
                n: n as u64,
                seq,
                leaf: &e.leaf,
                leaf_hash: &e.leaf_hash,
            })?;
        }
        Ok(SessionLookup::Index)
    }
}
