//! The server's configuration file (`stele serve --config FILE`): where it
//! listens, its limits, the workspaces it manages and who may use each.
//! Model settings (`[provider.NAME]`) stay in stele's own configuration
//! layers, as for `stele run`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ServerError;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `[server]`.
    #[serde(default)]
    pub server: ServerSection,
    /// `[workspace.NAME]`: the folders sessions may work in.
    #[serde(default)]
    pub workspace: BTreeMap<String, WorkspaceConfig>,
    /// `[[feed]]`: SIEM sinks the server feeds its log to (docs/siem.md).
    #[serde(default)]
    pub feed: Vec<stele_runtime::feed::config::FeedEntry>,
    /// The `[[feed]]` entries, checked and their tokens loaded by [`ServerConfig::load`].
    #[serde(skip)]
    pub feed_sinks: Vec<stele_runtime::feed::config::SinkConfig>,
    /// `[oidc]`: log in with an identity provider [default: local accounts only].
    #[serde(default)]
    pub oidc: Option<crate::oidc::OidcConfig>,
    /// `[[webhook]]`: where notifications (approval requested, session
    /// ended or paused) are POSTed, signed (docs/server.md "Webhooks").
    #[serde(default)]
    pub webhook: Vec<crate::sessions::webhook::WebhookConfig>,
    /// `[store]`: where the server keeps its state [default: SQLite's
    /// `server.db` beside the audit database].
    #[serde(default)]
    pub store: StoreSection,
    /// `[workers]`: where sessions run [default: in the server].
    #[serde(default)]
    pub workers: WorkersSection,
    /// The file this was read from (None: built-in defaults), for errors
    /// that name it.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[store]`.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`: keep the server's
    /// state in PostgreSQL (several servers may share it) [default: SQLite].
    #[serde(default)]
    pub url: Option<String>,
}

impl std::fmt::Debug for StoreSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never shown.
        f.debug_struct("StoreSection")
            .field(
                "url",
                &self.url.as_deref().map(crate::store::postgres::url::redact),
            )
            .finish()
    }
}

/// Where sessions run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunWhere {
    /// In the server's own process, on its log (the default).
    #[default]
    Local,
    /// Queued as jobs for `stele worker` processes, each on its own log.
    Remote,
}

/// `[workers]` (docs/server.md "Workers").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersSection {
    /// `local` or `remote`.
    #[serde(default)]
    pub run: RunWhere,
    /// Seconds a worker's claim on a session lasts without a heartbeat
    /// (it heartbeats three times per lease).
    #[serde(default = "default_lease")]
    pub lease_secs: u64,
}

impl Default for WorkersSection {
    fn default() -> Self {
        WorkersSection {
            run: RunWhere::Local,
            lease_secs: default_lease(),
        }
    }
}

fn default_lease() -> u64 {
    30
}

/// Where the server's state is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// SQLite, in this file.
    Sqlite(PathBuf),
    /// PostgreSQL, at this URL (it may hold a password: show it only
    /// through [`crate::store::postgres::url::redact`]).
    Postgres(String),
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address to listen on; plain HTTP is only served on loopback.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The address people reach the server at (for set-up links).
    #[serde(default)]
    pub public_url: Option<String>,
    /// Most sessions running at once; more are refused with 429.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Seconds an approval waits for an answer before it is refused.
    #[serde(default = "default_ask_deadline")]
    pub ask_deadline_secs: u64,
    /// Seconds a shutdown waits for running sessions to reach a safe point
    /// (between steps, or parked on an approval) before it exits anyway.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
    /// Seconds a token from `POST /api/v1/login` stays valid.
    #[serde(default = "default_login_ttl")]
    pub login_ttl_secs: u64,
    /// Policy bundle [default: stele's search order, as for `stele run`].
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// Default model for sessions that name none [default: `model` in stele's config].
    #[serde(default)]
    pub model: Option<String>,
    /// Audit database [default: $STATE/audit.db]; `server.db` is kept beside it.
    #[serde(default)]
    pub db: Option<PathBuf>,
    /// Signing key [default: $STATE/keys/log.key].
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Serve the SIEM feed's Prometheus metrics on `GET /metrics` here
    /// (a loopback address only).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// TLS certificate chain (PEM); with `tls_key`, the server speaks HTTPS.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Largest workspace file upload in bytes; a longer body is cut at the
    /// limit with 413 and nothing of it is kept.
    #[serde(default = "default_max_upload")]
    pub max_upload_bytes: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: default_listen(),
            public_url: None,
            max_sessions: default_max_sessions(),
            ask_deadline_secs: default_ask_deadline(),
            shutdown_grace_secs: default_shutdown_grace(),
            login_ttl_secs: default_login_ttl(),
            policy: None,
            model: None,
            db: None,
            key: None,
            metrics_listen: None,
            tls_cert: None,
            tls_key: None,
            max_upload_bytes: default_max_upload(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8650))
}
fn default_max_sessions() -> usize {
    4
}
fn default_ask_deadline() -> u64 {
    900
}
fn default_max_upload() -> u64 {
    1 << 30
}
fn default_shutdown_grace() -> u64 {
    10
}
fn default_login_ttl() -> u64 {
    12 * 3600
}

