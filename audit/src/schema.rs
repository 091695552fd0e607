//! The SQLite schema of the audit database and connection settings.

use rusqlite::Connection;

/// Schema version stored in `meta` by this version (new logs, and logs
/// it has opened for writing).
pub const SCHEMA_VERSION: &str = "5";
/// Versions this version reads: 1 (before `head`, `sessions.first/last`
/// and the `tree_nodes` layout), 2 (before `session_links`) — both
/// upgraded when opened for writing — and 3. Version 3 exists so that a
/// writer that does not keep `session_links` refuses the log instead of
/// leaving the index silently behind; version 4 (`hold_entries`) so that a
/// writer that knows no legal holds refuses a log that may hold some,
/// instead of erasing what they hold; version 5 (`archived`) so that a
/// version that knows no archival refuses a log whose prefix was archived
/// instead of calling it truncated.
pub const READABLE_VERSIONS: [&str; 5] = ["1", "2", "3", "4", "5"];

/// Tables, indexes and the append-only triggers. Triggers are defence in depth
/// against accidents; the hashes and signatures catch deliberate edits.
pub const SCHEMA: &str = r#"
CREATE TABLE meta(k TEXT PRIMARY KEY, v TEXT NOT NULL) STRICT;
CREATE TABLE entries(seq INTEGER PRIMARY KEY, leaf BLOB NOT NULL, leaf_hash BLOB NOT NULL) STRICT;
-- internal nodes of complete subtrees (level >= 1), id = the node's index in
-- creation order (Go tlog's StoredHashIndex): every commit appends at the end
CREATE TABLE tree_nodes(id INTEGER PRIMARY KEY, h BLOB NOT NULL) STRICT;
-- the newest signed checkpoint, replaced by every commit (one row)
CREATE TABLE head(id INTEGER PRIMARY KEY CHECK (id = 1), size INTEGER NOT NULL, note TEXT NOT NULL) STRICT;
-- checkpoints kept for good: those sent to witnesses (and, in logs written
-- before `head` existed, one per commit)
CREATE TABLE checkpoints(size INTEGER PRIMARY KEY, note TEXT NOT NULL, published INTEGER NOT NULL DEFAULT 0) STRICT;
CREATE TABLE cosignatures(size INTEGER NOT NULL, witness TEXT NOT NULL, line TEXT NOT NULL, received_at INTEGER NOT NULL, PRIMARY KEY(size, witness)) STRICT;
-- RFC 3161 tokens over kept checkpoints (DER TimeStampToken), checked before stored
CREATE TABLE timestamps(size INTEGER PRIMARY KEY, token BLOB NOT NULL, tsa TEXT NOT NULL, gen_time INTEGER NOT NULL, received_at INTEGER NOT NULL) STRICT;
CREATE TABLE payloads(cmt BLOB PRIMARY KEY, seq INTEGER NOT NULL, media TEXT NOT NULL, size INTEGER NOT NULL, salt BLOB, body BLOB, redacted_seq INTEGER) STRICT;
CREATE INDEX payloads_seq ON payloads(seq);
-- derived state kept for fast start-up; verification recomputes it from the leaves
CREATE TABLE sessions(id TEXT PRIMARY KEY, n INTEGER NOT NULL, head BLOB NOT NULL, ended INTEGER NOT NULL DEFAULT 0, first INTEGER, last INTEGER) STRICT;
-- derived index by session: each session entry `seq` names the session's
-- previous entry (`sessions.last` names its newest): appended in index
-- order like `entries` (a table keyed by session cost a third of the
-- many-writer append rate: every commit wrote a page per active session);
-- checked (id, n, sub-chain) by whoever reads it
CREATE TABLE session_links(seq INTEGER PRIMARY KEY, prev INTEGER) STRICT;
-- derived index of the `hold.place` / `hold.release` entries: the writer
-- replays them (the leaves are the truth) to refuse erasing held payloads
CREATE TABLE hold_entries(seq INTEGER PRIMARY KEY) STRICT;
-- archived prefixes (docs/audit-format.md §9): entries below `size` were
-- moved into the archive bundle whose signed manifest has digest `bundle`;
-- `frontier` = the Merkle frontier at `size` (32-byte hashes, concatenated),
-- `entry` = the index of the `log.archive` entry that recorded it
-- (the table and its triggers: ARCHIVE_TRIGGERS)
CREATE TABLE open_intents(seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, session TEXT, leaf_hash BLOB NOT NULL) STRICT;
CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
CREATE TRIGGER tree_no_update BEFORE UPDATE ON tree_nodes BEGIN SELECT RAISE(ABORT, 'tree hashes are append-only'); END;
CREATE TRIGGER tree_no_delete BEFORE DELETE ON tree_nodes BEGIN SELECT RAISE(ABORT, 'tree hashes are append-only'); END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints WHEN NEW.note != OLD.note OR NEW.size != OLD.size
  BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER payloads_redact_only BEFORE UPDATE ON payloads
  WHEN NEW.cmt != OLD.cmt OR NEW.seq != OLD.seq OR NEW.body IS NOT NULL OR NEW.salt IS NOT NULL OR NEW.redacted_seq IS NULL
  BEGIN SELECT RAISE(ABORT, 'payloads may only be redacted'); END;
"#;

/// The triggers that let rows go only by archival: an entry or payload
/// row may be deleted only below the newest archived size, whose
/// `archived` row (written first, in the same transaction) is itself
/// append-only. Created with the schema and by [`upgrade`].
pub const ARCHIVE_TRIGGERS: &str = r#"
CREATE TABLE IF NOT EXISTS archived(size INTEGER PRIMARY KEY, root BLOB NOT NULL, prev BLOB NOT NULL, frontier BLOB NOT NULL, bundle TEXT NOT NULL, entry INTEGER NOT NULL) STRICT;
DROP TRIGGER IF EXISTS entries_no_delete;
DROP TRIGGER IF EXISTS payloads_no_delete;
CREATE TRIGGER entries_no_delete BEFORE DELETE ON entries
  WHEN OLD.seq >= coalesce((SELECT max(size) FROM archived), 0)
  BEGIN SELECT RAISE(ABORT, 'audit entries are append-only (only an archived prefix is removed)'); END;
CREATE TRIGGER payloads_no_delete BEFORE DELETE ON payloads
  WHEN OLD.seq >= coalesce((SELECT max(size) FROM archived), 0)
  BEGIN SELECT RAISE(ABORT, 'payloads are erased by redaction only (or removed with an archived prefix)'); END;
CREATE TRIGGER IF NOT EXISTS archived_no_update BEFORE UPDATE ON archived BEGIN SELECT RAISE(ABORT, 'archived rows are append-only'); END;
CREATE TRIGGER IF NOT EXISTS archived_no_delete BEFORE DELETE ON archived BEGIN SELECT RAISE(ABORT, 'archived rows are append-only'); END;
"#;

/// Bring a database written by an earlier version up to [`SCHEMA`] (the
/// writer runs this; additions only): `sessions.first` and
/// `sessions.last` (where a session's entries are) and the `head` table
/// (earlier versions kept every commit's checkpoint in `checkpoints`;
/// those rows stay and are still verified).
pub fn upgrade(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS head(id INTEGER PRIMARY KEY CHECK (id = 1), size INTEGER NOT NULL, note TEXT NOT NULL) STRICT;",
    )?;
    upgrade_timestamps(conn)?;
    let mut has = std::collections::HashSet::new();
    {
        let mut st = conn.prepare("PRAGMA table_info(sessions)")?;
        let names = st.query_map([], |r| r.get::<_, String>(1))?;
        for n in names {
            has.insert(n?);
        }
    }
    for col in ["first", "last"] {
        if !has.contains(col) {
            conn.execute_batch(&format!("ALTER TABLE sessions ADD COLUMN {col} INTEGER"))?;
        }
    }
    build_session_index(conn)?;
    // Logs before schema 4 cannot hold `hold.*` entries (the kinds did not exist).
    conn.execute_batch("CREATE TABLE IF NOT EXISTS hold_entries(seq INTEGER PRIMARY KEY) STRICT;")?;
    // Logs before schema 5 have no archived prefix; their delete triggers
    // refused every delete and are replaced by the archival-aware ones.
    conn.execute_batch(ARCHIVE_TRIGGERS)?;
    // Version 1 logs keep their `tree_hashes` (TreeLayout::Legacy).
    conn.execute(
        "UPDATE meta SET v = ?1 WHERE k = 'schema' AND v != ?1",
        [SCHEMA_VERSION],
    )?;
    Ok(())
}

