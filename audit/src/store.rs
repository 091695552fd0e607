//! Reading the audit database: queries shared by the writer, the verifier and the CLI.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::error::AuditError;
use crate::merkle::{Hash, NodeReader};
use crate::schema::TreeLayout;

mod session_index;
pub use session_index::{SessionEntry, SessionLookup};

/// A read-only view of an audit database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// One stored entry.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    /// Index.
    pub seq: u64,
    /// Canonical leaf bytes.
    pub leaf: Vec<u8>,
    /// Stored leaf hash.
    pub leaf_hash: Vec<u8>,
}

/// One stored payload row.
#[derive(Debug, Clone)]
pub struct StoredPayload {
    /// Commitment.
    pub cmt: Vec<u8>,
    /// Index of the entry that committed to it.
    pub seq: u64,
    /// Media type.
    pub media: String,
    /// Size in bytes.
    pub size: u64,
    /// Salt, absent after redaction.
    pub salt: Option<Vec<u8>>,
    /// Body, absent after redaction.
    pub body: Option<Vec<u8>>,
    /// Index of the redaction entry.
    pub redacted_seq: Option<u64>,
}

/// A row of the derived `sessions` table (not trusted by verification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// Position of the session's newest entry.
    pub n: u64,
    /// Leaf hash of that entry.
    pub head: Hash,
    /// Whether the session ended.
    pub ended: bool,
    /// Index of its first entry (absent in logs written before it was kept).
    pub first: Option<u64>,
    /// Index of its newest entry (likewise).
    pub last: Option<u64>,
}

/// An intent with no result yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenIntent {
    /// Index of the intent.
    pub seq: u64,
    /// Its kind.
    pub kind: String,
    /// Its session.
    pub session: Option<String>,
    /// Its leaf hash.
    pub leaf_hash: Hash,
}

