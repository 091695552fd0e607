//! Account and token administration on the server's host (`stele user add`,
//! `stele token create`), straight into the server's store.

use std::sync::Arc;

use crate::auth::{password, tokens};
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::store::sqlite::SqliteStore;
use crate::store::{Role, Store, User};

/// How long a set-up link works.
pub const SETUP_TTL_SECS: i64 = 72 * 3600;

/// What `stele user add` produced.
#[derive(Debug)]
pub enum Added {
    /// The password was set.
    WithPassword,
    /// The person sets their password with this one-time link (shown once).
    SetupLink(String),
}

fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, ServerError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ServerError::Start(format!("the async runtime: {e}")))?;
    Ok(rt.block_on(f))
}

fn store(config: &ServerConfig) -> Result<Arc<dyn Store>, ServerError> {
    Ok(Arc::new(SqliteStore::open(&config.store_path())?))
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Add account `name` in `teams` with `role`; with `password` it is set,
/// else a one-time set-up link is made.
pub fn add_user(
    config: &ServerConfig,
    name: &str,
    teams: Vec<String>,
    role: Role,
    password: Option<&str>,
) -> Result<Added, ServerError> {
    stele_runtime::principal::validate("NAME", name)
        .map_err(|e| ServerError::Start(e.to_string()))?;
    for t in &teams {
        stele_runtime::principal::validate("--team", t)
            .map_err(|e| ServerError::Start(e.to_string()))?;
    }
    if teams.is_empty() {
        return Err(ServerError::Start("--team: give at least one team".into()));
    }
    let hash = password.map(password::hash).transpose()?;
    let (added, setup) = match hash {
        Some(h) => (Added::WithPassword, (Some(h), None)),
        None => {
            let (secret, secret_hash) = tokens::generate()?;
            let base = config
                .server
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", config.server.listen));
            (
                Added::SetupLink(format!("{}/setup#{secret}", base.trim_end_matches('/'))),
                (None, Some((secret_hash, now() + SETUP_TTL_SECS))),
            )
        }
    };
    let user = User {
        name: name.to_string(),
        teams,
        role,
        password_hash: setup.0,
    };
    let s = store(config)?;
    if !block_on(s.add_user(user, setup.1))?? {
        return Err(ServerError::Start(format!(
            "NAME: an account {name:?} exists already"
        )));
    }
    Ok(added)
}

/// A new API token for `user`, valid `ttl_days`: the token (shown once) and its expiry.
pub fn create_token(
    config: &ServerConfig,
    user: &str,
    label: &str,
    ttl_days: u32,
) -> Result<(String, i64), ServerError> {
    if ttl_days == 0 || ttl_days > 366 {
        return Err(ServerError::Start(
            "--days: a token lives 1 to 366 days".into(),
        ));
    }
    let s = store(config)?;
    if block_on(s.user(user))??.is_none() {
        return Err(ServerError::Start(format!(
            "--user: no account {user:?} (add it with `stele user add`)"
        )));
    }
    let (token, hash) = tokens::generate()?;
    let t = now();
    let expires = t + i64::from(ttl_days) * 86_400;
    block_on(s.add_token(user, &hash, label, t, expires))??;
    Ok((token, expires))
}
