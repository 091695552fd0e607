//! Making committed entries durable off the sequencer's thread.
//!
//! The sequencer commits each batch to SQLite's write-ahead log with
//! `synchronous=NORMAL` (written, not yet flushed) and hands the callers
//! waiting for durability to the syncer thread, which flushes the WAL file
//! (`fdatasync`) once for everything committed so far and only then
//! answers them. Meanwhile the sequencer goes on ordering and writing the
//! next entries: an `fdatasync` no longer holds up entries that need only
//! their place in the sequence (see `crate::sequencer`).
//!
//! Why this is as durable as `synchronous=FULL`: FULL flushes the same WAL
//! file after each commit; here the flush that answers a caller starts after
//! that caller's commit was written, and the WAL is one ordered file, so the
//! flush covers every entry written before it. SQLite itself still flushes
//! the WAL before each checkpoint into the database and the database after
//! it, and the WAL header when the file is reused (what NORMAL keeps).
//! Closing the log still copies the WAL into the database (two more
//! flushes per command, kept on purpose): a copy of the database file alone,
//! as people make backups, then holds every entry.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::Connection;

use crate::error::AuditError;
use crate::sequencer::ReplyTo;
use crate::writer::Receipt;

/// The path of a database's write-ahead log.
fn wal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

/// Flush the write-ahead log of the database at `db` to stable storage, so
/// that every transaction committed before the call survives a power
/// failure. For readers that hand a checkpoint to someone outside (a
/// witness, an export): what they saw may have been committed by a writer
/// that has not flushed it yet. A missing WAL means nothing is pending.
pub fn sync_wal(db: &Path) -> Result<(), AuditError> {
    let wal = wal_path(db);
    match File::open(&wal) {
        Ok(f) => f.sync_data().map_err(|e| AuditError::Io {
            path: wal,
            source: e,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AuditError::Io {
            path: wal,
            source: e,
        }),
    }
}

/// Replies waiting for the commits they follow to be durable.
type Waiting = Vec<(ReplyTo, Result<Receipt, AuditError>)>;

/// The syncer thread, or (when the WAL file could not be opened) nothing:
/// then the connection stays `synchronous=FULL` and commits are durable
/// when they return.
pub(crate) struct Syncer {
    tx: Option<mpsc::Sender<Waiting>>,
    thread: Option<JoinHandle<()>>,
    failed: Arc<Mutex<Option<String>>>,
}

impl Syncer {
    /// Start syncing for the writer connection `conn` of `db`.
    pub(crate) fn start(db: &Path, conn: &Connection) -> Self {
        let failed = Arc::new(Mutex::new(None));
        let inline = Self {
            tx: None,
            thread: None,
            failed: failed.clone(),
        };
        let wal_file = wal_path(db);
        let Ok(wal) = File::open(&wal_file) else {
            tracing::warn!(
                "audit log {}: its write-ahead log cannot be opened for flushing; every commit waits for its own fsync",
                db.display()
            );
            return inline;
        };
        if let Err(e) = conn.pragma_update(None, "synchronous", "NORMAL") {
            tracing::warn!(
                "audit log {}: {e}; every commit waits for its own fsync",
                db.display()
            );
            return inline;
        }
        let (tx, rx) = mpsc::channel::<Waiting>();
        let f = failed.clone();
        let thread = std::thread::Builder::new()
            .name("stele-audit-sync".into())
            .spawn(move || run(wal, wal_file, rx, f));
        match thread {
            Ok(t) => Self {
                tx: Some(tx),
                thread: Some(t),
                failed,
            },
            Err(e) => {
                tracing::warn!(
                    "audit log: no syncer thread ({e}); every commit waits for its own fsync"
                );
                // Back to flushing on every commit before anything is written.
                let _ = conn.pragma_update(None, "synchronous", "FULL");
                inline
            }
        }
    }

    /// Answer `replies` once everything committed so far is durable.
    pub(crate) fn submit(&self, replies: Waiting) {
        if replies.is_empty() {
            return;
        }
        match &self.tx {
            Some(tx) => {
                if let Err(mpsc::SendError(replies)) = tx.send(replies) {
                    answer(replies, Some("the audit syncer has stopped"));
                }
            }
            None => answer(replies, None),
        }
    }

    /// Why flushing failed, if it did: the log then refuses every write.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Answer everything submitted, then stop.
    pub(crate) fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(
    wal: File,
    wal_file: PathBuf,
    rx: mpsc::Receiver<Waiting>,
    failed: Arc<Mutex<Option<String>>>,
) {
    while let Ok(first) = rx.recv() {
        // Everything queued now was committed before this flush starts:
        // one fdatasync answers all of it (group commit).
        let mut batch = first;
        while let Ok(more) = rx.try_recv() {
            batch.extend(more);
        }
        let known = failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let err = match known {
            Some(why) => Some(why),
            None => match wal.sync_data() {
                Ok(()) => None,
                Err(e) => {
                    let why = format!("flushing {} failed: {e}", wal_file.display());
                    tracing::error!("audit log: {why}; refusing every further write");
                    *failed.lock().unwrap_or_else(PoisonError::into_inner) = Some(why.clone());
                    Some(why)
                }
            },
        };
        answer(batch, err.as_deref());
    }
}

/// Send each reply; with `err`, every success becomes that failure (the
/// entry is written but may not survive a power failure).
fn answer(replies: Waiting, err: Option<&str>) {
    for (to, res) in replies {
        let res = match (res, err) {
            (Ok(_), Some(why)) => Err(AuditError::Stopped(Some(why.to_string()))),
            (r, _) => r,
        };
        to.send(res);
    }
}
