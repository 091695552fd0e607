//! What a sandboxed stdio server is started with: the program resolved on
//! the host, the host paths it may use (its own program/package directory
//! read-only, plus the configured `read` and `write` paths), its
//! environment (the configured variables only: the credentials stay in
//! this process and the server's, never in the agent's sandbox) and its
//! limits. Everything here is recorded in the server's `start` entry
//! before it starts.

use std::path::{Path, PathBuf};

use stele_sandbox::process::service::{
    GrantAccess, HostGrant, ServiceLimits, ServiceNetwork, ServiceSpec,
};

use super::config::{ServerSpec, Transport};
use super::sandbox_config::SandboxSpec;

/// Directories the sandbox exposes read-only anyway (its system dirs).
const SYSTEM_DIRS: [&str; 8] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
];

/// The sandbox's default `PATH` (as `stele_sandbox` sets it).
const SANDBOX_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Why a host path is granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantReason {
    /// The server's own program or package directory (derived).
    Program,
    /// The configuration's `read`.
    Read,
    /// The configuration's `write`.
    Write,
}

/// A sandboxed server's start, prepared.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Program (resolved on the host) and arguments.
    pub argv: Vec<String>,
    /// Environment beyond the sandbox's defaults.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Granted host paths and why.
    pub grants: Vec<(HostGrant, GrantReason)>,
    /// Limits.
    pub limits: ServiceLimits,
}

impl Prepared {
    /// The grants and settings as the log records them (names of variables only).
    pub fn describe(&self) -> serde_json::Value {
        let grants: Vec<serde_json::Value> = self
            .grants
            .iter()
            .map(|(g, why)| {
                serde_json::json!({
                    "path": g.path,
                    "access": match g.access {
                        GrantAccess::ReadOnly => "ro",
                        GrantAccess::ReadWrite => "rw",
                    },
                    "why": match why {
                        GrantReason::Program => "program",
                        GrantReason::Read => "read",
                        GrantReason::Write => "write",
                    },
                })
            })
            .collect();
        serde_json::json!({
            "program": self.argv.first(),
            "cwd": self.cwd,
            "grants": grants,
            "env_names": self.env.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        })
    }

    /// The service to start, with its network.
    pub fn service(&self, id: &str, network: ServiceNetwork) -> ServiceSpec {
        ServiceSpec {
            id: id.to_string(),
            argv: self.argv.clone(),
            env: self.env.clone(),
            cwd: self.cwd.clone(),
            grants: self.grants.iter().map(|(g, _)| g.clone()).collect(),
            network,
            limits: self.limits,
        }
    }
}

fn in_system(p: &Path) -> bool {
    SYSTEM_DIRS.iter().any(|d| p.starts_with(d))
}

/// Too broad to grant as a package directory: `/`, top-level directories
/// (`/home`, `/opt`, `/tmp`, …) and stele's user's home.
fn too_broad(p: &Path) -> bool {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    p.parent().is_none_or(|q| q == Path::new("/")) || home.as_deref() == Some(p)
}

