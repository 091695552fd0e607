//! The minimal root file system of the sandbox, as a list of operations;
//! its pieces also build the micro-VM's QEMU jail (`vm/jail.rs`).
//!
//! Layout: read-only `/usr`, `/bin`, `/sbin`, `/lib*` and `/etc` (secrets
//! masked) — the tool image's (see `system_root.rs`), or the host's where
//! configured —, a fresh `/proc`, a minimal `/dev`, a size-capped `/tmp`,
//! the workspace at `/workspace`. Nothing else of the host: no home, no
//! host `/tmp`, no `/run` (and so no host sockets).

use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::plan::Op;
use super::sys::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};
use crate::error::SandboxError;

/// Host directories exposed read-only (when present).
pub(crate) const SYSTEM_DIRS: [&str; 8] = [
    "usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc",
];

/// Device nodes bound from the host.
pub(crate) const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Files under `/etc` hidden behind an unreadable empty file.
pub(crate) const SECRET_FILES: [&str; 10] = [
    "shadow",
    "shadow-",
    "gshadow",
    "gshadow-",
    "sudoers",
    "security/opasswd",
    "krb5.keytab",
    "ipsec.secrets",
    "ppp/chap-secrets",
    "ppp/pap-secrets",
];

/// Directories under `/etc` hidden behind an empty, unreadable tmpfs.
pub(crate) const SECRET_DIRS: [&str; 9] = [
    "sudoers.d",
    "ssh",
    "ssl/private",
    "stele",
    "letsencrypt",
    "wireguard",
    "openvpn",
    "NetworkManager/system-connections",
    "docker",
];

/// A top-level host entry and how it appears in the sandbox.
#[derive(Debug, Clone)]
pub(crate) enum SystemEntry {
    /// A real directory: bind-mounted read-only.
    Dir(String),
    /// A symlink (merged-/usr systems): recreated with the same target.
    Symlink(String, String),
}

/// Look at the host once: which system directories exist, and how.
pub(crate) fn host_system_entries() -> Vec<SystemEntry> {
    system_entries(Path::new("/"))
}

/// Which system directories exist under `base` (`/`, or an image's tree), and how.
pub(crate) fn system_entries(base: &Path) -> Vec<SystemEntry> {
    let mut out = Vec::new();
    for name in SYSTEM_DIRS {
        let p = base.join(name);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                if let Ok(t) = std::fs::read_link(&p) {
                    out.push(SystemEntry::Symlink(
                        name.to_string(),
                        t.to_string_lossy().into_owned(),
                    ));
                }
            }
            Ok(m) if m.is_dir() => out.push(SystemEntry::Dir(name.to_string())),
            _ => {}
        }
    }
    out
}

fn cs(p: impl AsRef<Path>) -> Result<CString, SandboxError> {
    CString::new(p.as_ref().as_os_str().as_bytes()).map_err(|e| SandboxError::Prepare {
        what: "path with a NUL byte",
        source: std::io::Error::other(e),
    })
}

fn cstr(s: &str) -> Result<CString, SandboxError> {
    cs(Path::new(s))
}

/// How the workspace gets to `/workspace`.
pub(crate) enum WorkspaceSource<'a> {
    /// A detached FUSE mount (fd in the child).
    Mount(RawFd),
    /// A host directory bound read-write (tests only).
    Bind(&'a Path),
}

/// Where the system directories come from.
#[derive(Clone, Copy)]
pub(crate) enum SystemSource<'a> {
    /// The host's, bound by the child (it can reach them).
    Host,
    /// An image's tree at `tree`: each directory entry as a detached
    /// read-only mount the parent made (the child may not be able to reach
    /// the store), by entry name.
    Image {
        tree: &'a Path,
        mounts: &'a [(String, RawFd)],
    },
}

/// Inputs for building the root.
pub(crate) struct RootSpec<'a> {
    pub newroot: &'a Path,
    pub entries: &'a [SystemEntry],
    pub source: SystemSource<'a>,
    pub tmp_bytes: u64,
    pub workspace: WorkspaceSource<'a>,
}

