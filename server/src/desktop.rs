//! `stele serve --open`, the desktop case: the server on loopback for the
//! person running it. Their local account (named after the OS user running
//! the server, admin of team `local`, made if absent and recorded like any
//! account) is logged in by a one-time link the server prints and opens in
//! the browser (docs/server.md, "On your own machine").

use std::time::Duration;

use crate::error::ServerError;
use crate::record::ServerDecision;
use crate::state::AppState;
use crate::store::{AdminAction, AdminChange, Role, User};

/// The team the desktop account is made in.
pub const LOCAL_TEAM: &str = "local";
/// How long a login link works unless told otherwise.
pub const DEFAULT_LINK_TTL: Duration = Duration::from_secs(300);
/// The environment variable naming the program that opens the link
/// (empty: only print it) [default: `xdg-open`, on macOS `open`].
pub const BROWSER_ENV: &str = "STELE_BROWSER";

/// Whether `stele serve` opens a browser for the person running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Desktop {
    /// A server for others: no link.
    #[default]
    No,
    /// Print a one-time login link working for `link_ttl`, and open it.
    Open {
        /// How long the link works.
        link_ttl: Duration,
    },
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The name of the OS user running this process: its uid's entry in
/// /etc/passwd (which `$USER` cannot fake), else `$USER`.
pub fn os_user() -> Result<(String, Option<u32>), ServerError> {
    use std::os::unix::fs::MetadataExt as _;
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let from_passwd = uid.and_then(|uid| {
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id: u32 = f.nth(1)?.parse().ok()?;
            (id == uid).then(|| name.to_string())
        })
    });
    let name = match from_passwd {
        Some(n) => n,
        None => stele_runtime::principal::from_flag_or_env(None, "")
            .map_err(|e| ServerError::Start(format!("the OS user running the server: {e}")))?,
    };
    stele_runtime::principal::validate("the OS user's name", &name)
        .map_err(|e| ServerError::Start(e.to_string()))?;
    Ok((name, uid))
}

/// The desktop account: the OS user's, made (admin of team `local`, no
/// password) and recorded if absent, then recorded before it works.
pub async fn account(state: &AppState) -> Result<User, ServerError> {
    let (name, uid) = os_user()?;
    if !state.store.account_exists(&name).await? {
        let change = AdminChange {
            by: name.clone(),
            action: AdminAction::AccountAdd,
            subject: name.clone(),
            detail: serde_json::json!({"teams": [LOCAL_TEAM], "role": Role::Admin.as_str(),
                "credential": "login-link", "uid": uid, "made_by": "stele serve --open"}),
            at: now(),
        };
        let user = User {
            name: name.clone(),
            teams: vec![LOCAL_TEAM.to_string()],
            role: Role::Admin,
            password_hash: None,
        };
        state.store.add_user(user, None, Some(change)).await?;
    }
    crate::admin_record::record_admin_changes(state).await?;
    state.store.user(&name).await?.ok_or_else(|| {
        ServerError::Start(format!(
            "the account {name:?} exists but does not work yet (its creation is not recorded)"
        ))
    })
}

/// A one-time login link for `user` on the server at `base` (recorded
/// before it is handed out), working for `ttl`.
pub async fn link(
    state: &AppState,
    user: &User,
    base: &str,
    ttl: Duration,
) -> Result<String, ServerError> {
    let expires = now().saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
    let (secret, id) = state.login_links.issue(&user.name, expires)?;
    state
        .record(ServerDecision {
            principal: user.name.clone(),
            teams: user.teams.clone(),
            action: "login.link",
            effect: stele_audit::Effect::Allow,
            reason: "a one-time login link for the person running `stele serve --open`".into(),
            data: serde_json::json!({"link_id": id, "expires": expires}),
        })
        .await?;
    Ok(format!(
        "{}/api/v1/login/link/{secret}",
        base.trim_end_matches('/')
    ))
}

/// Open `url` in the person's browser; false when there is no program to
/// do it (the link is printed either way).
pub fn open_browser(url: &str) -> bool {
    let program = match std::env::var(BROWSER_ENV) {
        Ok(p) if p.trim().is_empty() => return false,
        Ok(p) => p,
        Err(_) if cfg!(target_os = "macos") => "open".into(),
        Err(_) => "xdg-open".into(),
    };
    let spawned = std::process::Command::new(&program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match spawned {
        Ok(mut child) => {
            // Reaped in the background: the browser may outlive this.
            std::thread::spawn(move || child.wait().map(|s| s.success()).unwrap_or(false));
            true
        }
        Err(_) => false,
    }
}
