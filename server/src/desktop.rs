//! `stele serve --open`, the desktop case: the server on loopback for the
//! person running it. Their local account (named after the OS user running
//! the server, admin of team `local`, made if absent and recorded like any
//! account) is logged in by a one-time link the server prints and opens in
//! the browser (docs/server.md, "On your own machine").

use std::path::{Path, PathBuf};
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

/// The name of the desktop's default workspace.
pub const LOCAL_WORKSPACE: &str = "local";

/// Whether `stele serve` opens a browser for the person running it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Desktop {
    /// A server for others: no link.
    #[default]
    No,
    /// Print a one-time login link working for `link_ttl`, and open it.
    Open {
        /// How long the link works.
        link_ttl: Duration,
        /// `--workspace DIR`: the folder of workspace `local` [default: the
        /// folder the server was started in, when the configuration names
        /// no workspace].
        workspace: Option<PathBuf>,
    },
}

/// Where the desktop's default workspace came from (for the banner).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkspaceOrigin {
    /// `--workspace DIR`.
    Flag,
    /// The folder `stele serve --open` was started in.
    StartedIn,
}

/// What the desktop set-up added to the configuration, for the banner.
#[derive(Debug, Clone, Default)]
pub struct DesktopDefaults {
    /// Workspace `local` and where its folder came from, when added.
    pub workspace: Option<(PathBuf, WorkspaceOrigin)>,
    /// The built-in desktop bundle written for the OS user, when used.
    pub policy: Option<PathBuf>,
}

/// Make the desktop default real when the configuration leaves it open:
/// workspace `local` (team `local`) on `--workspace DIR`, else, when the
/// configuration names no workspace, on the folder the server was started
/// in; and, when no bundle is configured and neither the user's nor the
/// system's policy folder exists, the built-in desktop bundle
/// (`policies/desktop`) with the OS user as the one member of team
/// `local`. A configuration that names its workspaces and policy is left
/// as it is.
pub fn defaults(
    config: &mut crate::config::ServerConfig,
    workspace: Option<&Path>,
) -> Result<DesktopDefaults, ServerError> {
    let mut out = DesktopDefaults::default();
    let chosen = match workspace {
        Some(dir) => Some((dir.to_path_buf(), WorkspaceOrigin::Flag)),
        None if config.workspace.is_empty() => {
            let here = std::env::current_dir().map_err(|e| {
                ServerError::Start(format!("--open: the folder it was started in: {e}"))
            })?;
            Some((here, WorkspaceOrigin::StartedIn))
        }
        None => None,
    };
    if let Some((dir, origin)) = chosen {
        let what = match origin {
            WorkspaceOrigin::Flag => format!("--workspace {}", dir.display()),
            WorkspaceOrigin::StartedIn => {
                format!("the folder it was started in ({})", dir.display())
            }
        };
        let path = std::fs::canonicalize(&dir)
            .map_err(|e| ServerError::Start(format!("--open: {what}: {e}")))?;
        if !path.is_dir() {
            return Err(ServerError::Start(format!("--open: {what}: not a folder")));
        }
        if path.parent().is_none() {
            return Err(ServerError::Start(format!(
                "--open: {what}: the whole file system cannot be a workspace; start it in a \
                 project folder or give --workspace DIR"
            )));
        }
        if let Some(have) = config.workspace.get(LOCAL_WORKSPACE) {
            if have.path != path {
                return Err(ServerError::Start(format!(
                    "--open: {what}: the configuration already has [workspace.{LOCAL_WORKSPACE}] \
                     on {}",
                    have.path.display()
                )));
            }
        }
        config.workspace.insert(
            LOCAL_WORKSPACE.to_string(),
            crate::config::WorkspaceConfig {
                path: path.clone(),
                teams: vec![LOCAL_TEAM.to_string()],
            },
        );
        out.workspace = Some((path, origin));
    }
    let searched = stele_runtime::policy_location::search_folders()
        .into_iter()
        .any(|(_, dir)| dir.exists());
    if config.server.policy.is_none() && !searched {
        let (owner, _) = os_user()?;
        let dir = stele_runtime::policy_location::materialise_desktop(
            &stele_runtime::paths::state_dir(),
            &owner,
        )
        .map_err(|e| ServerError::Start(format!("--open: the desktop policy: {e}")))?;
        config.server.policy = Some(dir.clone());
        out.policy = Some(dir);
    }
    Ok(out)
}

/// What the desktop bundle lets the person do, for the banner (kept with
/// policies/desktop; docs/server.md says the same).
pub const DESKTOP_POLICY_SUMMARY: &str = "you (team local) may read, write and list files in \
the workspace and run programs without network; deleting, writing to outbox/ and MCP calls ask \
you first; secrets (.env, keys, .ssh, .aws, .gnupg, …), stele's state and the network are \
refused; only Anthropic claude-* models from api.anthropic.com";

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