/// Operations before and after `pivot_root`.
pub(crate) fn build(spec: &RootSpec<'_>) -> Result<(Vec<Op>, Vec<Op>), SandboxError> {
    let nr = spec.newroot;
    let mut ops = Vec::new();
    root_tmpfs(&mut ops, nr)?;
    system(&mut ops, nr, spec.entries, spec.source)?;
    proc(&mut ops, nr)?;
    dev(&mut ops, nr, &DEVICES, Some(spec.tmp_bytes))?;
    tmp(&mut ops, nr, spec.tmp_bytes)?;
    match spec.workspace {
        WorkspaceSource::Mount(fd) => attach(&mut ops, nr, "workspace", fd, false)?,
        WorkspaceSource::Bind(host) => {
            mkdir(&mut ops, nr, "workspace", 0o755)?;
            ops.push(bind(host.to_path_buf(), nr.join("workspace"))?);
            ops.push(Op::SetAttr {
                path: cs(nr.join("workspace"))?,
                set: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                recursive: true,
            });
        }
    }
    finish(ops, nr)
}

/// A private, size-capped `/tmp`.
pub(crate) fn tmp(ops: &mut Vec<Op>, nr: &Path, bytes: u64) -> Result<(), SandboxError> {
    mkdir(ops, nr, "tmp", 0o755)?;
    ops.push(tmpfs(
        nr.join("tmp"),
        &format!("mode=1777,size={},nr_inodes=65536", bytes.max(4096)),
        libc::MS_NOSUID | libc::MS_NODEV,
    )?);
    Ok(())
}

fn tmpfs(dst: PathBuf, data: &str, flags: libc::c_ulong) -> Result<Op, SandboxError> {
    Ok(Op::Mount {
        src: Some(cstr("tmpfs")?),
        dst: cs(dst)?,
        fstype: Some(cstr("tmpfs")?),
        flags,
        data: Some(cstr(data)?),
    })
}

fn bind(src: PathBuf, dst: PathBuf) -> Result<Op, SandboxError> {
    Ok(Op::Mount {
        src: Some(cs(src)?),
        dst: cs(dst)?,
        fstype: None,
        flags: libc::MS_BIND | libc::MS_REC,
        data: None,
    })
}

/// `mkdir newroot/rel`.
pub(crate) fn mkdir(
    ops: &mut Vec<Op>,
    nr: &Path,
    rel: &str,
    mode: u32,
) -> Result<(), SandboxError> {
    ops.push(Op::Mkdir {
        path: cs(nr.join(rel))?,
        mode,
    });
    Ok(())
}

/// The new root: a small tmpfs, with an unreadable empty file to mask
/// secrets with (removed after `pivot_root` by [`finish`]).
pub(crate) fn root_tmpfs(ops: &mut Vec<Op>, nr: &Path) -> Result<(), SandboxError> {
    ops.push(tmpfs(
        nr.to_path_buf(),
        "mode=0755,size=1m,nr_inodes=4096",
        libc::MS_NOSUID | libc::MS_NODEV,
    )?);
    ops.push(Op::Touch {
        path: cs(nr.join(".mask"))?,
        mode: 0,
    });
    Ok(())
}

/// The system directories, read-only (`/etc` with its secrets masked,
/// when it is among `entries`).
pub(crate) fn system(
    ops: &mut Vec<Op>,
    nr: &Path,
    entries: &[SystemEntry],
    source: SystemSource<'_>,
) -> Result<(), SandboxError> {
    let ro = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    for e in entries {
        match e {
            SystemEntry::Symlink(name, target) => ops.push(Op::Symlink {
                target: cstr(target)?,
                link: cs(nr.join(name))?,
            }),
            SystemEntry::Dir(name) => {
                let base = match source {
                    SystemSource::Host => {
                        mkdir(ops, nr, name, 0o755)?;
                        ops.push(bind(Path::new("/").join(name), nr.join(name))?);
                        Path::new("/")
                    }
                    SystemSource::Image { tree, mounts } => {
                        let fd = mounts
                            .iter()
                            .find(|(n, _)| n == name)
                            .map(|(_, fd)| *fd)
                            .ok_or_else(|| SandboxError::Prepare {
                                what: "image mount",
                                source: std::io::Error::other(format!("no mount for /{name}")),
                            })?;
                        attach(ops, nr, name, fd, false)?;
                        tree
                    }
                };
                if name == "etc" {
                    mask_etc(ops, nr, base)?;
                }
                ops.push(Op::SetAttr {
                    path: cs(nr.join(name))?,
                    set: ro,
                    recursive: true,
                });
            }
        }
    }
    Ok(())
}

/// A fresh `/proc` (of the new pid namespace).
pub(crate) fn proc(ops: &mut Vec<Op>, nr: &Path) -> Result<(), SandboxError> {
    mkdir(ops, nr, "proc", 0o555)?;
    ops.push(Op::Mount {
        src: Some(cstr("proc")?),
        dst: cs(nr.join("proc"))?,
        fstype: Some(cstr("proc")?),
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: None,
    });
    Ok(())
}

