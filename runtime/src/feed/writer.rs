//! How the feed writes its own entries into the log: the start of a feed
//! (an `audit.read`, R7) and a backlog over its limit (an `audit.alert`).
//! The CLI's feed opens the log as its writer for each entry, briefly
//! (a session holding the log makes that wait: the entry stays pending
//! and is tried again); `stele serve` passes its own log handle.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use stele_attest::Signer;
use stele_audit::{Actor, AuditLog, Event, EventKind, LogOptions};

/// Appends the feed's entries.
pub trait LogWriter: Send + Sync {
    /// Append one entry of `kind` with `data` as the system actor.
    fn append(&self, kind: EventKind, data: serde_json::Value) -> Result<u64, String>;
}

/// Opens the log as its writer for each entry, then closes it.
pub struct OnDemandWriter {
    db: PathBuf,
    signer: Arc<dyn Signer>,
}

impl std::fmt::Debug for OnDemandWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnDemandWriter")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl OnDemandWriter {
    /// For the log at `db`, signed by `signer`.
    pub fn new(db: PathBuf, signer: Arc<dyn Signer>) -> Self {
        Self { db, signer }
    }
}

impl LogWriter for OnDemandWriter {
    fn append(&self, kind: EventKind, data: serde_json::Value) -> Result<u64, String> {
        let opts = LogOptions {
            lock_wait: Duration::from_secs(2),
            ..LogOptions::default()
        };
        let log = AuditLog::open(&self.db, self.signer.clone(), opts).map_err(|e| e.to_string())?;
        let r = log
            .append_blocking(Event::new(kind, Actor::system()).with_data(data))
            .map_err(|e| e.to_string());
        let closed = log.close().map_err(|e| e.to_string());
        let r = r?;
        closed?;
        Ok(r.seq)
    }
}

impl LogWriter for Arc<AuditLog> {
    fn append(&self, kind: EventKind, data: serde_json::Value) -> Result<u64, String> {
        self.append_blocking(Event::new(kind, Actor::system()).with_data(data))
            .map(|r| r.seq)
            .map_err(|e| e.to_string())
    }
}