/// The directory a program's code lives in: the outermost `node_modules`
/// (a package and its hoisted dependencies), else the nearest project
/// root (`package.json`, `pyproject.toml`), else the prefix of a `bin/`
/// directory (a virtualenv), else its own directory; the file itself when
/// that directory is too broad.
pub fn package_root(file: &Path) -> PathBuf {
    if let Some(nm) = file
        .ancestors()
        .filter(|a| a.file_name().is_some_and(|n| n == "node_modules"))
        .last()
    {
        return nm.to_path_buf();
    }
    let Some(dir) = file.parent() else {
        return file.to_path_buf();
    };
    for a in dir.ancestors() {
        if too_broad(a) {
            break;
        }
        if a.join("package.json").is_file() || a.join("pyproject.toml").is_file() {
            return a.to_path_buf();
        }
    }
    if dir.file_name().is_some_and(|n| n == "bin") {
        if let Some(prefix) = dir.parent().filter(|p| !too_broad(p)) {
            return prefix.to_path_buf();
        }
    }
    if too_broad(dir) {
        file.to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// `command` as a path: as given when it has a `/` (relative to `cwd`),
/// else the first executable file of that name on stele's `PATH`.
fn resolve_command(command: &str, cwd: Option<&Path>) -> Result<PathBuf, String> {
    if command.contains('/') {
        let p = Path::new(command);
        let p = match (p.is_absolute(), cwd) {
            (false, Some(c)) => c.join(p),
            _ => p.to_path_buf(),
        };
        return Ok(std::path::absolute(&p).unwrap_or(p));
    }
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_else(|| SANDBOX_PATH.into());
    std::env::split_paths(&path)
        .map(|d| d.join(command))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| format!("{command} not found on PATH"))
}

/// The script an interpreter runs: the first argument that is not a flag,
/// when it names an existing file.
fn script_arg(args: &[String], cwd: Option<&Path>) -> Option<PathBuf> {
    let first = args.iter().find(|a| !a.starts_with('-'))?;
    let p = Path::new(first);
    let p = match (p.is_absolute(), cwd) {
        (false, Some(c)) => c.join(p),
        _ => p.to_path_buf(),
    };
    std::fs::canonicalize(&p).ok().filter(|p| p.is_file())
}

/// Refuse a grant that would expose stele's own state: one that contains
/// a protected path (the audit log, its siblings, the signing key, the
/// configuration, a policy folder) or lies inside one (the state
/// directory). A server holding the key could forge the log; one holding
/// the database could damage it. Compared as the workspace is
/// (`crate::isolation`): symlinks followed, bind mounts recognised.
fn refuse_protected(grant: &Path, protected: &[PathBuf]) -> Result<(), String> {
    use crate::isolation::{self, IsolationError, Kind, Location};
    let locs: Vec<Location> = protected
        .iter()
        .map(|p| Location::new(Kind::StateDir, p))
        .collect();
    match isolation::check(grant, &locs) {
        Ok(()) => Ok(()),
        Err(IsolationError::Overlap { path, .. }) => Err(format!(
            "grant {} overlaps stele's own state {} (audit log, signing key, configuration, \
             policy): refused",
            crate::terminal_safe::path(grant),
            crate::terminal_safe::path(&path)
        )),
        Err(e) => Err(format!("grant {}: {e}", crate::terminal_safe::path(grant))),
    }
}

/// Prepare the start of `spec` in `sandbox`.
pub fn prepare(spec: &ServerSpec, sandbox: &SandboxSpec) -> Result<Prepared, String> {
    let Transport::Stdio { command, args } = &spec.transport else {
        return Err("only stdio servers run in a sandbox".into());
    };
    let cfg = &spec.config;
    let cwd = cfg.cwd.clone().unwrap_or_else(|| PathBuf::from("/tmp"));
    if !cwd.is_absolute() {
        return Err(format!(
            "cwd {} must be absolute for a sandboxed server",
            cwd.display()
        ));
    }
    let program = resolve_command(command, cfg.cwd.as_deref())?;
    let real =
        std::fs::canonicalize(&program).map_err(|e| format!("{}: {e}", program.display()))?;
    let mut grants: Vec<(HostGrant, GrantReason)> = Vec::new();
    let mut add = |path: PathBuf, access: GrantAccess, why: GrantReason| {
        if !grants.iter().any(|(g, _)| g.path == path) {
            grants.push((HostGrant { path, access }, why));
        }
    };
    let code = std::iter::once(real.clone()).chain(script_arg(args, cfg.cwd.as_deref()));
    for file in code.filter(|f| !in_system(f)) {
        add(
            package_root(&file),
            GrantAccess::ReadOnly,
            GrantReason::Program,
        );
    }
    for p in &sandbox.write {
        add(p.clone(), GrantAccess::ReadWrite, GrantReason::Write);
    }
    for p in &sandbox.read {
        add(p.clone(), GrantAccess::ReadOnly, GrantReason::Read);
    }
    // A program outside the system directories finds its siblings (and a
    // `#!/usr/bin/env` interpreter next to it) on PATH, as on the host.
    let mut path = SANDBOX_PATH.to_string();
    if let Some(dir) = program.parent().filter(|d| !in_system(d)) {
        path = format!("{}:{path}", dir.display());
    }
    let mut env: Vec<(String, String)> = vec![("PATH".into(), path)];
    for k in &cfg.env_from_host {
        if let Ok(v) = std::env::var(k) {
            env.push((k.clone(), v));
        }
    }
    env.extend(cfg.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    for (g, _) in &grants {
        refuse_protected(&g.path, &sandbox.protected)?;
    }
    let mut argv = vec![program.display().to_string()];
    argv.extend(args.iter().cloned());
    Ok(Prepared {
        argv,
        env,
        cwd,
        grants,
        limits: sandbox.limits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_never_expose_stele_state() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(state.join("keys")).unwrap();
        let key = state.join("keys/log.key");
        std::fs::write(&key, b"k").unwrap();
        let protected = vec![state.clone(), key.clone()];
        for bad in [
            dir.path().to_path_buf(),
            state.clone(),
            state.join("keys"),
            key,
        ] {
            let e = refuse_protected(&bad, &protected).unwrap_err();
            assert!(e.contains("stele's own state"), "{e}");
        }
        let other = dir.path().join("data");
        std::fs::create_dir_all(&other).unwrap();
        refuse_protected(&other, &protected).unwrap();
    }

    #[test]
    fn package_roots() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("proj");
        let nm = root.join("node_modules/@scope/pkg/dist");
        std::fs::create_dir_all(&nm).unwrap();
        std::fs::write(root.join("package.json"), "{}").unwrap();
        std::fs::write(nm.join("index.js"), "").unwrap();
        std::fs::write(root.join("server.mjs"), "").unwrap();
        assert_eq!(
            package_root(&nm.join("index.js")),
            root.join("node_modules")
        );
        assert_eq!(package_root(&root.join("server.mjs")), root);
        let venv = d.path().join("venv/bin");
        std::fs::create_dir_all(&venv).unwrap();
        assert_eq!(package_root(&venv.join("mcp-x")), d.path().join("venv"));
        // A file directly in a top-level directory: only the file.
        assert_eq!(
            package_root(Path::new("/tmp/server.js")),
            PathBuf::from("/tmp/server.js")
        );
    }
}
