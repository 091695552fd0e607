//! Errors of the audit log.

use std::path::PathBuf;

use crate::leaf::LeafError;

/// Everything that can go wrong opening, appending to or reading the log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// SQLite failed.
    #[cfg(feature = "store")]
    #[error("audit database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The file is not a stele audit log (or is damaged beyond reading).
    #[error("{path} is not a readable stele audit log: {detail}")]
    NotALog {
        /// The file.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// A log already exists where one was to be created.
    #[error("{0} already exists; refusing to create a new log over it")]
    Exists(PathBuf),
    /// Another writer holds the lock on this database file.
    #[error("audit log {0} is busy: another stele process (or another writer in this one) is writing to it; only one writer at a time, try again when it has finished")]
    Busy(PathBuf),
    /// The database file has more than one name (hard links).
    #[error("audit log {path} has {links} hard links: SQLite keeps the write-ahead log beside the name it is opened by, so two names can see two different states of one log; remove the other links and open it by one name")]
    HardLinked {
        /// The file.
        path: PathBuf,
        /// Its link count.
        links: u64,
    },
    /// The signing key does not belong to this log.
    #[error("wrong key for this log: the log is signed by {log_key}, the key file holds {given}")]
    WrongKey {
        /// Verifier key recorded in the log.
        log_key: String,
        /// Verifier key of the key that was given.
        given: String,
    },
    /// The start-up integrity check failed; the log refuses to accept writes.
    #[error("integrity check failed at index {index}: {reason}")]
    Integrity {
        /// The first index concerned.
        index: u64,
        /// What disagrees.
        reason: String,
    },
    /// The event cannot be encoded as a leaf.
    #[error("event rejected: {0}")]
    Leaf(#[from] LeafError),
    /// The event is inconsistent with the log (e.g. a result naming no open intent).
    #[error("event rejected: {0}")]
    Invalid(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(#[from] stele_attest::AttestError),
    /// The log was found altered by its own verification: it refuses to
    /// record anything more (an `audit.alert` entry says what was found).
    #[error("the audit log refuses writes: {0}")]
    Refused(String),
    /// The writer has stopped (after a failure or close).
    #[error("the audit writer has stopped{}", .0.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    Stopped(Option<String>),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Something asked for is not in the log.
    #[error("not found: {0}")]
    NotFound(String),
    /// A payload is under a legal hold: it cannot be erased or archived.
    #[error("refused: {0}")]
    Held(String),
    /// A rule of the log's own operations refuses the request (e.g. the
    /// same principal approving a hold's release twice: dual control).
    #[error("refused: {0}")]
    Denied(String),
}

#[cfg(feature = "store")]
impl AuditError {
    /// Wrap a SQLite error with the database path.
    pub fn sqlite(path: &std::path::Path) -> impl Fn(rusqlite::Error) -> AuditError + '_ {
        move |source| AuditError::Sqlite {
            path: path.to_path_buf(),
            source,
        }
    }
}