impl Store {
    /// Open an existing database read-only (never writes, so it runs on
    /// copies and read-only media). A file with more than one hard link is
    /// refused (see `writer_lock`: another name may see another state).
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(path).map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if meta.nlink() > 1 {
            return Err(AuditError::HardLinked {
                path: path.to_path_buf(),
                links: meta.nlink(),
            });
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| not_a_log(path, e))?;
        let s = Self::from_conn(conn, path);
        s.check_is_log()?;
        Ok(s)
    }

    /// Wrap an open connection.
    pub fn from_conn(conn: Connection, path: &Path) -> Self {
        Self {
            conn,
            path: path.to_path_buf(),
        }
    }

    /// The underlying connection.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Read everything that follows from one consistent state of the
    /// database (one read transaction), however much a writer appends
    /// meanwhile, until the returned guard is dropped. Without it each
    /// query would see the log as it is when that query starts: checkpoints
    /// read before entries then disagree with a live log.
    pub fn snapshot(&self) -> Result<Snapshot<'_>, AuditError> {
        self.conn
            .execute_batch("BEGIN DEFERRED")
            .map_err(self.err())?;
        let guard = Snapshot { store: self };
        // A deferred transaction takes its snapshot at its first read.
        self.conn
            .query_row("SELECT count(*) FROM meta", [], |r| r.get::<_, i64>(0))
            .map_err(self.err())?;
        Ok(guard)
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> AuditError + '_ {
        AuditError::sqlite(&self.path)
    }

    /// Fail with `NotALog` unless this looks like a stele audit database.
    pub fn check_is_log(&self) -> Result<(), AuditError> {
        let v = self.meta("schema").map_err(|e| match e {
            AuditError::Sqlite { source, .. } => not_a_log(&self.path, source),
            other => other,
        })?;
        match v.as_deref() {
            Some(v) if crate::schema::READABLE_VERSIONS.contains(&v) => Ok(()),
            Some(other) => Err(AuditError::NotALog {
                path: self.path.clone(),
                detail: format!("unsupported schema version {other}"),
            }),
            None => Err(AuditError::NotALog {
                path: self.path.clone(),
                detail: "no schema version in meta".into(),
            }),
        }
    }

    /// The log's keys with their ranges (`meta` row `keys`; a log never
    /// rotated has only its genesis key). Checked for form, not trusted:
    /// verification re-derives it from the `key.rotation` entries.
    pub fn key_schedule(&self) -> Result<crate::keys::KeySchedule, AuditError> {
        let origin = self.meta_required("origin")?;
        let s = match self.meta("keys")? {
            None => crate::keys::KeySchedule::single(&self.meta_required("vkey")?),
            Some(text) => serde_json::from_str(&text).map_err(|e| AuditError::Integrity {
                index: 0,
                reason: format!("the log's key record is not valid: {e}"),
            })?,
        };
        s.check(&origin).map_err(|reason| AuditError::Integrity {
            index: 0,
            reason: format!("the log's key record: {reason}"),
        })?;
        if Some(s.first().to_string()) != self.meta("vkey")? {
            return Err(AuditError::Integrity {
                index: 0,
                reason: "the log's key record does not start with its genesis key".into(),
            });
        }
        Ok(s)
    }

    /// A stored value of `meta`.
    pub fn meta(&self, k: &str) -> Result<Option<String>, AuditError> {
        self.conn
            .query_row("SELECT v FROM meta WHERE k = ?1", [k], |r| r.get(0))
            .optional()
            .map_err(self.err())
    }

    /// A required `meta` value.
    pub fn meta_required(&self, k: &str) -> Result<String, AuditError> {
        self.meta(k)?.ok_or_else(|| AuditError::NotALog {
            path: self.path.clone(),
            detail: format!("meta value {k:?} is missing"),
        })
    }

    /// Number of entries (max index + 1).
    pub fn size(&self) -> Result<u64, AuditError> {
        let m: Option<i64> = self
            .conn
            .query_row("SELECT max(seq) FROM entries", [], |r| r.get(0))
            .map_err(self.err())?;
        Ok(m.map(|m| m as u64 + 1).unwrap_or(0))
    }

    /// Number of rows in `entries` (differs from `size` when rows are missing).
    pub fn row_count(&self) -> Result<u64, AuditError> {
        let c: i64 = self
            .conn
            .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
            .map_err(self.err())?;
        Ok(c as u64)
    }

    /// One entry.
    pub fn entry(&self, seq: u64) -> Result<StoredEntry, AuditError> {
        self.conn
            .query_row(
                "SELECT seq, leaf, leaf_hash FROM entries WHERE seq = ?1",
                [seq as i64],
                |r| {
                    Ok(StoredEntry {
                        seq: r.get::<_, i64>(0)? as u64,
                        leaf: r.get(1)?,
                        leaf_hash: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(self.err())?
            .ok_or_else(|| AuditError::NotFound(format!("entry {seq}")))
    }

    /// Stream entries with `from <= seq < to` in index order.
    pub fn for_each_entry(
        &self,
        from: u64,
        to: u64,
        mut f: impl FnMut(u64, &[u8], &[u8]) -> Result<(), AuditError>,
    ) -> Result<(), AuditError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT seq, leaf, leaf_hash FROM entries WHERE seq >= ?1 AND seq < ?2 ORDER BY seq")
            .map_err(self.err())?;
        let mut rows = st
            .query(params![from as i64, to.min(i64::MAX as u64) as i64])
            .map_err(self.err())?;
        while let Some(row) = rows.next().map_err(self.err())? {
            let seq: i64 = row.get(0).map_err(self.err())?;
            let leaf = row
                .get_ref(1)
                .and_then(|v| v.as_blob().map_err(Into::into))
                .map_err(self.err())?;
            let hash = row
                .get_ref(2)
                .and_then(|v| v.as_blob().map_err(Into::into))
                .map_err(self.err())?;
            f(seq as u64, leaf, hash)?;
        }
        Ok(())
    }

    /// The newest checkpoint `(size, note)`.
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, AuditError> {
        let sql = format!(
            "SELECT size, note FROM ({}) ORDER BY size DESC LIMIT 1",
            self.all_checkpoints()?
        );
        self.conn
            .query_row(&sql, [], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
            .optional()
            .map_err(self.err())
    }

    /// Every stored checkpoint — the `head` row (the newest, replaced by
    /// each commit) and the kept ones (published; in logs written before
    /// `head` existed, one per commit) — in size order. The same size
    /// twice means two different signed notes for it.
    pub fn checkpoints(&self) -> Result<Vec<(u64, String)>, AuditError> {
        let sql = format!("{} ORDER BY size", self.all_checkpoints()?);
        let mut st = self.conn.prepare(&sql).map_err(self.err())?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// The checkpoint stored for exactly `size`.
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<String>, AuditError> {
        let sql = format!(
            "SELECT note FROM ({}) WHERE size = ?1 LIMIT 1",
            self.all_checkpoints()?
        );
        self.conn
            .query_row(&sql, [size as i64], |r| r.get(0))
            .optional()
            .map_err(self.err())
    }

    /// The query of all stored checkpoints (`head` is absent in logs no
    /// writer of this version has opened).
    fn all_checkpoints(&self) -> Result<&'static str, AuditError> {
        let has_head: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'head'",
                [],
                |r| r.get(0),
            )
            .map_err(self.err())?;
        Ok(if has_head > 0 {
            "SELECT size, note FROM checkpoints UNION SELECT size, note FROM head"
        } else {
            "SELECT size, note FROM checkpoints"
        })
    }

    /// All payload rows.
    pub fn payloads(&self) -> Result<Vec<StoredPayload>, AuditError> {
        self.payloads_from(0)
    }

    /// Payload rows of entries from index `from` on, in index order.
    pub fn payloads_from(&self, from: u64) -> Result<Vec<StoredPayload>, AuditError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT cmt, seq, media, size, salt, body, redacted_seq FROM payloads WHERE seq >= ?1 ORDER BY seq",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([from as i64], payload_row)
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// One payload by commitment.
    pub fn payload(&self, cmt: &[u8]) -> Result<Option<StoredPayload>, AuditError> {
        self.conn
            .query_row(
                "SELECT cmt, seq, media, size, salt, body, redacted_seq FROM payloads WHERE cmt = ?1",
                [cmt],
                payload_row,
            )
            .optional()
            .map_err(self.err())
    }

    /// Intents that have no result yet.
    pub fn open_intents(&self) -> Result<Vec<OpenIntent>, AuditError> {
        let mut st = self
            .conn
            .prepare("SELECT seq, kind, session, leaf_hash FROM open_intents ORDER BY seq")
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| {
                let h: Vec<u8> = r.get(3)?;
                Ok(OpenIntent {
                    seq: r.get::<_, i64>(0)? as u64,
                    kind: r.get(1)?,
                    session: r.get(2)?,
                    leaf_hash: h.try_into().unwrap_or([0; 32]),
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// The derived row of session `id`, if any.
    pub fn session_row(&self, id: &str) -> Result<Option<SessionRow>, AuditError> {
        let has_range = self
            .conn
            .prepare("SELECT first, last FROM sessions LIMIT 0")
            .is_ok();
        let sql = if has_range {
            "SELECT n, head, ended, first, last FROM sessions WHERE id = ?1"
        } else {
            "SELECT n, head, ended, NULL, NULL FROM sessions WHERE id = ?1"
        };
        self.conn
            .query_row(sql, [id], |r| {
                let head: Vec<u8> = r.get(1)?;
                Ok(SessionRow {
                    n: r.get::<_, i64>(0)? as u64,
                    head: head.try_into().unwrap_or([0; 32]),
                    ended: r.get::<_, i64>(2)? != 0,
                    first: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
                    last: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
                })
            })
            .optional()
            .map_err(self.err())
    }

    /// Number of stored internal tree nodes.
    pub fn tree_node_count(&self) -> Result<u64, AuditError> {
        let layout = TreeLayout::of(&self.conn).map_err(self.err())?;
        let c: i64 = self
            .conn
            .query_row(
                &format!("SELECT count(*) FROM {}", layout.table()),
                [],
                |r| r.get(0),
            )
            .map_err(self.err())?;
        Ok(c as u64)
    }

    /// Total bytes of all checkpoint notes.
    pub fn checkpoint_bytes(&self) -> Result<u64, AuditError> {
        let c: Option<i64> = self
            .conn
            .query_row(
                &format!(
                    "SELECT sum(length(note)) FROM ({})",
                    self.all_checkpoints()?
                ),
                [],
                |r| r.get(0),
            )
            .map_err(self.err())?;
        Ok(c.unwrap_or(0) as u64)
    }

    /// Total bytes of all leaves.
    pub fn leaf_bytes(&self) -> Result<u64, AuditError> {
        let c: Option<i64> = self
            .conn
            .query_row("SELECT sum(length(leaf)) FROM entries", [], |r| r.get(0))
            .map_err(self.err())?;
        Ok(c.unwrap_or(0) as u64)
    }
}

/// An open read transaction on a [`Store`]; ends when dropped.
#[derive(Debug)]
pub struct Snapshot<'a> {
    store: &'a Store,
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        // Read-only: nothing to keep or lose.
        let _ = self.store.conn.execute_batch("ROLLBACK");
    }
}

fn payload_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredPayload> {
    Ok(StoredPayload {
        cmt: r.get(0)?,
        seq: r.get::<_, i64>(1)? as u64,
        media: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        salt: r.get(4)?,
        body: r.get(5)?,
        redacted_seq: r.get::<_, Option<i64>>(6)?.map(|v| v as u64),
    })
}

fn not_a_log(path: &Path, e: rusqlite::Error) -> AuditError {
    AuditError::NotALog {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// Reads tree nodes from the database (level 0 = leaf hashes).
impl NodeReader for Store {
    type Error = AuditError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, AuditError> {
        let layout = TreeLayout::of(&self.conn).map_err(self.err())?;
        read_node(&self.conn, &self.path, layout, level, index)
    }
}

/// Read one tree node through any connection.
pub fn read_node(
    conn: &Connection,
    path: &Path,
    layout: TreeLayout,
    level: u8,
    index: u64,
) -> Result<Hash, AuditError> {
    let v: Option<Vec<u8>> = if level == 0 {
        conn.prepare_cached("SELECT leaf_hash FROM entries WHERE seq = ?1")
            .and_then(|mut s| s.query_row([index as i64], |r| r.get(0)).optional())
    } else {
        let sql = match layout {
            TreeLayout::Tlog => "SELECT h FROM tree_nodes WHERE id = ?1",
            TreeLayout::Legacy => "SELECT h FROM tree_hashes WHERE id = ?1",
        };
        conn.prepare_cached(sql).and_then(|mut s| {
            s.query_row([layout.row_id(level, index)], |r| r.get(0))
                .optional()
        })
    }
    .map_err(AuditError::sqlite(path))?;
    // The last leaf of an archived prefix is the first live leaf's `prev`
    // (proofs of live entries may need it as a sibling).
    let v = match v {
        None if level == 0 => conn
            .prepare_cached("SELECT prev FROM archived WHERE size = ?1")
            .and_then(|mut s| s.query_row([(index + 1) as i64], |r| r.get(0)).optional())
            .ok()
            .flatten(),
        v => v,
    };
    let v = v.ok_or_else(|| AuditError::Integrity {
        index: index << level,
        reason: format!("tree node (level {level}, index {index}) is missing"),
    })?;
    v.try_into().map_err(|_| AuditError::Integrity {
        index: index << level,
        reason: format!("tree node (level {level}, index {index}) is not 32 bytes"),
    })
}

impl Store {
    /// Give back the connection (the writer reuses the one the check ran on).
    pub(crate) fn into_conn(self) -> Connection {
        self.conn
    }
}
