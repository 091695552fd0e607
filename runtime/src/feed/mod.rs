//! The live SIEM feed: the log, as OCSF events, delivered to syslog over
//! TLS, Splunk HEC and OTLP/HTTP receivers as it grows, at least once and
//! in order, with a durable cursor per sink, plus alert findings (docs/siem.md).
//!
//! - [`config`]: the `[[feed]]` entries; [`cursor`]: each sink's state file.
//! - [`source`]: reading and verifying the log as a read-only reader.
//! - [`alerts`]: the rules that turn entries into Detection Findings.
//! - [`sink`]: the wires; [`runner`]: one thread per sink that follows the
//!   log; [`status`]: `stele audit feed status`.
//!
//! Who runs it: `stele audit feed run`, a long-running reader of the log
//! (it never takes the writer's lock to read, so it cannot slow the
//! writer). It wakes by polling the log's size (`poll_ms`, 250 ms by
//! default: one indexed `max(seq)` query). `stele serve` hosts the same
//! runner on its own threads (server/src/feed.rs), giving it the server's
//! log handle as its [`LogWriter`] so that its records need no second
//! writer, and waking it on each commit ([`wake::Wake::OnCommit`]). [`metrics`]: the Prometheus figures of every sink.

pub mod alerts;
pub mod config;
pub mod cursor;
pub mod metrics;
pub mod record;
pub mod runner;
pub mod sink;
pub mod source;
pub mod status;
pub mod wake;
pub mod writer;

use std::path::{Path, PathBuf};

pub use metrics::FeedMetrics;
pub use runner::{run, FeedOptions, RunMode};
pub use wake::{FeedHost, Wake};
pub use writer::{LogWriter, OnDemandWriter};

/// Why the feed could not run or stopped.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// A `[[feed]]` entry is invalid.
    #[error("config {}: [[feed]] {sink:?}: {field}: {why}", file.display())]
    Config {
        /// The config file.
        file: PathBuf,
        /// The sink's name.
        sink: String,
        /// The field.
        field: String,
        /// What is wrong.
        why: String,
    },
    /// The config files could not be read.
    #[error(transparent)]
    ConfigFile(#[from] crate::config::ConfigError),
    /// The log could not be read.
    #[error(transparent)]
    Audit(#[from] stele_audit::AuditError),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A cursor file is unusable.
    #[error("feed cursor {}: {why}", path.display())]
    Cursor {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Another feed delivers for this sink.
    #[error("sink {sink:?} is already being fed by another process (lock {})", lock.display())]
    Busy {
        /// The sink.
        sink: String,
        /// Its lock file.
        lock: PathBuf,
    },
    /// The log is not signed by the key given.
    #[error("{}: the log's key is {log_key}, not the key given", db.display())]
    WrongKey {
        /// The database.
        db: PathBuf,
        /// The key the log names.
        log_key: String,
    },
    /// The log could not be read as expected.
    #[error("reading the log: {0}")]
    Read(String),
    /// A sink's cursor does not belong to this log (replaced, rolled back).
    #[error("sink {sink:?}: {why}")]
    Mismatch {
        /// The sink.
        sink: String,
        /// What differs.
        why: String,
    },
    /// The log failed the feed's verification: the sink stopped.
    #[error("sink {sink:?}: the log failed verification, delivery stopped: {why}")]
    Tampered {
        /// The sink.
        sink: String,
        /// What was found.
        why: String,
    },
}

impl FeedError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Now, RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
