//! The SQLite schema of the audit database and connection settings.

use rusqlite::Connection;

/// Schema version stored in `meta`.
pub const SCHEMA_VERSION: &str = "1";

/// Tables, indexes and the append-only triggers. Triggers are defence in depth
/// against accidents; the hashes and signatures catch deliberate edits.
pub const SCHEMA: &str = r#"
CREATE TABLE meta(k TEXT PRIMARY KEY, v TEXT NOT NULL) STRICT;
CREATE TABLE entries(seq INTEGER PRIMARY KEY, leaf BLOB NOT NULL, leaf_hash BLOB NOT NULL) STRICT;
-- internal nodes of complete subtrees, id = level << 48 | index (level >= 1)
CREATE TABLE tree_hashes(id INTEGER PRIMARY KEY, h BLOB NOT NULL) STRICT;
CREATE TABLE checkpoints(size INTEGER PRIMARY KEY, note TEXT NOT NULL, published INTEGER NOT NULL DEFAULT 0) STRICT;
CREATE TABLE cosignatures(size INTEGER NOT NULL, witness TEXT NOT NULL, line TEXT NOT NULL, received_at INTEGER NOT NULL, PRIMARY KEY(size, witness)) STRICT;
CREATE TABLE payloads(cmt BLOB PRIMARY KEY, seq INTEGER NOT NULL, media TEXT NOT NULL, size INTEGER NOT NULL, salt BLOB, body BLOB, redacted_seq INTEGER) STRICT;
CREATE INDEX payloads_seq ON payloads(seq);
-- derived state kept for fast start-up; verification recomputes it from the leaves
CREATE TABLE sessions(id TEXT PRIMARY KEY, n INTEGER NOT NULL, head BLOB NOT NULL, ended INTEGER NOT NULL DEFAULT 0) STRICT;
CREATE TABLE open_intents(seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, session TEXT, leaf_hash BLOB NOT NULL) STRICT;
CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
CREATE TRIGGER entries_no_delete BEFORE DELETE ON entries BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
CREATE TRIGGER tree_no_update BEFORE UPDATE ON tree_hashes BEGIN SELECT RAISE(ABORT, 'tree hashes are append-only'); END;
CREATE TRIGGER tree_no_delete BEFORE DELETE ON tree_hashes BEGIN SELECT RAISE(ABORT, 'tree hashes are append-only'); END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints WHEN NEW.note != OLD.note OR NEW.size != OLD.size
  BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER payloads_no_delete BEFORE DELETE ON payloads BEGIN SELECT RAISE(ABORT, 'payloads are erased by redaction only'); END;
CREATE TRIGGER payloads_redact_only BEFORE UPDATE ON payloads
  WHEN NEW.cmt != OLD.cmt OR NEW.seq != OLD.seq OR NEW.body IS NOT NULL OR NEW.salt IS NOT NULL OR NEW.redacted_seq IS NULL
  BEGIN SELECT RAISE(ABORT, 'payloads may only be redacted'); END;
"#;

/// Settings for every connection: WAL, full fsync on commit.
pub fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a COMMIT returns only after the WAL is fsynced. Never NORMAL here.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

/// Row id of an internal tree node.
pub fn node_id(level: u8, index: u64) -> i64 {
    ((u64::from(level) << 48) | index) as i64
}
