//! No workspace may hold stele's own files, nor lie inside them.
//!
//! A sandboxed program can read and change everything in its workspace
//! (through the mediated layer, decided and logged, but allowed by a
//! permissive policy). A workspace that holds the signing key, the audit
//! database, the configuration or a policy folder the next run reads would
//! hand the program the log and the policy. So every command that opens a
//! session (`run`, `chat`, `session resume`, `sandbox exec`, `demo`) calls
//! [`check_session`] before anything runs, and refuses to start when the
//! workspace
//!
//! - **holds** one of stele's locations (state folder, audit database and
//!   its attestations, signing key, user and managed configuration, every
//!   policy folder of the search order and the bundle in use, the micro-VM
//!   image store, exports recorded in the log, the files and working folders
//!   of configured MCP servers, which run on the host with credentials,
//!   and the files of a PKCS#11 signing key: its PIN file, its module and,
//!   for SoftHSM, its configuration and token folder — [`hsm`]);
//! - **lies inside** one of them (a workspace under the state folder or a
//!   policy folder); or
//! - **redirects** one: the location's path passes through the workspace
//!   (a symlink inside it decides where the location leads).
//!
//! Paths are compared as the kernel resolves them ([`resolve`]): symlinks
//! followed, canonical paths, device and inode (bind mounts), and the
//! path inside the file system (bind mounts of a subfolder); a file system
//! mounted inside the workspace counts as part of it. The signing
//! key, the PKCS#11 PIN file and the database must have exactly one name (a hard link elsewhere
//! could be inside a workspace).

pub mod exports;
pub mod hsm;
pub mod locations;
pub mod resolve;

use std::fmt;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use resolve::{Identity, Mounts, Resolved};

use crate::terminal_safe;

/// What a protected location is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The state folder (`$STELE_STATE_DIR`, …).
    StateDir,
    /// The audit database in use.
    AuditDb,
    /// The database's session attestations.
    Attestations,
    /// The log signing key in use.
    SigningKey,
    /// The user's configuration folder.
    UserConfigDir,
    /// The user's configuration file (`$STELE_CONFIG`, …).
    UserConfig,
    /// The managed configuration folder (`/etc/stele`).
    ManagedConfigDir,
    /// The managed configuration file in force.
    ManagedConfig,
    /// The policy bundle the session uses.
    PolicyBundle,
    /// A folder of the policy search order (read by a later run without `--policy`).
    PolicySearch,
    /// The micro-VM image store.
    VmImages,
    /// An export written from this log (it holds every payload).
    Export,
    /// A file or folder an MCP server runs from, or a file named in its
    /// arguments or environment (it runs on the host with its credentials).
    McpFile {
        /// The server's configured name.
        server: String,
    },
    /// An MCP server's working folder.
    McpCwd {
        /// The server's configured name.
        server: String,
    },
    /// The PIN file of the `[signing.pkcs11]` key.
    Pkcs11Pin,
    /// The PKCS#11 module stele loads to sign (code run on the host).
    Pkcs11Module,
    /// SoftHSM's configuration (`SOFTHSM2_CONF`; it says where the token is).
    HsmConfig,
    /// SoftHSM's token folder (the token's objects, the key among them).
    HsmTokens,
}

impl Kind {
    /// In words.
    pub fn describe(&self) -> String {
        match self {
            Kind::StateDir => "stele's state folder".into(),
            Kind::AuditDb => "the audit database".into(),
            Kind::Attestations => "the audit database's attestations folder".into(),
            Kind::SigningKey => "the log signing key".into(),
            Kind::UserConfigDir => "stele's user configuration folder".into(),
            Kind::UserConfig => "stele's user configuration file".into(),
            Kind::ManagedConfigDir => "stele's managed configuration folder".into(),
            Kind::ManagedConfig => "stele's managed configuration file".into(),
            Kind::PolicyBundle => "the policy bundle in use".into(),
            Kind::PolicySearch => "a policy folder stele loads when no --policy is given".into(),
            Kind::VmImages => "the micro-VM image store".into(),
            Kind::Export => "an export of this audit log".into(),
            Kind::McpFile { server } => format!("a file of MCP server {server:?}"),
            Kind::McpCwd { server } => format!("the working folder of MCP server {server:?}"),
            Kind::Pkcs11Pin => "the PIN file of the [signing.pkcs11] key".into(),
            Kind::Pkcs11Module => "the PKCS#11 module of the [signing.pkcs11] key".into(),
            Kind::HsmConfig => "SoftHSM's configuration (SOFTHSM2_CONF)".into(),
            Kind::HsmTokens => "SoftHSM's token folder (it holds the signing key)".into(),
        }
    }

