//! Making committed entries durable off the sequencer's thread.
//!
//! The sequencer commits each batch to SQLite's write-ahead log with
//! `synchronous=NORMAL` (written, not yet flushed) and hands the callers
//! waiting for durability to the syncer thread, which flushes the WAL file
//! (`fdatasync`) once for everything committed so far and only then
//! answers them. Meanwhile the sequencer goes on ordering and writing the
//! next entries: an `fdatasync` no longer holds up entries that need only
//! their place in the sequence (see `crate::sequencer`). A blocking caller
//! that committed on its own thread (`crate::ordering`) flushes there too
//! ([`Syncer::flush_through`]), skipping the hand-off.
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
    tx: Mutex<Option<mpsc::Sender<Waiting>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    failed: Arc<Mutex<Option<String>>>,
    /// The WAL, for callers that flush on their own thread
    /// ([`Syncer::flush_through`]); `None` when commits flush themselves.
    wal: Option<(File, PathBuf)>,
    /// The log size the newest caller-side flush covered.
    flushed: Mutex<u64>,
}

impl Syncer {
    /// Start syncing for the writer connection `conn` of `db`.
    pub(crate) fn start(db: &Path, conn: &Connection) -> Self {
        let failed = Arc::new(Mutex::new(None));
        let inline = Self {
            tx: Mutex::new(None),
            thread: Mutex::new(None),
            failed: failed.clone(),
            wal: None,
            flushed: Mutex::new(0),
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
        let for_callers = match wal.try_clone() {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(
                    "audit log {}: {e}; every commit waits for its own fsync",
                    db.display()
                );
                let _ = conn.pragma_update(None, "synchronous", "FULL");
                return inline;
            }
        };
        let (tx, rx) = mpsc::channel::<Waiting>();
        let f = failed.clone();
        let thread_wal = wal_file.clone();
        let thread = std::thread::Builder::new()
            .name("stele-audit-sync".into())
            .spawn(move || run(wal, thread_wal, rx, f));
        match thread {
            Ok(t) => Self {
                tx: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(t)),
                failed,
                wal: Some((for_callers, wal_file)),
                flushed: Mutex::new(0),
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
        let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        match (&*tx, &self.wal) {
            (Some(tx), _) => {
                if let Err(mpsc::SendError(replies)) = tx.send(replies) {
                    answer(replies, Some("the audit syncer has stopped"));
                }
            }
            // Stopped: nothing more is committed after the close.
            (None, Some(_)) => answer(replies, Some("the audit syncer has stopped")),
            // Commits flush themselves (`synchronous=FULL`).
            (None, None) => answer(replies, None),
        }
    }

    /// Make every commit up to log size `size` durable on the caller's own
    /// thread, without a hand-off to the syncer: flush the WAL unless a
    /// flush that started after that commit already did. Called after the
    /// commit returned, so the flush starts after it and covers it (and,
    /// the WAL being one ordered file, everything committed before it).
    pub(crate) fn flush_through(&self, size: u64) -> Result<(), AuditError> {
        if let Some(why) = self.failure() {
            return Err(AuditError::Stopped(Some(why)));
        }
        let Some((wal, wal_file)) = &self.wal else {
            // `synchronous=FULL`: the commit flushed itself.
            return Ok(());
        };
        let mut flushed = self.flushed.lock().unwrap_or_else(PoisonError::into_inner);
        if *flushed >= size {
            return Ok(());
        }
        match wal.sync_data() {
            Ok(()) => {
                *flushed = size;
                Ok(())
            }
            Err(e) => {
                let why = format!("flushing {} failed: {e}", wal_file.display());
                tracing::error!("audit log: {why}; refusing every further write");
                *self.failed.lock().unwrap_or_else(PoisonError::into_inner) = Some(why.clone());
                Err(AuditError::Stopped(Some(why)))
            }
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
    pub(crate) fn finish(&self) {
        drop(
            self.tx
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.finish();
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