/// The `timestamps` table (RFC 3161 tokens over checkpoints), in a log
/// written before it existed.
pub fn upgrade_timestamps(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS timestamps(size INTEGER PRIMARY KEY, token BLOB NOT NULL, tsa TEXT NOT NULL, gen_time INTEGER NOT NULL, received_at INTEGER NOT NULL) STRICT;",
    )
}

/// Create `session_links` and fill it from the stored entries, in one
/// transaction (the table exists only complete), unless it exists; set
/// `sessions.last` where a log older than schema 2 left it empty. Leaves
/// are read with the verifiers' own reader; one that does not parse is left
/// out here (the start-up check that follows refuses such a log anyway, and
/// an export checks every entry the links lead it to).
fn build_session_index(conn: &Connection) -> rusqlite::Result<()> {
    if has_session_index(conn)? {
        return Ok(());
    }
    conn.execute_batch(
        "SAVEPOINT session_index;
         CREATE TABLE session_links(seq INTEGER PRIMARY KEY, prev INTEGER) STRICT;",
    )?;
    let fill = || -> rusqlite::Result<()> {
        let mut ins = conn.prepare("INSERT INTO session_links(seq, prev) VALUES (?1, ?2)")?;
        let mut last: std::collections::HashMap<String, i64> = Default::default();
        let mut st = conn.prepare("SELECT seq, leaf FROM entries ORDER BY seq")?;
        let mut rows = st.query([])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let leaf = row.get_ref(1)?.as_blob()?;
            if let Some((id, _)) = session_of(leaf) {
                ins.execute(rusqlite::params![seq, last.get(&id)])?;
                last.insert(id, seq);
            }
        }
        let mut up =
            conn.prepare("UPDATE sessions SET last = ?2 WHERE id = ?1 AND last IS NULL")?;
        for (id, seq) in &last {
            up.execute(rusqlite::params![id, seq])?;
        }
        Ok(())
    };
    match fill() {
        Ok(()) => conn.execute_batch("RELEASE session_index"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO session_index; RELEASE session_index");
            Err(e)
        }
    }
}

