//! Account and token administration on the server's host (`stele user add`,
//! `stele token create`), into the server's store — inert until the server
//! has recorded the change in the audit log (`admin_record.rs`).

use std::sync::Arc;

use crate::auth::scopes::Scopes;
use crate::auth::{password, tokens};
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::store::{AdminAction, AdminChange, Role, Store, User};

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

/// The store the configuration names, with the runtime its connections
/// (PostgreSQL) live on for the command's length.
struct HostStore {
    rt: tokio::runtime::Runtime,
    store: Arc<dyn Store>,
}

impl HostStore {
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

fn store(config: &ServerConfig) -> Result<HostStore, ServerError> {
    let rt = crate::serve::host_runtime()?;
    let store = rt.block_on(crate::store::open::open(config))?;
    Ok(HostStore { rt, store })
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The change to queue: made by the host user running the command (its
/// name and numeric uid, which `$USER` cannot fake).
fn change(
    action: AdminAction,
    subject: &str,
    detail: serde_json::Value,
) -> Result<AdminChange, ServerError> {
    use std::os::unix::fs::MetadataExt as _;
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let by = stele_runtime::principal::from_flag_or_env(None, "unknown")
        .map_err(|e| ServerError::Start(e.to_string()))?;
    let mut detail = detail;
    if let Some(o) = detail.as_object_mut() {
        o.insert("uid".into(), serde_json::json!(uid));
    }
    Ok(AdminChange {
        by,
        action,
        subject: subject.to_string(),
        detail,
        at: now(),
    })
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
    let change = change(
        AdminAction::AccountAdd,
        name,
        serde_json::json!({
            "teams": teams,
            "role": role.as_str(),
            "credential": if setup.0.is_some() { "password" } else { "setup-link" },
        }),
    )?;
    let user = User {
        name: name.to_string(),
        teams,
        role,
        password_hash: setup.0,
    };
    let s = store(config)?;
    if !s.block_on(s.store.add_user(user, setup.1, Some(change)))? {
        return Err(ServerError::Start(format!(
            "NAME: an account {name:?} exists already"
        )));
    }
    Ok(added)
}

/// A new API token for `user`, valid `ttl_days`, for `scopes`: the token
/// (shown once), its id (the first 12 hex digits of its SHA-256) and its expiry.
pub fn create_token(
    config: &ServerConfig,
    user: &str,
    label: &str,
    scopes: Scopes,
    ttl_days: u32,
) -> Result<(String, String, i64), ServerError> {
    if ttl_days == 0 || ttl_days > 366 {
        return Err(ServerError::Start(
            "--days: a token lives 1 to 366 days".into(),
        ));
    }
    let s = store(config)?;
    if !s.block_on(s.store.account_exists(user))? {
        return Err(ServerError::Start(format!(
            "--user: no account {user:?} (add it with `stele user add`)"
        )));
    }
    let (token, hash) = tokens::generate()?;
    let t = now();
    let expires = t + i64::from(ttl_days) * 86_400;
    // The token's hash prefix lets a reviewer tell tokens apart without it
    // being usable (the full hash is what the store keeps).
    let change = change(
        AdminAction::TokenCreate,
        user,
        serde_json::json!({"label": label, "expires": expires, "token_id": &hash[..hash.len().min(12)],
            "scopes": scopes.to_string()}),
    )?;
    s.block_on(
        s.store
            .add_token(user, &hash, label, scopes, (t, expires), Some(change)),
    )?;
    Ok((token, hash[..12].to_string(), expires))
}

/// Revoke the token whose id (12 hex digits, printed by `stele token
/// create` and recorded in its `token.create` entry) is `id`: it stops
/// working at once, and the server records the revocation before the
/// first request it refuses. The account it belonged to.
pub fn revoke_token(config: &ServerConfig, id: &str) -> Result<String, ServerError> {
    if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ServerError::Start(format!(
            "ID: {id:?} is not a token id (12 hex digits, as `stele token create` prints)"
        )));
    }
    let id = id.to_ascii_lowercase();
    let s = store(config)?;
    let change = change(
        AdminAction::TokenRevoke,
        "",
        serde_json::json!({"token_id": id}),
    )?;
    s.block_on(s.store.revoke_token_by_id(&id, now(), change))?
        .ok_or_else(|| {
            ServerError::Start(format!(
                "ID: no live token {id} (unknown, or already revoked)"
            ))
        })
}

/// The API tokens of `user` (or of every account), oldest first: ids,
/// accounts, labels, scopes and times, never a token or its hash.
pub fn list_tokens(
    config: &ServerConfig,
    user: Option<&str>,
) -> Result<Vec<crate::store::credentials::TokenInfo>, ServerError> {
    let s = store(config)?;
    if let Some(u) = user {
        if !s.block_on(s.store.account_exists(u))? {
            return Err(ServerError::Start(format!("--user: no account {u:?}")));
        }
    }
    s.block_on(s.store.tokens(user))
}
