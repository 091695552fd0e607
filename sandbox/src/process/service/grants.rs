//! A service's granted host paths: checked and canonicalised, bound at the
//! same path in its root, and given their Landlock rules.
//!
//! Each grant is a detached bind mount made by stele (`open_tree`), so a
//! path the service's unprivileged uid could not reach on the host (a
//! root-only parent directory) can still be granted; what the service may
//! do *inside* it is then decided by the files' own permissions for that
//! uid, by the mount's read-only flag and by Landlock.

use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use super::{GrantAccess, HostGrant};
use crate::error::SandboxError;
use crate::process::landlock::Grant;
use crate::process::plan::{Op, MAX_MOUNT_FDS};
use crate::process::rootfs::{self, SystemEntry};
use crate::process::sys;

/// Top-level names a grant may not be placed at or under: the sandbox's
/// own mounts, and its root's private entries.
const RESERVED: [&str; 5] = ["proc", "dev", "sys", ".oldroot", ".mask"];

/// A checked grant.
#[derive(Debug)]
pub(super) struct Resolved {
    /// Canonical host path (also the path inside the sandbox).
    pub path: PathBuf,
    /// Granted access.
    pub access: GrantAccess,
    /// A directory (else a file).
    pub is_dir: bool,
    /// The detached bind, or `None` when the path is already visible
    /// read-only under a system directory.
    pub mount: Option<OwnedFd>,
}

fn invalid(path: &Path, why: &str) -> SandboxError {
    SandboxError::InvalidRequest(format!("service grant {}: {why}", path.display()))
}

/// The system directory `path` lies in, if any.
fn system_dir_of<'a>(path: &Path, entries: &'a [SystemEntry]) -> Option<&'a str> {
    entries.iter().find_map(|e| match e {
        SystemEntry::Dir(d) if path.starts_with(Path::new("/").join(d)) => Some(d.as_str()),
        _ => None,
    })
}

/// Check, canonicalise, merge and order `grants`, and make their mounts.
pub(super) fn resolve(
    grants: &[HostGrant],
    entries: &[SystemEntry],
) -> Result<Vec<Resolved>, SandboxError> {
    let mut merged: Vec<(PathBuf, GrantAccess)> = Vec::new();
    for g in grants {
        if !g.path.is_absolute() {
            return Err(invalid(&g.path, "must be an absolute path"));
        }
        let path = std::fs::canonicalize(&g.path)
            .map_err(|e| invalid(&g.path, &format!("cannot be resolved: {e}")))?;
        let top = path.components().nth(1);
        let Some(Component::Normal(top)) = top else {
            return Err(invalid(&g.path, "the root itself cannot be granted"));
        };
        let top = top.to_string_lossy();
        if RESERVED.contains(&top.as_ref()) {
            return Err(invalid(
                &g.path,
                "is inside the sandbox's own /proc, /dev or /sys",
            ));
        }
        if path == Path::new("/tmp") {
            return Err(invalid(&g.path, "/tmp is the service's private tmpfs"));
        }
        if let Some(d) = system_dir_of(&path, entries) {
            if path == Path::new("/").join(d) {
                return Err(invalid(
                    &g.path,
                    "a whole system directory cannot be granted",
                ));
            }
            if g.access == GrantAccess::ReadWrite {
                return Err(invalid(
                    &g.path,
                    &format!("write access under the system directory /{d} is not possible"),
                ));
            }
        }
        match merged.iter_mut().find(|(p, _)| *p == path) {
            // The same path twice: the wider grant wins.
            Some((_, a)) => *a = (*a).max(g.access),
            None => merged.push((path, g.access)),
        }
    }
    // Parents before children: a nested grant is mounted on top of its
    // parent's bind.
    merged.sort();
    let mut out = Vec::with_capacity(merged.len());
    let mut mounts = 0;
    for (path, access) in merged {
        let is_dir = path.is_dir();
        let mount = if system_dir_of(&path, entries).is_some() {
            // Already there, read-only, with /etc's secrets still masked.
            None
        } else {
            mounts += 1;
            if mounts > MAX_MOUNT_FDS {
                return Err(invalid(
                    &path,
                    &format!("at most {MAX_MOUNT_FDS} host paths can be granted"),
                ));
            }
            let attrs = match access {
                GrantAccess::ReadOnly => {
                    sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV
                }
                GrantAccess::ReadWrite => sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV,
            };
            Some(
                sys::detached_bind(&path, attrs)
                    .map_err(|e| invalid(&path, &format!("cannot be bound: {e}")))?,
            )
        };
        out.push(Resolved {
            path,
            access,
            is_dir,
            mount,
        });
    }
    Ok(out)
}

