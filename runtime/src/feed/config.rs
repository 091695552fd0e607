//! `[[feed]]` entries of the config: one live SIEM sink each.
//!
//! There is deliberately no setting that drops, samples or skips events:
//! a sink that cannot take them holds its cursor and retries (the backlog
//! grows and is alerted on), and an unknown field (`drop = true`, …) is a
//! configuration error naming it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::provider::secret::Secret;

use super::FeedError;

/// Which wire a sink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// RFC 5424 messages over RFC 5425 TLS with octet counting.
    Syslog,
    /// Splunk HTTP Event Collector (`/services/collector/event`).
    Hec,
    /// OTLP logs over HTTP (protobuf, `/v1/logs`).
    Otlp,
}

impl SinkKind {
    /// The name used in config and status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Syslog => "syslog",
            Self::Hec => "hec",
            Self::Otlp => "otlp",
        }
    }
}

/// One `[[feed]]` entry as written in the config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedEntry {
    /// Name of the sink (its cursor file is `<name>.json`): letters,
    /// digits, `-`, `_`, `.`.
    pub name: String,
    /// `syslog`, `hec` or `otlp`.
    pub kind: SinkKind,
    /// `host:port` for syslog; a base URL for hec and otlp (`https://…`;
    /// `http://` only to a loopback address).
    pub endpoint: String,
    /// PEM file of the CA(s) that sign the receiver's certificate; when
    /// given, nothing else is trusted [default: the Mozilla roots].
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain for mutual TLS (with `client_key`).
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// File holding the token (HEC token; for OTLP a bearer token).
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the token.
    pub token_env: Option<String>,
    /// Most log entries per delivery [default: 1000, at most 10000].
    pub batch: Option<usize>,
    /// Backlog (entries not yet delivered) above which an `audit.alert`
    /// entry is logged, once per crossing [default: 100000].
    pub backlog_limit: Option<u64>,
    /// How often the log's size is polled, in milliseconds [default: 250].
    pub poll_ms: Option<u64>,
    /// Seconds one delivery may take before it counts as failed [default: 30].
    pub timeout_secs: Option<u64>,
    /// Syslog facility number 0–23 [default: 13, "log audit"].
    pub facility: Option<u8>,
    /// HEC `index` to write to [default: the token's default].
    pub index: Option<String>,
    /// Alert rules (`[feed.alerts]`).
    #[serde(default)]
    pub alerts: AlertRules,
}

/// Thresholds of the alert rules (docs/siem.md, "Alerts").
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertRules {
    /// A time gap between consecutive entries of a running writer longer
    /// than this is a logging gap [default: 180, three heartbeats].
    pub gap_secs: u64,
    /// Denials by one principal that make a burst…
    pub denials: u32,
    /// …within this many seconds [default: 10 in 60].
    pub denials_window_secs: u64,
    /// Approvers expected; when non-empty, any other approver is unusual.
    pub approvers: Vec<String>,
    /// Without a list: an approver absent from this many previous
    /// approvals is unusual [default: 50].
    pub approver_history: usize,
}

impl Default for AlertRules {
    fn default() -> Self {
        Self {
            gap_secs: 180,
            denials: 10,
            denials_window_secs: 60,
            approvers: Vec::new(),
            approver_history: 50,
        }
    }
}

/// Where a sink delivers, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Syslog over TLS: the host (for the certificate check) and port.
    Syslog {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// An HTTP(S) base URL without a trailing `/`.
    Http(String),
}

/// A checked `[[feed]]` entry, token loaded.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Its name.
    pub name: String,
    /// Its wire.
    pub kind: SinkKind,
    /// Where.
    pub endpoint: Endpoint,
    /// Trusted CA file, if any.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub client_auth: Option<(PathBuf, PathBuf)>,
    /// The token (never logged: `Debug` prints `***`).
    pub token: Option<Secret>,
    /// Entries per delivery.
    pub batch: usize,
    /// Backlog alert limit.
    pub backlog_limit: u64,
    /// Poll interval.
    pub poll: Duration,
    /// One delivery's time limit.
    pub timeout: Duration,
    /// Syslog facility.
    pub facility: u8,
    /// HEC index.
    pub index: Option<String>,
    /// Alert thresholds.
    pub alerts: AlertRules,
}

/// Most entries one delivery may carry.
pub const MAX_BATCH: usize = 10_000;