    /// What the user can do about it.
    pub fn advice(&self) -> &'static str {
        match self {
            Kind::StateDir | Kind::AuditDb | Kind::Attestations | Kind::SigningKey => {
                "Grant a folder that holds only the work, or keep stele's state elsewhere \
                 (STELE_STATE_DIR, --db, --key)."
            }
            Kind::UserConfigDir
            | Kind::UserConfig
            | Kind::ManagedConfigDir
            | Kind::ManagedConfig => {
                "Grant a folder that holds only the work; stele's configuration stays out of \
                 the agent's reach (STELE_CONFIG, XDG_CONFIG_HOME)."
            }
            Kind::PolicyBundle | Kind::PolicySearch => {
                "Grant a folder that holds only the work, and keep policy bundles outside \
                 every workspace (--policy)."
            }
            Kind::VmImages => {
                "Grant a folder that holds only the work, or keep the images elsewhere \
                 (STELE_VM_IMAGES)."
            }
            Kind::Export => {
                "Grant a folder that holds only the work; move the export out of it (it \
                 holds every payload of the exported sessions)."
            }
            Kind::Pkcs11Pin | Kind::Pkcs11Module | Kind::HsmConfig | Kind::HsmTokens => {
                "Grant a folder that holds only the work; the token key's PIN file, module and \
                 token store stay outside every workspace ([signing.pkcs11], SOFTHSM2_CONF)."
            }
            Kind::McpFile { .. } | Kind::McpCwd { .. } => {
                "Grant a folder that holds only the work; an MCP server runs on the host \
                 with its credentials, so its program, working folder and the files its \
                 configuration names stay outside every workspace."
            }
        }
    }

    /// Whether a workspace inside this location is refused too. A server's
    /// working folder may hold the workspace (a home folder): only the
    /// reverse is refused.
    fn refuses_inside(&self) -> bool {
        !matches!(self, Kind::McpCwd { .. })
    }

    /// Whether the location must have exactly one name.
    fn single_name(&self) -> bool {
        matches!(self, Kind::AuditDb | Kind::SigningKey | Kind::Pkcs11Pin)
    }
}

/// One of stele's own files or folders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// What it is.
    pub kind: Kind,
    /// Where it is (as configured; resolved by the check).
    pub path: PathBuf,
}

impl Location {
    /// `kind` at `path`.
    pub fn new(kind: Kind, path: impl Into<PathBuf>) -> Location {
        Location {
            kind,
            path: path.into(),
        }
    }
}

/// How a workspace and a location overlap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlap {
    /// The workspace holds the location (or is it).
    Holds,
    /// The workspace lies inside the location.
    Inside,
    /// The location's path passes through this folder of the workspace
    /// (a symlink there decides where it leads).
    Through(PathBuf),
}

