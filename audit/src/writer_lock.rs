//! One writer per database *file*, however it is named.
//!
//! The lock is an exclusive `flock` on the database file itself, so every
//! name that reaches the same file — a symlink, a bind mount, another path
//! to the same folder — meets the same lock (a lock file beside the name
//! as given did not: two writers through a symlink both wrote). A database
//! with more than one hard link is refused outright: SQLite keeps its
//! write-ahead log beside the name it was opened by, so two names could see
//! two different states of one log (one of them missing committed entries)
//! and a writer on the stale one would sign a fork.
//!
//! `flock` locks are independent of the POSIX record locks SQLite uses on
//! the same file, but *closing* any descriptor of the file drops all of this
//! process's POSIX locks on it. So the descriptor is never closed: on
//! release it is only unlocked and kept for the next writer of that file in
//! this process (at most one descriptor per database file ever opened).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::error::AuditError;

/// Database files this process has locked: descriptor and whether a writer
/// of this process holds it now.
type Registry = Mutex<HashMap<(u64, u64), (File, bool)>>;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The held writer lock; released (never closed) on drop.
#[derive(Debug)]
pub(crate) struct WriterLock {
    id: (u64, u64),
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        if let Ok(mut r) = registry().lock() {
            if let Some((f, held)) = r.get_mut(&self.id) {
                // Unlock without closing (see the module docs).
                let _ = f.unlock();
                *held = false;
            }
        }
    }
}

/// The path SQLite and the lock should use: symlinks resolved.
pub(crate) fn canonical(path: &Path) -> Result<PathBuf, AuditError> {
    std::fs::canonicalize(path).map_err(|source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Take the writer lock of the database file at `path` (canonical), waiting
/// up to `wait` for another writer to finish before answering
/// [`AuditError::Busy`].
pub(crate) fn acquire(path: &Path, wait: Duration) -> Result<WriterLock, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    // By path, not by a descriptor: a descriptor opened here and closed
    // again would drop SQLite's locks on the file (see the module docs).
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(AuditError::NotALog {
            path: path.to_path_buf(),
            detail: "not a regular file".into(),
        });
    }
    if meta.nlink() > 1 {
        return Err(AuditError::HardLinked {
            path: path.to_path_buf(),
            links: meta.nlink(),
        });
    }
    let id = (meta.dev(), meta.ino());
    let deadline = Instant::now() + wait;
    loop {
        match try_take(path, id)? {
            true => return Ok(WriterLock { id }),
            false if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            false => return Err(AuditError::Busy(path.to_path_buf())),
        }
    }
}

/// One attempt. The first time this process sees the file, its descriptor
/// is opened and registered for good.
fn try_take(path: &Path, id: (u64, u64)) -> Result<bool, AuditError> {
    let mut r = registry()
        .lock()
        .map_err(|_| AuditError::Stopped(Some("writer lock registry poisoned".into())))?;
    let entry = match r.entry(id) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => {
            let f = File::open(path).map_err(|source| AuditError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let m = f.metadata().map_err(|source| AuditError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            if (m.dev(), m.ino()) != id {
                // Replaced between the two looks: keep the descriptor (it
                // must not be closed) and let the caller try again.
                std::mem::forget(f);
                return Ok(false);
            }
            v.insert((f, false))
        }
    };
    if entry.1 {
        // A writer of this very process has it (flock would say yes to
        // the same descriptor).
        return Ok(false);
    }
    match entry.0.try_lock() {
        Ok(()) => {
            entry.1 = true;
            Ok(true)
        }
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(source)) => Err(AuditError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}
