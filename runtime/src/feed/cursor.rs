//! A sink's durable cursor: a small JSON file per sink beside the log
//! (`<db>.feed/<sink>.json`), outside the log database and its hash chain.
//!
//! Why a file and not a table: the feed only reads the database (a write
//! would contend with the one sequencer for SQLite's lock and slow the
//! writer), and a feed is not the log's history. Why it survives a crash:
//! the new state is written to `<sink>.json.tmp`, fsynced, renamed over the
//! old file and the folder fsynced; a rename is atomic, so after a crash
//! the file holds the state before or after the delivery, never a mix.
//! The state after a delivery is written only once the receiver
//! acknowledged it, so a crash between the two re-sends that batch: at
//! least once, never lost.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use stele_audit::keys::{KeySchedule, Revocation};
use stele_audit::merkle::{Frontier, Hash};

use super::alerts::DetectorState;
use super::FeedError;

/// What a sink has delivered and verified, kept across restarts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CursorState {
    /// Format of this file (1).
    pub version: u32,
    /// The log's origin: a cursor of another log is refused.
    pub origin: String,
    /// The sink's wire, for status.
    pub kind: String,
    /// The sink's endpoint, for status.
    pub endpoint: String,
    /// Index of the next entry to deliver (everything below was acknowledged).
    pub cursor: u64,
    /// Leaf hash (hex) of entry `cursor - 1`: a log whose entry differs is
    /// not the one this cursor belongs to.
    pub last_leaf_hash: Option<String>,
    /// The prefix of the log verified against a signed checkpoint.
    pub verified: VerifiedPrefix,
    /// The alert rules' memory at `cursor`.
    pub detectors: DetectorState,
    /// Whether the backlog is above its limit and its alert was logged.
    pub backlog_alerted: bool,
    /// When a delivery last succeeded (RFC 3339).
    pub delivered_at: Option<String>,
    /// The last delivery error, cleared by the next success.
    pub last_error: Option<LastError>,
    /// Set when the log failed the feed's verification: nothing past the
    /// verified prefix is delivered.
    pub tampered: Option<String>,
}

/// The last error of a sink.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastError {
    /// When (RFC 3339).
    pub at: String,
    /// What happened.
    pub message: String,
    /// Failed attempts in a row.
    pub attempts: u64,
}

/// A verified prefix `[0, size)` of the log: its Merkle frontier (the
/// right edge of the tree, O(log size) hashes) and its last leaf hash,
/// from which the next range is checked and its root recomputed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifiedPrefix {
    /// Entries verified.
    pub size: u64,
    /// Frontier hashes (hex), largest subtree first.
    pub frontier: Vec<String>,
    /// Leaf hash (hex) of entry `size - 1`.
    pub prev: Option<String>,
    /// The log's key schedule as the verified entries' `key.rotation`s set
    /// it (absent in cursors written before rotation was followed: then the
    /// log's key record at `size` is taken up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<KeySchedule>,
    /// Keys the verified entries' `key.revocation`s revoked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked: Vec<Revocation>,
}

impl VerifiedPrefix {
    /// The frontier and last hash, decoded.
    pub fn decode(&self) -> Option<(Frontier, Option<Hash>)> {
        let nodes = self
            .frontier
            .iter()
            .map(|h| hex_hash(h))
            .collect::<Option<Vec<_>>>()?;
        let f = Frontier::from_parts(self.size, nodes)?;
        let prev = match &self.prev {
            Some(p) => Some(hex_hash(p)?),
            None => None,
        };
        (prev.is_some() == (self.size > 0)).then_some((f, prev))
    }

    /// Encode a frontier, last hash, and the key schedule and revocations
    /// in force at its size.
    pub fn encode(
        f: &Frontier,
        prev: Option<Hash>,
        keys: KeySchedule,
        revoked: Vec<Revocation>,
    ) -> Self {
        Self {
            size: f.size(),
            frontier: f.nodes().iter().map(hex::encode).collect(),
            prev: prev.map(hex::encode),
            keys: Some(keys),
            revoked,
        }
    }
}

/// 32 bytes from 64 hex digits.
pub fn hex_hash(h: &str) -> Option<Hash> {
    hex::decode(h).ok()?.try_into().ok()
}

