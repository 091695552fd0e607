//! Reading one session's entries: through the derived `session_entries`
//! index (cost proportional to the session) when the log has it, else by
//! reading every entry (a read-only view of a log no writer of schema 3 has
//! opened). Derived data is never trusted: callers check each entry's
//! session id, position and sub-chain link.

use rusqlite::params;

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
    /// Its position in the session as the index (or scan) states it.
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
            self.for_each_entry(0, below, |seq, leaf, leaf_hash| {
                match crate::schema::session_of(leaf) {
                    Some((sid, n)) if sid == id => f(SessionEntry {
                        n,
                        seq,
                        leaf,
                        leaf_hash,
                    }),
                    _ => Ok(()),
                }
            })?;
            return Ok(SessionLookup::Scan);
        }
        let mut st = self
            .conn()
            .prepare_cached(
                "SELECT s.n, s.seq, e.leaf, e.leaf_hash FROM session_entries s \
                 LEFT JOIN entries e ON e.seq = s.seq \
                 WHERE s.session = ?1 AND s.seq < ?2 ORDER BY s.n",
            )
            .map_err(&err)?;
        let mut rows = st
            .query(params![id, below.min(i64::MAX as u64) as i64])
            .map_err(&err)?;
        while let Some(row) = rows.next().map_err(&err)? {
            let n: i64 = row.get(0).map_err(&err)?;
            let seq: i64 = row.get(1).map_err(&err)?;
            let blob = |i: usize| {
                row.get_ref(i)
                    .and_then(|v| v.as_blob_or_null().map_err(Into::into))
                    .map_err(&err)
            };
            let (Some(leaf), Some(leaf_hash)) = (blob(2)?, blob(3)?) else {
                return Err(AuditError::Integrity {
                    index: seq as u64,
                    reason: format!(
                        "the index by session names entry {seq} as n={n} of session {id:?}, but there is no such entry"
                    ),
                });
            };
            f(SessionEntry {
                n: n as u64,
                seq: seq as u64,
                leaf,
                leaf_hash,
            })?;
        }
        Ok(SessionLookup::Index)
    }
}
