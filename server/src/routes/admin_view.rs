//! The admin page's read-only API: `GET /api/v1/admin/users` (accounts,
//! their teams and roles), `…/workspaces` (every configured workspace and
//! its running sessions), `…/policy` (the bundle in force: digest, files
//! and contents, the result of its tests as `stele policy test` runs them)
//! and `…/health` (readiness, the log's size, running sessions). Each is
//! the bundle's `admin` decision on the server, recorded before anything is
//! read; nothing here changes anything (accounts are made on the host with
//! `stele user add`, policies by editing the bundle).

use std::path::{Path, PathBuf};

use axum::extract::State;
use axum::Json;
use stele_policy::ServerResource;
use stele_protocol::{SessionState, SessionSummary};

use super::authorize;
use super::sessions::summary;
use crate::auth::Principal;
use crate::authz::ServerAction;
use crate::error::{ApiError, ServerError};
use crate::state::Shared;

/// Files of the bundle shown at most (a bundle is a few dozen).
const MAX_FILES: usize = 500;
/// A file's contents are shown up to this many bytes.
const MAX_FILE_BYTES: u64 = 256 * 1024;

async fn admit(state: &Shared, who: &Principal, what: &str) -> Result<(), ApiError> {
    authorize(
        state,
        who,
        ServerAction::Admin,
        ServerResource::Server,
        serde_json::json!({"admin": what}),
    )
    .await
    .map(|_| ())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServerError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::from(ServerError::Task(e.to_string())))?
        .map_err(ApiError::from)
}

/// One account.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AdminUser {
    /// The user id.
    pub name: String,
    /// Their teams.
    pub teams: Vec<String>,
    /// Their role.
    pub role: String,
    /// Whether a password is set (false: a set-up link waits, or OIDC only).
    pub password: bool,
    /// The teams the bundle's members file gives them (what the gate uses).
    pub members_file_teams: Vec<String>,
}

/// `GET /api/v1/admin/users`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AdminUsers {
    /// The accounts, by name.
    pub users: Vec<AdminUser>,
}

/// The server's accounts.
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin",
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "Accounts, their teams and roles (an `admin` entry)", body = AdminUsers)))]
pub async fn users(
    State(state): State<Shared>,
    who: Principal,
) -> Result<Json<AdminUsers>, ApiError> {
    admit(&state, &who, "users").await?;
    let mut out = Vec::new();
    for u in state.store.users().await? {
        let with_password = u.password_hash.is_some();
        out.push(AdminUser {
            members_file_teams: state
                .bundle
                .members()
                .teams_of(&u.name)
                .map(str::to_string)
                .collect(),
            name: u.name,
            teams: u.teams,
            role: u.role.as_str().to_string(),
            password: with_password,
        });
    }
    Ok(Json(AdminUsers { users: out }))
}

/// One configured workspace.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AdminWorkspace {
    /// Its name.
    pub name: String,
    /// Its folder on the server.
    pub path: String,
    /// The teams whose members may use it.
    pub teams: Vec<String>,
    /// Its sessions that are not over (starting, running, waiting, paused).
    pub open_sessions: Vec<SessionSummary>,
}

/// `GET /api/v1/admin/workspaces`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AdminWorkspaces {
    /// Every workspace of the configuration, by name.
    pub workspaces: Vec<AdminWorkspace>,
}

fn open(state: SessionState) -> bool {
    match state {
        SessionState::Starting
        | SessionState::Running
        | SessionState::WaitingApproval
        | SessionState::Paused => true,
        SessionState::Ended | SessionState::Failed => false,
    }
}

/// Every workspace.
#[utoipa::path(get, path = "/api/v1/admin/workspaces", tag = "admin",
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "Every configured workspace and its open sessions (an `admin` entry)", body = AdminWorkspaces)))]
pub async fn workspaces(
    State(state): State<Shared>,
    who: Principal,
) -> Result<Json<AdminWorkspaces>, ApiError> {
    admit(&state, &who, "workspaces").await?;
    let sessions = state.store.sessions().await?;
    let workspaces = state
        .config
        .workspace
        .iter()
        .map(|(name, ws)| AdminWorkspace {
            name: name.clone(),
            path: ws.path.display().to_string(),
            teams: ws.teams.clone(),
            open_sessions: sessions
                .iter()
                .filter(|s| &s.workspace == name && open(s.state))
                .cloned()
                .map(summary)
                .collect(),
        })
        .collect();
    Ok(Json(AdminWorkspaces { workspaces }))
}

/// One file of the bundle.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PolicyFile {
    /// Its path under the bundle's folder, with `/`.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its text (cut at 256 KiB; not UTF-8 is shown replaced).
    pub content: String,
    /// Whether `content` was cut.
    pub cut: bool,
}

/// One failed test case.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PolicyTestFailure {
    /// The case's name.
    pub name: String,
    /// Where it is (file:line).
    pub location: String,
    /// What differed.
    pub why: String,
}