/// Attach the detached mount `fd` (see [`Op::MoveMount`]) at
/// `newroot/rel`, on an empty file or directory made for it.
pub(crate) fn attach(
    ops: &mut Vec<Op>,
    nr: &Path,
    rel: &str,
    fd: RawFd,
    file: bool,
) -> Result<(), SandboxError> {
    let dst = cs(nr.join(rel))?;
    ops.push(if file {
        Op::Touch {
            path: dst.clone(),
            mode: 0o444,
        }
    } else {
        Op::Mkdir {
            path: dst.clone(),
            mode: 0o755,
        }
    });
    ops.push(Op::MoveMount { fd, dst });
    Ok(())
}

/// The `pivot_root` parking place, and the operations after the pivot:
/// drop the mask file, make `/dev` and `/` read-only.
pub(crate) fn finish(mut ops: Vec<Op>, nr: &Path) -> Result<(Vec<Op>, Vec<Op>), SandboxError> {
    let ro = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    mkdir(&mut ops, nr, ".oldroot", 0o700)?;
    let after = vec![
        Op::Unlink {
            path: cstr("/.mask")?,
        },
        Op::SetAttr {
            path: cstr("/dev")?,
            set: ro,
            recursive: false,
        },
        Op::SetAttr {
            path: cstr("/")?,
            set: ro,
            recursive: false,
        },
    ];
    Ok((ops, after))
}

/// Mask the secrets of `base/etc` (the directory bound at `nr/etc`).
fn mask_etc(ops: &mut Vec<Op>, nr: &Path, base: &Path) -> Result<(), SandboxError> {
    let etc = base.join("etc");
    for f in SECRET_FILES {
        let host = etc.join(f);
        if std::fs::symlink_metadata(&host).is_ok_and(|m| m.is_file()) {
            ops.push(Op::Mount {
                src: Some(cs(nr.join(".mask"))?),
                dst: cs(nr.join("etc").join(f))?,
                fstype: None,
                flags: libc::MS_BIND,
                data: None,
            });
        }
    }
    for d in SECRET_DIRS {
        let host = etc.join(d);
        if std::fs::symlink_metadata(&host).is_ok_and(|m| m.is_dir()) {
            ops.push(Op::Mount {
                src: Some(cstr("tmpfs")?),
                dst: cs(nr.join("etc").join(d))?,
                fstype: Some(cstr("tmpfs")?),
                flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                data: Some(cstr("mode=000,size=4k,nr_inodes=1")?),
            });
        }
    }
    Ok(())
}

/// A minimal `/dev`: the host's `devices` bound in, the usual
/// `/proc/self/fd` links, and a `/dev/shm` of `shm_bytes` when given.
pub(crate) fn dev(
    ops: &mut Vec<Op>,
    nr: &Path,
    devices: &[&str],
    shm_bytes: Option<u64>,
) -> Result<(), SandboxError> {
    let dev = nr.join("dev");
    ops.push(Op::Mkdir {
        path: cs(&dev)?,
        mode: 0o755,
    });
    ops.push(Op::Mount {
        src: Some(cstr("tmpfs")?),
        dst: cs(&dev)?,
        fstype: Some(cstr("tmpfs")?),
        flags: libc::MS_NOSUID | libc::MS_NOEXEC,
        data: Some(cstr("mode=0755,size=64k,nr_inodes=64")?),
    });
    for d in devices {
        ops.push(Op::Touch {
            path: cs(dev.join(d))?,
            mode: 0o666,
        });
        ops.push(Op::Mount {
            src: Some(cs(Path::new("/dev").join(d))?),
            dst: cs(dev.join(d))?,
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
        });
        // No setattr needed: a device node can be neither executed nor setuid.
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(Op::Symlink {
            target: cstr(target)?,
            link: cs(dev.join(link))?,
        });
    }
    let Some(shm_bytes) = shm_bytes else {
        return Ok(());
    };
    ops.push(Op::Mkdir {
        path: cs(dev.join("shm"))?,
        mode: 0o755,
    });
    ops.push(Op::Mount {
        src: Some(cstr("tmpfs")?),
        dst: cs(dev.join("shm"))?,
        fstype: Some(cstr("tmpfs")?),
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: Some(cstr(&format!(
            "mode=1777,size={},nr_inodes=4096",
            (shm_bytes / 4).max(4096)
        ))?),
    });
    Ok(())
}
