//! RFC 3161 timestamps on the log's checkpoints from the runtime.
//!
//! Configured by `[tsa]` (url, the PEM certificate its tokens must chain
//! to, optionally `min_interval_minutes`, `every_secs` and `timeout_secs`),
//! read and checked when a session or `stele audit timestamp` starts (a bad
//! table stops it there, naming the field, not at its end). When a
//! session's log is closed, its newest checkpoint is stamped — unless a
//! token newer than `min_interval_minutes` is stored already (many short
//! sessions need not each ask the TSA). With `every_secs = N` a running
//! session also stamps its newest checkpoint while it runs, at most every N
//! seconds ([`periodic`]); `stele audit timestamp` stamps it on demand. The token is verified before it is
//! stored (`stele_audit::tsa`); `stele audit export` carries it and
//! `stele-verify --tsa-cert` checks it again. A TSA that cannot be reached
//! or answers badly is a warning: the log's own guarantees do not depend
//! on it, and the missing stamp shows in the period report.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod periodic;

use stele_attest::timestamp::TsaTrust;
use stele_attest::NoteVerifier;
use stele_audit::tsa::{stamp_latest, Stamped, TsaError, TsaTarget};

/// The `[tsa]` table of the config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsaConfig {
    /// The TSA's URL (`application/timestamp-query` is POSTed there).
    pub url: String,
    /// PEM file: the TSA's certificate, or the CA that issues it.
    pub cert: PathBuf,
    /// Skip stamping when a token younger than this is stored [default: 0].
    pub min_interval_minutes: Option<u64>,
    /// While a session runs, stamp its newest checkpoint at most every
    /// this many seconds (none: only at its end).
    pub every_secs: Option<u64>,
    /// How long to wait for the TSA [default: 15].
    pub timeout_secs: Option<u64>,
}

/// Why the `[tsa]` configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TimestampingError {
    /// The table is wrong.
    #[error("config [tsa] {field}: {message}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The configuration could not be read.
    #[error(transparent)]
    Load(#[from] crate::config::ConfigError),
}

/// A configured TSA.
#[derive(Debug, Clone)]
pub struct Timestamping {
    target: TsaTarget,
    min_interval: Duration,
    every: Option<Duration>,
}

impl Timestamping {
    /// The `[tsa]` of the config layers (the managed one wins), if any.
    pub fn load() -> Result<Option<Self>, TimestampingError> {
        let layers = crate::config::load()?;
        match layers.pick("tsa", None, |c| c.tsa.clone())? {
            Some(c) => Self::from_config(&c).map(Some),
            None => Ok(None),
        }
    }

    /// From a parsed `[tsa]` table.
    pub fn from_config(c: &TsaConfig) -> Result<Self, TimestampingError> {
        if c.url.trim().is_empty() {
            return Err(TimestampingError::Config {
                field: "url",
                message: "is empty; give the TSA's http(s) URL".into(),
            });
        }
        if !(c.url.starts_with("http://") || c.url.starts_with("https://")) {
            return Err(TimestampingError::Config {
                field: "url",
                message: format!("{:?} is not http(s)", c.url),
            });
        }
        let pem = std::fs::read_to_string(&c.cert).map_err(|e| TimestampingError::Config {
            field: "cert",
            message: format!("{}: {e}", c.cert.display()),
        })?;
        let trust = TsaTrust::from_pem(&pem).map_err(|e| TimestampingError::Config {
            field: "cert",
            message: format!("{}: {e}", c.cert.display()),
        })?;
        let every = match c.every_secs {
            None => None,
            Some(0) => {
                return Err(TimestampingError::Config {
                    field: "every_secs",
                    message: "must be at least 1 (leave it out to stamp only at session end)"
                        .into(),
                })
            }
            Some(n) => Some(Duration::from_secs(n)),
        };
        if c.timeout_secs == Some(0) {
            return Err(TimestampingError::Config {
                field: "timeout_secs",
                message: "must be at least 1".into(),
            });
        }
        Ok(Self {
            every,
            target: TsaTarget {
                url: c.url.clone(),
                trust,
                timeout: Duration::from_secs(c.timeout_secs.unwrap_or(15)),
            },
            min_interval: Duration::from_secs(c.min_interval_minutes.unwrap_or(0) * 60),
        })
    }

    /// Stamp the newest checkpoint of the closed log at `db`, unless a
    /// token younger than the minimum interval is stored.
    pub fn stamp(&self, db: &Path, log_key: &NoteVerifier) -> Result<Option<Stamped>, TsaError> {
        if !self.min_interval.is_zero() && self.recent_token(db) {
            return Ok(None);
        }
        stamp_latest(db, log_key, &self.target).map(Some)
    }

    /// Stamp the newest checkpoint of the log at `db` now, whatever is
    /// stored (`stele audit timestamp`).
    pub fn stamp_now(&self, db: &Path, log_key: &NoteVerifier) -> Result<Stamped, TsaError> {
        stamp_latest(db, log_key, &self.target)
    }

    /// How often a running session stamps (`every_secs`), if it does.
    pub fn every(&self) -> Option<Duration> {
        self.every
    }

    /// The TSA's URL.
    pub fn url(&self) -> &str {
        &self.target.url
    }

    fn recent_token(&self, db: &Path) -> bool {
        token_within(db, self.min_interval)
    }
}

/// Say what stamping did, the same way wherever it happens (session end,
/// while a session runs, `stele audit timestamp`): on stderr, escaped.
pub fn report(result: &Result<Option<Stamped>, TsaError>) {
    match result {
        Ok(Some(s)) => crate::errln!(
            "stele: checkpoint {} timestamped {} by {}",
            s.size,
            s.stamp.gen_time,
            crate::terminal_safe::line(&s.stamp.tsa)
        ),
        Ok(None) => {}
        Err(e) => crate::errln!(
            "stele: warning: no RFC 3161 timestamp: {}",
            crate::terminal_safe::line(&e.to_string())
        ),
    }
}

/// Whether the log at `db` holds a token received less than `window` ago.
fn token_within(db: &Path, window: Duration) -> bool {
    let newest: Option<i64> = stored(db, "SELECT max(received_at) FROM timestamps");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    newest.is_some_and(|t| now.saturating_sub(t as u64) < window.as_secs())
}

/// The size of the newest checkpoint of the log at `db` and of the newest
/// one stamped (none when there is none, or the log cannot be read).
fn checkpoint_sizes(db: &Path) -> (Option<u64>, Option<u64>) {
    let newest = stele_audit::Store::open(db)
        .ok()
        .and_then(|s| s.latest_checkpoint().ok().flatten())
        .map(|(size, _)| size);
    let stamped: Option<i64> = stored(db, "SELECT max(size) FROM timestamps");
    (newest, stamped.map(|s| s as u64))
}

/// One value of the log's tables (none when it has none or cannot be read:
/// an older log has no `timestamps` table until its first token).
fn stored(db: &Path, sql: &str) -> Option<i64> {
    let store = stele_audit::Store::open(db).ok()?;
    store.conn().query_row(sql, [], |r| r.get(0)).ok().flatten()
}
