//! RFC 3161 timestamps on the log's checkpoints from the runtime.
//!
//! Configured by `[tsa]` (url, the PEM certificate its tokens must chain
//! to, optionally `min_interval_minutes` and `timeout_secs`): when a
//! session's log is closed, its newest checkpoint is stamped — unless a
//! token newer than `min_interval_minutes` is stored already (many short
//! sessions need not each ask the TSA). The token is verified before it is
//! stored (`stele_audit::tsa`); `stele audit export` carries it and
//! `stele-verify --tsa-cert` checks it again. A TSA that cannot be reached
//! or answers badly is a warning: the log's own guarantees do not depend
//! on it, and the missing stamp shows in the period report.

use std::path::{Path, PathBuf};
use std::time::Duration;

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
        Ok(Self {
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

    fn recent_token(&self, db: &Path) -> bool {
        let Ok(store) = stele_audit::Store::open(db) else {
            return false;
        };
        let newest: Option<i64> = store
            .conn()
            .query_row("SELECT max(received_at) FROM timestamps", [], |r| r.get(0))
            .ok()
            .flatten();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        newest.is_some_and(|t| now.saturating_sub(t as u64) < self.min_interval.as_secs())
    }
}