/// The root operations that attach the grants' mounts at their own paths
/// under `nr` (after the system directories and `/tmp` are in place):
/// missing parent directories are made in the root's (or `/tmp`'s) tmpfs,
/// never inside a host-backed bind.
pub(super) fn root_ops(
    ops: &mut Vec<Op>,
    nr: &Path,
    grants: &[Resolved],
    entries: &[SystemEntry],
) -> Result<(), SandboxError> {
    let mut backed: Vec<PathBuf> = entries
        .iter()
        .filter_map(|e| match e {
            SystemEntry::Dir(d) => Some(Path::new("/").join(d)),
            SystemEntry::Symlink(..) => None,
        })
        .collect();
    let mut made: BTreeSet<PathBuf> = BTreeSet::new();
    made.insert(PathBuf::from("/tmp"));
    for g in grants {
        let Some(fd) = &g.mount else { continue };
        let rel = |p: &Path| {
            p.strip_prefix("/")
                .map(Path::to_path_buf)
                .unwrap_or_default()
        };
        let mut parents: Vec<&Path> = g.path.ancestors().skip(1).collect();
        parents.reverse();
        for p in parents.into_iter().skip(1) {
            if backed.iter().any(|b| p.starts_with(b)) {
                break;
            }
            if made.insert(p.to_path_buf()) {
                rootfs::mkdir(ops, nr, &rel(p).to_string_lossy(), 0o755)?;
            }
        }
        let target = rel(&g.path);
        if backed.iter().any(|b| g.path.starts_with(b)) {
            // The mount point exists inside its parent grant's bind.
            ops.push(Op::MoveMount {
                fd: fd.as_raw_fd(),
                dst: cpath(&nr.join(&target))?,
            });
        } else {
            rootfs::attach(
                ops,
                nr,
                &target.to_string_lossy(),
                fd.as_raw_fd(),
                !g.is_dir,
            )?;
        }
        backed.push(g.path.clone());
    }
    Ok(())
}

fn cpath(p: &Path) -> Result<std::ffi::CString, SandboxError> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| SandboxError::InvalidRequest(format!("{} contains a NUL byte", p.display())))
}

/// The Landlock grant of each mounted grant (rules bind the host inodes,
/// so they hold for the binds).
pub(super) fn landlock_rules(grants: &[Resolved]) -> Vec<(&Path, Grant)> {
    grants
        .iter()
        .filter(|g| g.mount.is_some())
        .map(|g| {
            let grant = match g.access {
                GrantAccess::ReadOnly => Grant::ReadExec,
                GrantAccess::ReadWrite => Grant::All,
            };
            (g.path.as_path(), grant)
        })
        .collect()
}

/// The grants as the log shows them.
pub(super) fn describe(grants: &[Resolved]) -> Vec<String> {
    grants
        .iter()
        .map(|g| {
            let what = match (g.access, &g.mount) {
                (GrantAccess::ReadOnly, Some(_)) => "ro, granted",
                (GrantAccess::ReadOnly, None) => "ro, in a system directory",
                (GrantAccess::ReadWrite, _) => "rw, granted",
            };
            format!("{} ({what})", g.path.display())
        })
        .collect()
}