impl FeedEntry {
    /// Check the entry and load its token. `source` names the config file
    /// in errors.
    pub fn check(&self, source: &Path) -> Result<SinkConfig, FeedError> {
        let bad = |field: &str, why: String| FeedError::Config {
            file: source.to_path_buf(),
            sink: self.name.clone(),
            field: field.to_string(),
            why,
        };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !self.name.starts_with('.');
        if !name_ok {
            return Err(bad(
                "name",
                "must be 1-64 letters, digits, '-', '_' or '.' (not starting with '.')".into(),
            ));
        }
        let endpoint = match self.kind {
            SinkKind::Syslog => parse_host_port(&self.endpoint).map_err(|w| bad("endpoint", w))?,
            SinkKind::Hec | SinkKind::Otlp => {
                parse_http(&self.endpoint).map_err(|w| bad("endpoint", w))?
            }
        };
        let batch = self.batch.unwrap_or(1000);
        if batch == 0 || batch > MAX_BATCH {
            return Err(bad("batch", format!("must be 1-{MAX_BATCH}")));
        }
        let facility = self.facility.unwrap_or(13);
        if facility > 23 {
            return Err(bad("facility", "must be 0-23".into()));
        }
        let poll_ms = self.poll_ms.unwrap_or(250);
        if !(10..=60_000).contains(&poll_ms) {
            return Err(bad("poll_ms", "must be 10-60000".into()));
        }
        let timeout = self.timeout_secs.unwrap_or(30);
        if !(1..=3600).contains(&timeout) {
            return Err(bad("timeout_secs", "must be 1-3600".into()));
        }
        if self.alerts.denials == 0 || self.alerts.denials_window_secs == 0 {
            return Err(bad(
                "alerts.denials",
                "the denial count and window must be at least 1".into(),
            ));
        }
        if self.alerts.gap_secs == 0 {
            return Err(bad("alerts.gap_secs", "must be at least 1".into()));
        }
        let client_auth = match (&self.client_cert, &self.client_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => {
                return Err(bad(
                    "client_cert",
                    "client_cert and client_key go together".into(),
                ))
            }
        };
        let token = self.token().map_err(|(f, w)| bad(f, w))?;
        if self.kind == SinkKind::Hec && token.is_none() {
            return Err(bad(
                "token_file",
                "a HEC sink needs its token (token_file or token_env)".into(),
            ));
        }
        if self.kind == SinkKind::Syslog && token.is_some() {
            return Err(bad("token_file", "syslog over TLS takes no token".into()));
        }
        Ok(SinkConfig {
            name: self.name.clone(),
            kind: self.kind,
            endpoint,
            ca_file: self.ca_file.clone(),
            client_auth,
            token,
            batch,
            backlog_limit: self.backlog_limit.unwrap_or(100_000),
            poll: Duration::from_millis(poll_ms),
            timeout: Duration::from_secs(timeout),
            facility,
            index: self.index.clone(),
            alerts: self.alerts.clone(),
        })
    }

    fn token(&self) -> Result<Option<Secret>, (&'static str, String)> {
        match (&self.token_file, &self.token_env) {
            (Some(_), Some(_)) => Err((
                "token_file",
                "give token_file or token_env, not both".into(),
            )),
            (Some(p), None) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ("token_file", format!("{}: {e}", p.display())))?;
                let t = text.trim();
                if t.is_empty() || t.contains(['\r', '\n']) {
                    return Err((
                        "token_file",
                        format!("{}: must hold one non-empty line", p.display()),
                    ));
                }
                Ok(Some(Secret::new(t)))
            }
            (None, Some(var)) => Secret::from_env(var).map(Some).ok_or((
                "token_env",
                format!("environment variable {var} is unset or empty"),
            )),
            (None, None) => Ok(None),
        }
    }
}

fn parse_host_port(s: &str) -> Result<Endpoint, String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{s:?}: the port must be 1-65535"))?;
    if host.is_empty() || host.contains(['/', ' ']) {
        return Err(format!("{s:?} is not host:port"));
    }
    Ok(Endpoint::Syslog {
        host: host.to_string(),
        port,
    })
}

fn parse_http(s: &str) -> Result<Endpoint, String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("{s:?}: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(format!(
                "{s:?}: plain http only to a loopback address; use https"
            ))
        }
        other => return Err(format!("{s:?}: scheme {other:?} is not http(s)")),
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "{s:?}: a base URL without credentials, query or fragment"
        ));
    }
    Ok(Endpoint::Http(s.trim_end_matches('/').to_string()))
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(h) = url.host_str() else {
        return false;
    };
    h == "localhost"
        || h.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

/// The sinks of the config layers (managed wins: its `[[feed]]` list
/// replaces the user's), checked.
pub fn sinks_from_config() -> Result<Vec<SinkConfig>, FeedError> {
    let layers = crate::config::load()?;
    let (entries, source) = match &layers.managed {
        Some((p, m, _)) if m.feed.is_some() => (m.feed.clone(), p.clone()),
        _ => match &layers.user {
            Some((p, u)) => (u.feed.clone(), p.clone()),
            None => (None, PathBuf::new()),
        },
    };
    let entries = entries.unwrap_or_default();
    let mut out = Vec::with_capacity(entries.len());
    for e in &entries {
        let s = e.check(&source)?;
        if out.iter().any(|o: &SinkConfig| o.name == s.name) {
            return Err(FeedError::Config {
                file: source,
                sink: s.name,
                field: "name".into(),
                why: "two [[feed]] entries have this name".into(),
            });
        }
        out.push(s);
    }
    Ok(out)
}