/// Why a session may not start.
#[derive(Debug)]
pub enum IsolationError {
    /// The workspace and one of stele's locations overlap.
    Overlap {
        /// The workspace (canonical).
        workspace: PathBuf,
        /// How.
        overlap: Overlap,
        /// Which location.
        kind: Kind,
        /// Where it is (canonical).
        path: PathBuf,
    },
    /// The key or the database has more than one name.
    HardLinks {
        /// Which.
        kind: Kind,
        /// Its path.
        path: PathBuf,
        /// How many names.
        links: u64,
    },
    /// A path could not be resolved (fail closed).
    Resolve {
        /// What it is.
        what: String,
        /// As given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The audit database could not be read for its exports.
    Exports(String),
}

impl fmt::Display for IsolationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = |x: &Path| terminal_safe::path(x);
        match self {
            IsolationError::Overlap {
                workspace,
                overlap,
                kind,
                path,
            } => {
                let (w, what, l) = (p(workspace), kind.describe(), p(path));
                match overlap {
                    Overlap::Holds => write!(
                        f,
                        "refusing to start: the workspace {w} contains {what} {l}; a sandboxed \
                         program could read or change it. {}",
                        kind.advice()
                    ),
                    Overlap::Inside => write!(
                        f,
                        "refusing to start: the workspace {w} lies inside {what} {l}; a \
                         sandboxed program could change it. {}",
                        kind.advice()
                    ),
                    Overlap::Through(dir) => write!(
                        f,
                        "refusing to start: the path of {what} {l} passes through {} in the \
                         workspace {w} (a symlink there decides where it leads); a sandboxed \
                         program could redirect it. {}",
                        p(dir),
                        kind.advice()
                    ),
                }
            }
            IsolationError::HardLinks { kind, path, links } => write!(
                f,
                "refusing to start: {} {} has {links} names (hard links); another name could \
                 be inside a workspace. Remove the other links (find / -samefile {}).",
                kind.describe(),
                p(path),
                p(path)
            ),
            IsolationError::Resolve { what, path, source } => write!(
                f,
                "refusing to start: cannot resolve {what} {}: {source}",
                p(path)
            ),
            IsolationError::Exports(e) => write!(
                f,
                "refusing to start: reading the exports recorded in the audit log: {e}"
            ),
        }
    }
}

impl std::error::Error for IsolationError {}

fn resolved(what: &str, path: &Path) -> Result<Resolved, IsolationError> {
    resolve::resolve(path).map_err(|source| IsolationError::Resolve {
        what: what.to_string(),
        path: path.to_path_buf(),
        source,
    })
}

/// Refuse `workspace` when it overlaps any of `locations` (see the module docs).
pub fn check(workspace: &Path, locations: &[Location]) -> Result<(), IsolationError> {
    let mounts = Mounts::load();
    let ws = resolved("the workspace", workspace)?;
    let w = Identity::of(&ws.canonical, &mounts);
    // What the workspace reaches: itself and whatever is mounted inside it.
    let reach: Vec<Identity> = std::iter::once(w.clone())
        .chain(
            mounts
                .points_under(&ws.canonical)
                .iter()
                .map(|p| Identity::of(p, &mounts)),
        )
        .collect();
    let reached = |p: &Path| {
        let id = Identity::of(p, &mounts);
        reach.iter().any(|r| id.within(r))
    };
    for loc in locations {
        let r = resolved(&loc.kind.describe(), &loc.path)?;
        let refuse = |overlap| IsolationError::Overlap {
            workspace: ws.canonical.clone(),
            overlap,
            kind: loc.kind.clone(),
            path: r.canonical.clone(),
        };
        if reached(&r.canonical) {
            return Err(refuse(Overlap::Holds));
        }
        if let Some(dir) = r.traversed.iter().find(|d| reached(d)) {
            return Err(refuse(Overlap::Through(dir.clone())));
        }
        if loc.kind.refuses_inside() && r.exists && w.within(&Identity::of(&r.canonical, &mounts)) {
            return Err(refuse(Overlap::Inside));
        }
        if loc.kind.single_name() {
            if let Ok(m) = std::fs::metadata(&r.canonical) {
                if m.is_file() && m.nlink() > 1 {
                    return Err(IsolationError::HardLinks {
                        kind: loc.kind.clone(),
                        path: r.canonical.clone(),
                        links: m.nlink(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// What a session is opened with, for [`check_session`].
#[derive(Debug, Clone, Copy)]
pub struct SessionPaths<'a> {
    /// The folder granted to the sandbox.
    pub workspace: &'a Path,
    /// The audit database.
    pub db: &'a Path,
    /// The signing key.
    pub key: &'a Path,
    /// The policy bundle folder the session uses.
    pub policy: &'a Path,
}

/// The one check every command that opens a session calls before the
/// sandbox exists: `paths.workspace` against every location of
/// [`locations::for_session`].
pub fn check_session(paths: &SessionPaths<'_>) -> Result<(), IsolationError> {
    let locs = locations::for_session(paths)?;
    check(paths.workspace, &locs)
}

#[cfg(test)]
mod tests;
