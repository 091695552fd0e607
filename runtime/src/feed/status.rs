//! `stele audit feed status`: per sink, its cursor, the log's size, the
//! lag in entries and seconds and the last error. Read-only: it reads the
//! cursor files, the log's size and the time of the oldest entry not yet
//! delivered (no entry's content), so it is not recorded as a read.

use std::path::Path;

use schemars::JsonSchema;
use serde::Serialize;
use stele_audit::Store;

use super::alerts::epoch_ms;
use super::config::SinkConfig;
use super::cursor;
use super::FeedError;

/// The feed's state (docs/json/audit-feed-status.schema.json).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedStatus {
    /// The audit database.
    pub db: String,
    /// Its origin.
    pub origin: String,
    /// Entries in the log.
    pub size: u64,
    /// One per configured sink, then any other sink with a cursor file.
    pub sinks: Vec<SinkStatus>,
}

/// One sink's state.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SinkStatus {
    /// Its name.
    pub name: String,
    /// `syslog`, `hec` or `otlp`.
    pub kind: String,
    /// Where it delivers.
    pub endpoint: String,
    /// Whether the config names it (a cursor file may outlive its entry).
    pub configured: bool,
    /// Index of the next entry to deliver (0 before the first delivery).
    pub cursor: u64,
    /// Entries verified against a signed checkpoint.
    pub verified: u64,
    /// Entries not yet delivered.
    pub lag_entries: u64,
    /// Age in seconds of the oldest entry not yet delivered (0 when none).
    pub lag_seconds: u64,
    /// The backlog alert limit (configured sinks only).
    pub backlog_limit: Option<u64>,
    /// Whether the backlog is over its limit and its alert was logged.
    pub backlog_alerted: bool,
    /// When a delivery last succeeded (RFC 3339).
    pub delivered_at: Option<String>,
    /// The last delivery error, if the last attempt failed.
    pub last_error: Option<String>,
    /// When it happened (RFC 3339).
    pub last_error_at: Option<String>,
    /// Failed attempts in a row.
    pub failed_attempts: u64,
    /// Set when the log failed verification and the sink stopped.
    pub tampered: Option<String>,
}

/// The status of the feed of the log at `db` for `sinks`.
pub fn status(db: &Path, sinks: &[SinkConfig]) -> Result<FeedStatus, FeedError> {
    let store = Store::open(db)?;
    let origin = store.meta_required("origin")?;
    let size = store.size()?;
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let mut names: Vec<(String, Option<&SinkConfig>)> =
        sinks.iter().map(|s| (s.name.clone(), Some(s))).collect();
    if let Ok(rd) = std::fs::read_dir(cursor::folder(db)) {
        let mut others: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
            .filter(|n| !names.iter().any(|(m, _)| m == n))
            .collect();
        others.sort();
        names.extend(others.into_iter().map(|n| (n, None)));
    }
    let mut out = Vec::new();
    for (name, cfg) in names {
        let state = cursor::load(&cursor::path(db, &name))?;
        let (kind, endpoint) = match (cfg, &state) {
            (Some(c), _) => (c.kind.as_str().to_string(), super::runner::endpoint_text(c)),
            (None, Some(s)) => (s.kind.clone(), s.endpoint.clone()),
            (None, None) => continue,
        };
        let cursor = state.as_ref().map_or(0, |s| s.cursor);
        let lag_entries = size.saturating_sub(cursor);
        let lag_seconds = if lag_entries > 0 {
            let e = store.entry(cursor)?;
            stele_audit::leaf_view::LeafText::scan(&e.leaf)
                .and_then(|t| epoch_ms(&t.ts.text()))
                .map_or(0, |t| (now_ms.saturating_sub(t) / 1000).max(0) as u64)
        } else {
            0
        };
        let err = state.as_ref().and_then(|s| s.last_error.clone());
        out.push(SinkStatus {
            name,
            kind,
            endpoint,
            configured: cfg.is_some(),
            cursor,
            verified: state.as_ref().map_or(0, |s| s.verified.size),
            lag_entries,
            lag_seconds,
            backlog_limit: cfg.map(|c| c.backlog_limit),
            backlog_alerted: state.as_ref().is_some_and(|s| s.backlog_alerted),
            delivered_at: state.as_ref().and_then(|s| s.delivered_at.clone()),
            last_error: err.as_ref().map(|e| e.message.clone()),
            last_error_at: err.as_ref().map(|e| e.at.clone()),
            failed_attempts: err.as_ref().map_or(0, |e| e.attempts),
            tampered: state.as_ref().and_then(|s| s.tampered.clone()),
        });
    }
    Ok(FeedStatus {
        db: db.display().to_string(),
        origin,
        size,
        sinks: out,
    })
}
