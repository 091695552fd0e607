//! The store on PostgreSQL (`[store] url = "postgres://…"`): the same
//! tables and semantics as SQLite's, for servers that share one database.
//! A pool of plain connections (no TLS yet: a Unix socket, a loopback or a
//! trusted network); the schema is migrated only when asked
//! (`stele serve --migrate`, see [`migrations`]).

use std::time::Duration;

use deadpool_postgres::{Manager, Object, Pool, Runtime};
use tokio_postgres::NoTls;

use crate::error::ServerError;

mod core;
mod credentials;
mod jobs;
mod kept_bundles;
pub mod migrations;
mod remote;
mod schedules;
mod shipped_reads;
mod shipping;
pub mod url;
mod webhooks;

/// Most connections one server holds to the database.
const POOL_SIZE: usize = 16;
/// How long connecting (or waiting for a pooled connection) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL store: a connection pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// The URL with its password hidden, for messages.
    shown: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

/// What went wrong, in words: a database error's message and detail
/// (never a URL, so never a password).
fn message(e: &tokio_postgres::Error) -> String {
    // The driver's own text for a server error is only "db error": the
    // server's message, code and detail are what an operator can act on.
    match e.as_db_error() {
        Some(d) => {
            let detail = d.detail().map(|x| format!(" ({x})")).unwrap_or_default();
            format!(
                "{} {}: {}{detail}",
                d.severity(),
                d.code().code(),
                d.message()
            )
        }
        None => e.to_string(),
    }
}

/// Whether an error says the database cannot answer *now* (so the same
/// request may succeed later) rather than that the request is wrong.
fn transient(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    match e.as_db_error() {
        // No server answer: transient only if the connection broke or never
        // opened (a closed client, an I/O error); a value that did not
        // convert, or a statement the driver refused, is a failure to fix,
        // not to retry.
        None => {
            e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        }
        Some(d) => {
            let code = d.code();
            // Class 08: connection exceptions.
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                    SqlState::READ_ONLY_SQL_TRANSACTION,
                ]
                .contains(code)
        }
    }
}

/// A driver error as the server's error: unavailable when it is
/// [`transient`] (answered 503), else a failure.
fn classify(e: &tokio_postgres::Error, context: Option<&str>) -> ServerError {
    let text = match context {
        Some(c) => format!("{c}: {}", message(e)),
        None => message(e),
    };
    if transient(e) {
        ServerError::StoreUnavailable(text)
    } else {
        ServerError::Postgres(text)
    }
}

impl From<tokio_postgres::Error> for ServerError {
    fn from(e: tokio_postgres::Error) -> ServerError {
        classify(&e, None)
    }
}

impl From<deadpool_postgres::PoolError> for ServerError {
    fn from(e: deadpool_postgres::PoolError) -> ServerError {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            // Waiting for or making a connection timed out: the database
            // is not answering.
            deadpool_postgres::PoolError::Timeout(_) => {
                ServerError::StoreUnavailable(format!("connection pool: {e}"))
            }
            other => ServerError::Postgres(format!("connection pool: {other}")),
        }
    }
}

impl PgStore {
    /// Connect to the database `url` names (checking it can be reached);
    /// its schema is not looked at (see [`PgStore::open`], [`PgStore::migrate`]).
    pub async fn connect(url: &str) -> Result<PgStore, ServerError> {
        let mut config = self::url::parse(url).map_err(ServerError::Postgres)?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("stele serve");
        // Recycled connections are checked only for being open (deadpool's
        // `Fast`, its default): a query that fails on a dead one fails the
        // request, and the next takes a fresh connection.
        let manager = Manager::new(config, NoTls);
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT * 3))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| ServerError::Postgres(format!("connection pool: {e}")))?;
        let store = PgStore {
            pool,
            shown: self::url::redact(url),
        };
        // Fail now, at start, rather than on the first request.
        drop(store.client().await?);
        Ok(store)
    }

    /// Connect, and refuse a schema that is behind or ahead of this binary.
    pub async fn open(url: &str) -> Result<PgStore, ServerError> {
        let store = PgStore::connect(url).await?;
        migrations::require_current(&store).await?;
        Ok(store)
    }

    /// Apply pending migrations; the schema versions before and after.
    pub async fn migrate(&self) -> Result<(i64, i64), ServerError> {
        migrations::migrate(&mut self.client().await?).await
    }

    /// The schema version.
    pub async fn version(&self) -> Result<i64, ServerError> {
        migrations::version(&self.client().await?).await
    }

    /// The URL, its password hidden.
    pub fn shown_url(&self) -> &str {
        &self.shown
    }

    /// A pooled connection.
    async fn client(&self) -> Result<Object, ServerError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => classify(&e, Some(&self.shown)),
            deadpool_postgres::PoolError::Timeout(_) => {
                ServerError::StoreUnavailable(format!("{}: {e}", self.shown))
            }
            other => ServerError::Postgres(format!("{}: {other}", self.shown)),
        })
    }
}

/// Unix seconds.
fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
