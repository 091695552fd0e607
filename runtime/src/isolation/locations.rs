//! The locations a session's workspace is checked against: stele's state,
//! configuration, policy folders, image store, the files of a PKCS#11
//! signing key, exports recorded in the log, and the files of configured
//! MCP servers.

use std::path::{Path, PathBuf};

use super::{IsolationError, Kind, Location, SessionPaths};
use crate::config::{ConfigFile, Layers};
use crate::mcp::McpServerConfig;
use crate::{config, paths, policy_location};

/// Every location of a session with these paths. Reads the configuration
/// (for MCP servers) and the audit database, read-only (for exports).
pub fn for_session(p: &SessionPaths<'_>) -> Result<Vec<Location>, IsolationError> {
    let mut v = stele_locations(p.db, p.key);
    v.push(Location::new(Kind::PolicyBundle, p.policy));
    // A configuration that does not load is reported by the command itself.
    if let Ok(layers) = config::load() {
        v.extend(mcp_locations(&layers));
    }
    v.extend(export_locations(p.db)?);
    Ok(v)
}

/// stele's own files and folders, whatever the session: state, log, key
/// (a file, or a token key's PIN file, module and SoftHSM store),
/// configuration, the policy search order and the image store.
pub fn stele_locations(db: &Path, key: &Path) -> Vec<Location> {
    let mut v = vec![
        Location::new(Kind::StateDir, paths::state_dir()),
        Location::new(Kind::AuditDb, db),
        Location::new(Kind::Attestations, attestations_of(db)),
        Location::new(Kind::SigningKey, key),
        Location::new(Kind::ManagedConfigDir, "/etc/stele"),
        Location::new(Kind::VmImages, paths::vm_image_store()),
    ];
    if let Some(m) = config::managed_path() {
        v.push(Location::new(Kind::ManagedConfig, m));
    }
    if let Some(d) = paths::user_config_dir() {
        v.push(Location::new(Kind::UserConfigDir, d));
    }
    if let Some(u) = config::user_path() {
        v.push(Location::new(Kind::UserConfig, u));
    }
    for (_, dir) in policy_location::search_folders() {
        v.push(Location::new(Kind::PolicySearch, dir));
    }
    // A configuration that does not load is reported by the command itself.
    if let Ok(layers) = config::load() {
        v.extend(super::hsm::locations(&layers));
    }
    v
}

/// Where the session attestations of the log at `db` are kept.
pub fn attestations_of(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_os_string();
    s.push(".attestations");
    PathBuf::from(s)
}

/// The files of every configured MCP server (both layers, every team: a
/// workspace must not hold what any server runs from).
pub fn mcp_locations(layers: &Layers) -> Vec<Location> {
    let files: Vec<&ConfigFile> = layers
        .managed
        .iter()
        .map(|(_, f, _)| f)
        .chain(layers.user.iter().map(|(_, f)| f))
        .collect();
    let mut v = Vec::new();
    for f in files {
        for (name, cfg) in f.mcp.iter().flatten() {
            v.extend(server_locations(name, cfg));
        }
    }
    v
}

fn server_locations(name: &str, cfg: &McpServerConfig) -> Vec<Location> {
    let file = |p: PathBuf| {
        Location::new(
            Kind::McpFile {
                server: name.to_string(),
            },
            p,
        )
    };
    let mut v = Vec::new();
    let cwd = cfg.cwd.clone();
    if let Some(c) = &cwd {
        v.push(Location::new(
            Kind::McpCwd {
                server: name.to_string(),
            },
            c.clone(),
        ));
    }
    let in_cwd = |p: &Path| match (&cwd, p.is_absolute()) {
        (Some(c), false) => c.join(p),
        _ => p.to_path_buf(),
    };
    // The program and the folder it runs from (a module planted beside it
    // would be loaded).
    if let Some(cmd) = &cfg.command {
        if let Some(prog) = program(cmd, cwd.as_deref()) {
            if let Some(dir) = prog.parent() {
                v.push(file(dir.to_path_buf()));
            }
            v.push(file(prog));
        }
    }
    // The script an interpreter runs, and every existing file its
    // arguments name (configurations, credentials).
    let mut script_seen = false;
    for a in &cfg.args {
        let p = in_cwd(Path::new(a));
        let is_file = std::fs::metadata(&p).is_ok_and(|m| m.is_file());
        if !a.starts_with('-') && !script_seen {
            script_seen = true;
            if is_file {
                if let Some(dir) = p.parent() {
                    v.push(file(dir.to_path_buf()));
                }
            }
        }
        if is_file {
            v.push(file(p));
        }
    }
    // Files named by the server's environment (e.g. a credentials file;
    // folders such as a HOME are not the server's own).
    let host: Vec<String> = cfg
        .env_from_host
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .collect();
    for val in cfg.env.values().chain(host.iter()) {
        let p = Path::new(val);
        if p.is_absolute() && p.is_file() {
            v.push(file(p.to_path_buf()));
        }
    }
    v
}

/// Where `command` is: a path (relative to the server's folder), or the
/// first match on `PATH`.
fn program(command: &str, cwd: Option<&Path>) -> Option<PathBuf> {
    let p = Path::new(command);
    if command.contains('/') {
        return Some(match (cwd, p.is_absolute()) {
            (Some(c), false) => c.join(p),
            _ => p.to_path_buf(),
        });
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(command))
        .find(|p| p.is_file())
}

/// The exports recorded in the log at `db` (see [`super::exports`]).
pub fn export_locations(db: &Path) -> Result<Vec<Location>, IsolationError> {
    Ok(super::exports::recorded_exports(db)?
        .into_iter()
        .map(|p| Location::new(Kind::Export, p))
        .collect())
}

/// The workspaces recorded in the log at `db` (`session.start` entries).
pub fn recorded_workspaces(db: &Path) -> Result<Vec<PathBuf>, IsolationError> {
    Ok(super::exports::scan(db, "session.start", "workspace", 0)?.paths)
}