/// The bundle's tests, run as `stele policy test` runs them.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PolicyTests {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
    /// The failures.
    pub failures: Vec<PolicyTestFailure>,
    /// Why the tests could not run at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /api/v1/admin/policy`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AdminPolicy {
    /// The bundle's folder.
    pub root: String,
    /// The digest of the bundle in force (in every decision's entry).
    pub digest: String,
    /// Its policies.
    pub policies: usize,
    /// Its teams.
    pub teams: Vec<String>,
    /// Its files as they are on disk now (a change takes effect at restart).
    pub files: Vec<PolicyFile>,
    /// Its tests.
    pub tests: PolicyTests,
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        if out.len() >= MAX_FILES {
            return Ok(());
        }
        // Symbolic links are not followed: only the bundle's own files.
        let t = e.file_type()?;
        if t.is_dir() {
            walk(&e.path(), out)?;
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    Ok(())
}

fn policy_files(root: &Path) -> Result<Vec<PolicyFile>, ServerError> {
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |source| ServerError::Io { what, source }
    };
    let mut paths = Vec::new();
    walk(root, &mut paths).map_err(io(root))?;
    paths
        .into_iter()
        .map(|p| {
            use std::io::Read as _;
            let f = std::fs::File::open(&p).map_err(io(&p))?;
            let bytes = f.metadata().map_err(io(&p))?.len();
            let mut buf = Vec::new();
            f.take(MAX_FILE_BYTES)
                .read_to_end(&mut buf)
                .map_err(io(&p))?;
            let rel = p.strip_prefix(root).unwrap_or(&p);
            Ok(PolicyFile {
                path: rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/"),
                bytes,
                content: String::from_utf8_lossy(&buf).into_owned(),
                cut: bytes > MAX_FILE_BYTES,
            })
        })
        .collect()
}

/// The policy bundle in force.
#[utoipa::path(get, path = "/api/v1/admin/policy", tag = "admin",
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "The bundle in force: digest, files, test results (an `admin` entry)", body = AdminPolicy)))]
pub async fn policy(
    State(state): State<Shared>,
    who: Principal,
) -> Result<Json<AdminPolicy>, ApiError> {
    admit(&state, &who, "policy").await?;
    let bundle = state.bundle.clone();
    let view = blocking(move || {
        let root = bundle.root().to_path_buf();
        let files = policy_files(&root)?;
        let tests = match stele_policy::tests_format::run_tests(&bundle) {
            Ok(r) => PolicyTests {
                passed: r.passed(),
                failed: r.failed(),
                failures: r
                    .cases
                    .iter()
                    .filter_map(|c| match &c.outcome {
                        stele_policy::tests_format::CaseOutcome::Pass => None,
                        stele_policy::tests_format::CaseOutcome::Fail(why) => {
                            Some(PolicyTestFailure {
                                name: c.name.clone(),
                                location: c.location.to_string(),
                                why: why.clone(),
                            })
                        }
                    })
                    .collect(),
                error: None,
            },
            Err(e) => PolicyTests {
                passed: 0,
                failed: 0,
                failures: Vec::new(),
                error: Some(e.to_string()),
            },
        };
        Ok(AdminPolicy {
            root: root.display().to_string(),
            digest: bundle.digest().to_string(),
            policies: bundle.policy_count(),
            teams: bundle.teams().map(str::to_string).collect(),
            files,
            tests,
        })
    })
    .await?;
    Ok(Json(view))
}

/// `GET /api/v1/admin/health`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AdminHealth {
    /// Whether the server can take work (what `/readyz` answers).
    pub ready: bool,
    /// Why not, when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The audit log's file.
    pub log_path: String,
    /// Entries in the log.
    pub log_entries: u64,
    /// Bytes of the log's database file.
    pub log_bytes: u64,
    /// Sessions running in this process now.
    pub running: usize,
    /// Sessions not over, as the store knows them.
    pub open_sessions: Vec<SessionSummary>,
    /// This server's version.
    pub version: String,
}

/// The server's health.
#[utoipa::path(get, path = "/api/v1/admin/health", tag = "admin",
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "Readiness, the log's size and the running sessions (an `admin` entry)", body = AdminHealth)))]
pub async fn health(
    State(state): State<Shared>,
    who: Principal,
) -> Result<Json<AdminHealth>, ApiError> {
    admit(&state, &who, "health").await?;
    let (ready, problem) = match state.store.user("").await {
        Ok(_) => (true, None),
        Err(e) => (
            false,
            Some(format!("the server store does not answer: {e}")),
        ),
    };
    let log = state.log.clone();
    let (entries, bytes) = blocking(move || {
        let entries = log.store()?.size()?;
        let bytes = std::fs::metadata(log.path()).map_or(0, |m| m.len());
        Ok((entries, bytes))
    })
    .await?;
    let open_sessions = state
        .store
        .sessions()
        .await?
        .into_iter()
        .filter(|s| open(s.state))
        .map(summary)
        .collect();
    Ok(Json(AdminHealth {
        ready,
        problem,
        log_path: state.log.path().display().to_string(),
        log_entries: entries,
        log_bytes: bytes,
        running: state.sessions.running(),
        open_sessions,
        version: env!("CARGO_PKG_VERSION").to_string(),
    }))
}