/// The session id and position a leaf states, read as the verifiers read it.
pub(crate) fn session_of(leaf: &[u8]) -> Option<(String, u64)> {
    match crate::leaf_view::LeafView::scan(leaf) {
        Some(v) => v.session.map(|s| (s.id.to_string(), s.n)),
        None => crate::leaf::Leaf::parse_canonical(leaf)
            .ok()?
            .session
            .map(|s| (s.id, s.n)),
    }
}

/// Whether the database on `conn` has the index by session (a log no
/// writer of schema 3 has opened has not).
pub fn has_session_index(conn: &Connection) -> rusqlite::Result<bool> {
    let has: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'session_links'",
        [],
        |r| r.get(0),
    )?;
    Ok(has > 0)
}

/// Settings for every connection: WAL, full fsync on commit.
pub fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a COMMIT returns only after the WAL is fsynced. Never NORMAL here.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

/// Where a log keeps its internal tree nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeLayout {
    /// `tree_nodes`, id = [`stored_index`]: appends only (schema 2).
    Tlog,
    /// `tree_hashes`, id = `level << 48 | index` (logs created with schema
    /// 1): each level's end is a different page, so a commit rewrote about
    /// one page per level, more as the log grew.
    Legacy,
}

impl TreeLayout {
    /// The layout of the database on `conn`.
    pub fn of(conn: &Connection) -> rusqlite::Result<Self> {
        let legacy: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'tree_hashes'",
            [],
            |r| r.get(0),
        )?;
        Ok(if legacy > 0 { Self::Legacy } else { Self::Tlog })
    }

    /// Row id of the node at `(level, index)`, `level >= 1`.
    pub fn row_id(self, level: u8, index: u64) -> i64 {
        match self {
            Self::Tlog => stored_index(level, index) as i64,
            Self::Legacy => ((u64::from(level) << 48) | index) as i64,
        }
    }

    /// The table.
    pub fn table(self) -> &'static str {
        match self {
            Self::Tlog => "tree_nodes",
            Self::Legacy => "tree_hashes",
        }
    }
}

/// The position of tree node `(level, index)` in the order nodes are
/// created as leaves are appended one by one (leaves included): Go's
/// `tlog.StoredHashIndex`. Level L's n-th node comes right after level
/// L+1's (2n+1)-th... i.e. right after the leaf that completes it.
pub fn stored_index(level: u8, index: u64) -> u64 {
    let mut n = index;
    for _ in 0..level {
        n = 2 * n + 1;
    }
    let mut i = 0u64;
    while n > 0 {
        i += n;
        n >>= 1;
    }
    i + u64::from(level)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Creation order: appending leaf n stores its hash, then every node
    /// it completes, bottom up; the indices count up by one each time.
    #[test]
    fn stored_index_is_creation_order() {
        let mut f = crate::merkle::Frontier::new();
        let mut next = 0u64;
        for leaf in 0..5000u64 {
            assert_eq!(stored_index(0, leaf), next, "leaf {leaf}");
            next += 1;
            let mut done = Vec::new();
            f.push([0; 32], |n| done.push(n));
            for n in done {
                assert_eq!(stored_index(n.level, n.index), next, "{n:?}");
                next += 1;
            }
        }
        // Go's tlog test vectors.
        assert_eq!(stored_index(0, 0), 0);
        assert_eq!(stored_index(0, 1), 1);
        assert_eq!(stored_index(1, 0), 2);
        assert_eq!(stored_index(0, 2), 3);
        assert_eq!(stored_index(2, 0), 6);
    }
}