impl CursorState {
    /// A sink's state before its first delivery.
    pub fn new(origin: &str, kind: &str, endpoint: &str) -> Self {
        Self {
            version: 1,
            origin: origin.to_string(),
            kind: kind.to_string(),
            endpoint: endpoint.to_string(),
            cursor: 0,
            last_leaf_hash: None,
            verified: VerifiedPrefix::default(),
            detectors: DetectorState::default(),
            backlog_alerted: false,
            delivered_at: None,
            last_error: None,
            tampered: None,
        }
    }
}

/// The folder of a log's cursor files: `<db>.feed`.
pub fn folder(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".feed");
    db.with_file_name(name)
}

/// The cursor file of sink `name`.
pub fn path(db: &Path, name: &str) -> PathBuf {
    folder(db).join(format!("{name}.json"))
}

/// Read a sink's state; `Ok(None)` when it has none yet.
pub fn load(path: &Path) -> Result<Option<CursorState>, FeedError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FeedError::io(path, e)),
    };
    let s: CursorState = serde_json::from_slice(&text).map_err(|e| FeedError::Cursor {
        path: path.to_path_buf(),
        why: format!("not a feed cursor: {e}"),
    })?;
    if s.version != 1 {
        return Err(FeedError::Cursor {
            path: path.to_path_buf(),
            why: format!("unsupported version {}", s.version),
        });
    }
    if s.verified.decode().is_none() {
        return Err(FeedError::Cursor {
            path: path.to_path_buf(),
            why: "its verified frontier is malformed".into(),
        });
    }
    Ok(Some(s))
}

/// Write a sink's state durably and atomically (see the module docs).
pub fn store(path: &Path, s: &CursorState) -> Result<(), FeedError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    stele_attest::private_fs::create_dir_all(dir).map_err(|e| FeedError::io(dir, e))?;
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(s).map_err(|e| FeedError::Cursor {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    let mut f = stele_attest::private_fs::create_file(&tmp).map_err(|e| FeedError::io(&tmp, e))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| FeedError::io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| FeedError::io(path, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FeedError::io(dir, e))
}

/// Holds a sink's lock file (`<sink>.lock`) so that two feeds never
/// deliver for the same sink at once; released when dropped.
#[derive(Debug)]
pub struct SinkLock {
    _file: std::fs::File,
}

/// Take sink `name`'s lock, or fail naming it.
pub fn lock(db: &Path, name: &str) -> Result<SinkLock, FeedError> {
    let dir = folder(db);
    stele_attest::private_fs::create_dir_all(&dir).map_err(|e| FeedError::io(&dir, e))?;
    let p = dir.join(format!("{name}.lock"));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| FeedError::io(&p, e))?;
    match f.try_lock() {
        Ok(()) => Ok(SinkLock { _file: f }),
        Err(std::fs::TryLockError::WouldBlock) => Err(FeedError::Busy {
            sink: name.to_string(),
            lock: p,
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(FeedError::io(&p, e)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use stele_attest::Signer as _;

    #[test]
    fn state_round_trips_and_a_torn_file_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("audit.db");
        let p = path(&db, "splunk");
        assert_eq!(load(&p).unwrap(), None);
        let mut s = CursorState::new("o", "hec", "https://x");
        let mut f = Frontier::new();
        for i in 0..5u8 {
            f.push([i; 32], |_| {});
        }
        let key = stele_attest::Ed25519Signer::from_seed("o", &[1; 32])
            .unwrap()
            .verifier()
            .to_string();
        let revoked = vec![Revocation {
            key: key.clone(),
            from: 3,
        }];
        s.verified = VerifiedPrefix::encode(&f, Some([4; 32]), KeySchedule::single(&key), revoked);
        s.cursor = 5;
        store(&p, &s).unwrap();
        assert_eq!(load(&p).unwrap(), Some(s.clone()));
        let (f2, prev) = s.verified.decode().unwrap();
        assert_eq!((f2.root(), prev), (f.root(), Some([4; 32])));
        // A half-written file (never produced by `store`, which renames)
        // is an error naming the file, not a silent restart from 0.
        let text = std::fs::read(&p).unwrap();
        std::fs::write(&p, &text[..text.len() / 2]).unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("splunk.json"), "{e}");
    }

    #[test]
    fn a_second_feed_for_the_same_sink_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("audit.db");
        let _a = lock(&db, "s").unwrap();
        let e = lock(&db, "s").unwrap_err().to_string();
        assert!(e.contains("already"), "{e}");
        assert!(lock(&db, "other").is_ok());
    }
}
