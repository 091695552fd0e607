//! Opening the store the configuration names (`[store] url`, else SQLite's
//! `server.db`), and `stele serve --migrate`.
//!
//! SQLite brings its schema up to date whenever it is opened (one server
//! owns the file). PostgreSQL is migrated only by `--migrate`: a database
//! shared by several servers changes when an operator says so, and a
//! server whose database is behind refuses to start. A schema ahead of the
//! binary is refused on both.

use std::sync::Arc;

use super::postgres::{url::redact, PgStore};
use super::sqlite::SqliteStore;
use super::Store;
use crate::config::{ServerConfig, StoreLocation};
use crate::error::ServerError;

/// What `--migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The store, as said in messages (never a password).
    pub store: String,
    /// Its schema version before.
    pub from: i64,
    /// Its schema version after (what this binary knows).
    pub to: i64,
}

/// A PostgreSQL store that cannot be reached or used: an error naming the
/// configuration file and `store.url` (without its password).
fn unreachable(config: &ServerConfig, url: &str, e: &ServerError) -> ServerError {
    let why = format!("store.url: {} cannot be used: {e}", redact(url));
    match &config.source {
        Some(file) => ServerError::Config {
            file: file.clone(),
            why,
        },
        None => ServerError::Start(why),
    }
}

/// Connect to the PostgreSQL store at `url`, naming the configuration on failure.
async fn connect(config: &ServerConfig, url: &str) -> Result<PgStore, ServerError> {
    PgStore::connect(url)
        .await
        .map_err(|e| unreachable(config, url, &e))
}

/// Open the store for serving (or for `stele user`, `stele token`).
pub async fn open(config: &ServerConfig) -> Result<Arc<dyn Store>, ServerError> {
    match config.store_location() {
        StoreLocation::Sqlite(path) => Ok(Arc::new(SqliteStore::open(&path)?)),
        StoreLocation::Postgres(url) => {
            let store = connect(config, &url).await?;
            super::postgres::migrations::require_current(&store).await?;
            Ok(Arc::new(store))
        }
    }
}

/// Apply the store's pending migrations (`stele serve --migrate`).
pub async fn migrate(config: &ServerConfig) -> Result<Migrated, ServerError> {
    match config.store_location() {
        StoreLocation::Sqlite(path) => {
            let from = i64::from(SqliteStore::version_at(&path)?);
            let store = SqliteStore::open(&path)?;
            Ok(Migrated {
                store: path.display().to_string(),
                from,
                to: i64::from(store.version()?),
            })
        }
        StoreLocation::Postgres(url) => {
            let store = connect(config, &url).await?;
            let (from, to) = store.migrate().await?;
            Ok(Migrated {
                store: store.shown_url().to_string(),
                from,
                to,
            })
        }
    }
}
