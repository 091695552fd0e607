//! What a sink delivers: one OCSF event per log entry, and the findings
//! of the alert rules right after the entry that triggered them.

use stele_audit::merkle::Hash;
use stele_audit::EventKind;

use super::alerts::Rule;

/// Whether a record is an entry or a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// The OCSF event of a log entry.
    Entry {
        /// The entry's kind.
        kind: EventKind,
        /// Whether its decision was a denial.
        denied: bool,
    },
    /// A Detection Finding of an alert rule.
    Finding(Rule),
}

/// One record to deliver.
#[derive(Debug, Clone)]
pub struct FeedRecord {
    /// Index of the entry (for a finding: of the entry that triggered it).
    pub seq: u64,
    /// That entry's leaf hash.
    pub leaf_hash: Hash,
    /// Entry or finding.
    pub kind: RecordKind,
    /// The entry's time as written in the leaf (RFC 3339, UTC).
    pub ts: String,
    /// The same in milliseconds since the epoch.
    pub time_ms: i64,
    /// The OCSF event, one line of JSON.
    pub json: Vec<u8>,
}

impl FeedRecord {
    /// A short name of what it is: the entry's kind, or `finding.<rule>`.
    pub fn label(&self) -> String {
        match self.kind {
            RecordKind::Entry { kind, .. } => kind.as_str().to_string(),
            RecordKind::Finding(r) => format!("finding.{}", r.as_str()),
        }
    }

    /// Syslog severity (RFC 5424: 2 critical, 4 warning, 5 notice, 6 informational).
    pub fn syslog_severity(&self) -> u8 {
        match self.kind {
            RecordKind::Entry { denied: true, .. } => 5,
            RecordKind::Entry { .. } => 6,
            RecordKind::Finding(r) if r.severity_id() >= 5 => 2,
            RecordKind::Finding(_) => 4,
        }
    }

    /// OTLP severity number (9 INFO, 10 INFO2 for a denial, 13 WARN, 21 FATAL).
    pub fn otlp_severity(&self) -> (i32, &'static str) {
        match self.kind {
            RecordKind::Entry { denied: true, .. } => (10, "INFO2"),
            RecordKind::Entry { .. } => (9, "INFO"),
            RecordKind::Finding(r) if r.severity_id() >= 5 => (21, "FATAL"),
            RecordKind::Finding(_) => (13, "WARN"),
        }
    }
}