/// `[workspace.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceConfig {
    /// The folder.
    pub path: PathBuf,
    /// Teams whose members may start sessions in it.
    pub teams: Vec<String>,
}

impl ServerConfig {
    /// Read `path`; a mistake is an error naming the file, line and field.
    pub fn load(path: &Path) -> Result<ServerConfig, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|e| ServerError::Config {
            file: path.to_path_buf(),
            why: e.to_string(),
        })?;
        let mut cfg: ServerConfig = toml::from_str(&text).map_err(|e| ServerError::Config {
            file: path.to_path_buf(),
            // toml's message names the line, the column and the field (and
            // quotes the line: a store URL in it loses its password).
            why: crate::store::postgres::url::redact_in(&e.to_string()),
        })?;
        cfg.source = Some(path.to_path_buf());
        cfg.check().map_err(|why| ServerError::Config {
            file: path.to_path_buf(),
            why,
        })?;
        for (i, w) in cfg.webhook.iter_mut().enumerate() {
            w.load_secret(i).map_err(|why| ServerError::Config {
                file: path.to_path_buf(),
                why,
            })?;
        }
        // Each error names the file, the sink and the field.
        cfg.feed_sinks = cfg
            .feed
            .iter()
            .map(|e| e.check(path))
            .collect::<Result<_, _>>()
            .map_err(|e| ServerError::Start(e.to_string()))?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), String> {
        if self.server.max_sessions == 0 {
            return Err("server.max_sessions: must be at least 1".into());
        }
        if !(2..=3600).contains(&self.workers.lease_secs) {
            return Err("workers.lease_secs: must be from 2 to 3600".into());
        }
        if let Some(m) = self.server.metrics_listen {
            if !m.ip().is_loopback() {
                return Err(format!(
                    "server.metrics_listen: {m} is not a loopback address (the metrics are served without authentication)"
                ));
            }
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return Err("server.tls_cert, server.tls_key: give both or neither".into());
        }
        if self.server.ask_deadline_secs == 0 {
            return Err("server.ask_deadline_secs: must be at least 1".into());
        }
        if let Some(o) = &self.oidc {
            o.check()?;
        }
        if self.server.max_upload_bytes == 0 {
            return Err("server.max_upload_bytes: must be at least 1".into());
        }
        for (i, w) in self.webhook.iter().enumerate() {
            w.check(i)?;
        }
        if let Some(url) = &self.store.url {
            crate::store::postgres::url::parse(url).map_err(|why| format!("store.url: {why}"))?;
        }
        for (name, ws) in &self.workspace {
            if ws.teams.is_empty() {
                return Err(format!(
                    "workspace.{name}.teams: name at least one team (nobody could use it)"
                ));
            }
            if !ws.path.is_absolute() {
                return Err(format!("workspace.{name}.path: must be an absolute path"));
            }
        }
        Ok(())
    }

    /// The audit database.
    pub fn db(&self) -> PathBuf {
        self.server
            .db
            .clone()
            .unwrap_or_else(stele_runtime::paths::default_db)
    }

    /// The signing key.
    pub fn key(&self) -> PathBuf {
        self.server
            .key
            .clone()
            .unwrap_or_else(stele_runtime::paths::default_key)
    }

    /// Where the server's state is kept: `[store] url`, else SQLite.
    pub fn store_location(&self) -> StoreLocation {
        match &self.store.url {
            Some(url) => StoreLocation::Postgres(url.clone()),
            None => StoreLocation::Sqlite(self.store_path()),
        }
    }

    /// The store, as said in messages (a PostgreSQL URL without its password).
    pub fn store_shown(&self) -> String {
        match self.store_location() {
            StoreLocation::Sqlite(p) => p.display().to_string(),
            StoreLocation::Postgres(url) => crate::store::postgres::url::redact(&url),
        }
    }

    /// `server.db`, beside the audit database (the SQLite store).
    pub fn store_path(&self) -> PathBuf {
        let db = self.db();
        db.parent()
            .map_or_else(|| PathBuf::from("server.db"), |d| d.join("server.db"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn mistakes_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("server.toml");
        for (text, want) in [
            ("[server]\nlisten = \"nowhere\"\n", "listen"),
            ("[server]\nmax_sessions = 0\n", "server.max_sessions"),
            ("[server]\nmax_upload_bytes = 0\n", "server.max_upload_bytes"),
            (
                "[[webhook]]\nurl = \"http://chat.example.com/\"\nsecret_file = \"/s\"\n",
                "webhook[0].url",
            ),
            (
                "[[webhook]]\nurl = \"https://chat.example.com/\"\nsecret_file = \"/nonexistent/s\"\n",
                "webhook[0].secret_file",
            ),
            (
                "[[webhook]]\nurl = \"https://c/\"\nsecret_file = \"/s\"\nevents = [\"lunch\"]\n",
                "lunch",
            ),
            (
                "[workspace.books]\npath = \"/srv\"\nteams = []\n",
                "workspace.books.teams",
            ),
            (
                "[workspace.books]\npath = \"rel\"\nteams = [\"a\"]\n",
                "workspace.books.path",
            ),
            ("[server]\nlisten_on = \"127.0.0.1:1\"\n", "listen_on"),
            (
                "[server]\ntls_cert = \"/etc/cert.pem\"\n",
                "server.tls_cert, server.tls_key",
            ),
            (
                "[oidc]\nissuer = \"http://idp.example.com\"\nclient_id = \"s\"\n\
                 client_secret_file = \"/s\"\nredirect_url = \"https://a/cb\"\n",
                "oidc.issuer: must be https",
            ),
            (
                "[oidc]\nissuer = \"https://idp\"\nclient_id = \"s\"\n\
                 client_secret_file = \"/s\"\nredirect_url = \"not a url\"\n",
                "oidc.redirect_url",
            ),
            (
                "[oidc]\nissuer = \"https://idp\"\nclient_id = \"s\"\n\
                 redirect_url = \"https://a/cb\"\n",
                "client_secret_file",
            ),
            ("[store]\nurl = \"mysql://db/x\"\n", "store.url"),
            ("[store]\npath = \"/x\"\n", "path"),
            ("[workers]\nrun = \"elsewhere\"\n", "run"),
            ("[workers]\nlease_secs = 1\n", "workers.lease_secs"),
            ("[workers]\ncapacity = 2\n", "capacity"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = ServerConfig::load(&p).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("server.toml"), "{text}: {e}");
        }
    }

    #[test]
    fn workers_run_here_unless_configured_remote() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("server.toml");
        std::fs::write(&p, "[server]\n").unwrap();
        let c = ServerConfig::load(&p).unwrap();
        assert_eq!((c.workers.run, c.workers.lease_secs), (RunWhere::Local, 30));
        std::fs::write(&p, "[workers]\nrun = \"remote\"\nlease_secs = 5\n").unwrap();
        let c = ServerConfig::load(&p).unwrap();
        assert_eq!((c.workers.run, c.workers.lease_secs), (RunWhere::Remote, 5));
    }

    /// A bad store URL is refused at load, naming the field, without its password.
    #[test]
    fn a_bad_store_url_names_the_field_and_hides_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("server.toml");
        std::fs::write(
            &p,
            "[store]\nurl = \"postgres://stele:hunter2@db:port/stele\"\n",
        )
        .unwrap();
        let e = ServerConfig::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("server.toml") && e.contains("store.url") && !e.contains("hunter2"),
            "{e}"
        );
        std::fs::write(
            &p,
            "[store]\nurl = \"postgres://stele:hunter2@db:5433/stele\"\n",
        )
        .unwrap();
        let c = ServerConfig::load(&p).unwrap();
        assert_eq!(c.store_shown(), "postgres://stele:***@db:5433/stele");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.source.as_deref(), Some(p.as_path()));
    }
}
