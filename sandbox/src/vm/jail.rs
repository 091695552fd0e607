//! QEMU's jail. QEMU has no jailer of its own, so stele plays that role with
//! the process backend's machinery (`process::{plan, child, rootfs,
//! landlock, seccomp}`): QEMU is cloned into new user, mount, pid, network,
//! IPC, UTS and cgroup namespaces, runs as an unprivileged host uid/gid
//! (65534 when stele is root) with no capabilities, no new privileges,
//! Landlock, stele's seccomp filters (under QEMU's own `-sandbox`),
//! rlimits and an empty environment, in a minimal root holding only:
//!
//! * the host's system directories except `/etc`, read-only (QEMU, its
//!   libraries and firmware);
//! * `/vm/kernel`, `/vm/initrd`, `/vm/rootfs.ext4`, read-only;
//! * `/run/vm`, the VM's share directory (its sockets and console log),
//!   read-write;
//! * `/dev/null`, `/dev/urandom`, and `/dev/kvm` only when KVM is used;
//! * a `/proc` of its own pid namespace (where it is PID 1).
//!
//! The image files and the share directory live where the unprivileged
//! uid cannot reach them (root's state directory, a root-only run
//! directory), so the parent hands them to the child as detached bind
//! mounts (`open_tree`) that the child attaches. Any step that fails is an
//! error and QEMU does not start.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::VmError;
use super::vmm::Vmm;
use crate::process::landlock::{self, Grant, Tcp};
use crate::process::plan::{tag, ChildFds, MountFds, Plan};
use crate::process::rootfs::{self, SystemEntry};
use crate::process::spawn::{read_record, record_value, setup_error, write_byte, write_id_maps};
use crate::process::{child, seccomp, sys, UNPRIVILEGED_ID};

/// Where QEMU sees the VM's share directory (sockets, console log).
pub(crate) const JAIL_RUN: &str = "/run/vm";
/// Where QEMU sees the guest kernel.
pub(crate) const JAIL_KERNEL: &str = "/vm/kernel";
/// Where QEMU sees the initramfs.
pub(crate) const JAIL_INITRD: &str = "/vm/initrd";
/// Where QEMU sees the root image.
pub(crate) const JAIL_ROOTFS: &str = "/vm/rootfs.ext4";

/// Descriptors QEMU may hold (guest RAM, eventfds, sockets: a few dozen).
const NOFILE_LIMIT: u64 = 4096;

/// How QEMU is confined, for the log and attestations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailInfo {
    /// Host uid QEMU runs as.
    pub uid: u32,
    /// Host gid QEMU runs as (the group of `/dev/kvm` under KVM).
    pub gid: u32,
    /// Namespaces QEMU has of its own.
    pub namespaces: Vec<&'static str>,
    /// Landlock ABI of the ruleset QEMU runs under.
    pub landlock_abi: u8,
    /// What QEMU sees of the host's file system, as `path (ro|rw)`.
    pub paths: Vec<String>,
    /// Resource limits set on QEMU (name, soft = hard limit).
    pub rlimits: Vec<(&'static str, u64)>,
}

impl JailInfo {
    /// As JSON (for `session.start` and the session attestation).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "uid": self.uid,
            "gid": self.gid,
            "namespaces": self.namespaces,
            "capabilities": "none",
            "no_new_privs": true,
            "landlock_abi": self.landlock_abi,
            "seccomp": "stele's sandbox filters + QEMU -sandbox on",
            "paths": self.paths,
            "rlimits": self.rlimits.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
            "environment": "empty",
        })
    }
}

/// The host uid and gid QEMU runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub uid: u32,
    pub gid: u32,
}

/// Who QEMU runs as: 65534 when stele is root (the group of `/dev/kvm`
/// under KVM, which must then be group read-write), else stele's own ids.
pub(crate) fn identity(kvm: bool) -> Result<Identity, VmError> {
    let euid = sys::geteuid();
    if euid != 0 {
        return Ok(Identity {
            uid: euid,
            gid: sys::getegid(),
        });
    }
    let mut id = Identity {
        uid: UNPRIVILEGED_ID,
        gid: UNPRIVILEGED_ID,
    };
    if kvm {
        let meta = std::fs::metadata("/dev/kvm").map_err(|source| VmError::File {
            what: "KVM device",
            path: "/dev/kvm".into(),
            source,
        })?;
        let mode = meta.mode();
        if mode & 0o060 == 0o060 {
            id.gid = meta.gid();
        } else if mode & 0o006 != 0o006 {
            return Err(VmError::Jail(format!(
                "/dev/kvm (mode {:o}, gid {}) is not open to QEMU's unprivileged uid; \
                 make it group read-write (0660, group kvm)",
                mode & 0o777,
                meta.gid()
            )));
        }
    }
    Ok(id)
}

/// Make `dir` QEMU's share directory: owned by `id`, mode 0700.
pub(crate) fn prepare_share_dir(dir: &Path, id: Identity) -> Result<(), VmError> {
    let err = |source| VmError::File {
        what: "VM share directory",
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir(dir).map_err(err)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    hand_over(dir, id)
}

/// Give a socket or file stele made in the share directory to `id`.
pub(crate) fn hand_over(path: &Path, id: Identity) -> Result<(), VmError> {
    if sys::geteuid() != 0 {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(id.uid), Some(id.gid)).map_err(|source| VmError::File {
        what: "handing over to QEMU's uid",
        path: path.to_owned(),
        source,
    })
}

/// What QEMU is started with.
pub(crate) struct JailSpec<'a> {
    /// QEMU's arguments (paths as the jail sees them).
    pub args: Vec<String>,
    /// Host files: the kernel, initramfs and root image.
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub rootfs: &'a Path,
    /// The host directory seen as [`JAIL_RUN`].
    pub share_dir: &'a Path,
    /// Whether `/dev/kvm` is needed.
    pub kvm: bool,
    /// Guest RAM.
    pub memory_mib: u32,
    /// QEMU's standard error.
    pub stderr: File,
    /// Who QEMU runs as.
    pub id: Identity,
    /// The cgroup QEMU starts in (the session's limits apply to it).
    pub cgroup: Option<&'a crate::process::cgroup::LeafGroup>,
}

fn jail_err(what: &str) -> impl Fn(std::io::Error) -> VmError + '_ {
    move |e| VmError::Jail(format!("{what}: {e}"))
}

fn cstring(s: &[u8], what: &str) -> Result<CString, VmError> {
    CString::new(s).map_err(|_| VmError::Jail(format!("{what} contains a NUL byte")))
}

/// The QEMU binary on `PATH`, resolved to a real path under one of the
/// system directories the jail exposes.
fn qemu_binary(entries: &[SystemEntry]) -> Result<PathBuf, VmError> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    let found = std::env::split_paths(&path)
        .map(|d| d.join(super::qemu::QEMU))
        .find(|p| p.is_file())
        .ok_or_else(|| VmError::Qemu(format!("{} not found on PATH", super::qemu::QEMU)))?;
    let real = std::fs::canonicalize(&found).map_err(jail_err("resolving QEMU"))?;
    let inside = entries.iter().any(|e| match e {
        SystemEntry::Dir(d) => real.starts_with(Path::new("/").join(d)),
        SystemEntry::Symlink(..) => false,
    });
    if !inside {
        return Err(VmError::Jail(format!(
            "QEMU at {} is outside the system directories the jail exposes",
            real.display()
        )));
    }
    Ok(real)
}

/// A read-only detached bind mount of `path`.
fn ro_mount(path: &Path) -> Result<OwnedFd, VmError> {
    let c = cstring(path.as_os_str().as_bytes(), "path")?;
    let fd = sys::bind_tree(&c).map_err(|e| VmError::Jail(format!("{}: {e}", path.display())))?;
    let ro = sys::MOUNT_ATTR_RDONLY
        | sys::MOUNT_ATTR_NOSUID
        | sys::MOUNT_ATTR_NODEV
        | sys::MOUNT_ATTR_NOEXEC;
    sys::set_mount_attr(fd.as_raw_fd(), ro)
        .map_err(|e| VmError::Jail(format!("read-only {}: {e}", path.display())))?;
    Ok(fd)
}

/// QEMU's resource limits. The largest file it writes is the memfd of
/// guest RAM (`ftruncate` counts against `RLIMIT_FSIZE`), so that is the
/// file size limit; it also caps the console log (a guest flooding its
/// serial console gets QEMU killed by `SIGXFSZ` rather than filling the
/// host's disk).
fn limits(memory_bytes: u64) -> Vec<(&'static str, libc::__rlimit_resource_t, u64)> {
    vec![
        ("core", libc::RLIMIT_CORE, 0),
        ("fsize", libc::RLIMIT_FSIZE, memory_bytes),
        ("nofile", libc::RLIMIT_NOFILE, NOFILE_LIMIT),
        ("msgqueue", libc::RLIMIT_MSGQUEUE, 0),
        ("rtprio", libc::RLIMIT_RTPRIO, 0),
    ]
    .into_iter()
    .map(|(name, res, want)| {
        // Never above the current hard limit: raising it needs privilege
        // that the jailed child no longer has.
        // SAFETY: rlimit is plain data the kernel fills in.
        let mut cur: libc::rlimit = unsafe { std::mem::zeroed() };
        // SAFETY: a valid resource and a pointer to a local.
        let ok = unsafe { libc::getrlimit(res, &mut cur) } == 0;
        (name, res, if ok { want.min(cur.rlim_max) } else { want })
    })
    .collect()
}

/// Start QEMU in its jail from the calling thread (it gets `SIGKILL` when
/// that thread ends). Returns once QEMU has been executed.
pub(crate) fn spawn(spec: JailSpec<'_>) -> Result<(Vmm, JailInfo), VmError> {
    let euid = sys::geteuid();
    let entries: Vec<SystemEntry> = rootfs::host_system_entries()
        .into_iter()
        .filter(|e| !matches!(e, SystemEntry::Dir(d) if d == "etc"))
        .collect();
    let qemu = qemu_binary(&entries)?;
    let newroot =
        crate::process::prepare_newroot(euid).map_err(|e| VmError::Jail(e.to_string()))?;
    let abi = sys::landlock_abi().map_err(jail_err("Landlock"))?;
    let devices: Vec<&str> = if spec.kvm {
        vec!["null", "urandom", "kvm"]
    } else {
        vec!["null", "urandom"]
    };

    // Detached mounts of what the unprivileged child cannot reach itself.
    let mounts = [
        (JAIL_KERNEL, ro_mount(spec.kernel)?, true),
        (JAIL_INITRD, ro_mount(spec.initrd)?, true),
        (JAIL_ROOTFS, ro_mount(spec.rootfs)?, true),
        (
            JAIL_RUN,
            {
                let c = cstring(spec.share_dir.as_os_str().as_bytes(), "path")?;
                let fd = sys::bind_tree(&c).map_err(jail_err("share directory"))?;
                let rw = sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_NOEXEC;
                sys::set_mount_attr(fd.as_raw_fd(), rw).map_err(jail_err("share directory"))?;
                fd
            },
            false,
        ),
    ];
    let mut ops = Vec::new();
    let nr = newroot.as_path();
    let sys_err = |e: crate::error::SandboxError| VmError::Jail(e.to_string());
    rootfs::root_tmpfs(&mut ops, nr).map_err(sys_err)?;
    rootfs::system(&mut ops, nr, &entries, rootfs::SystemSource::Host).map_err(sys_err)?;
    rootfs::proc(&mut ops, nr).map_err(sys_err)?;
    rootfs::dev(&mut ops, nr, &devices, None).map_err(sys_err)?;
    rootfs::mkdir(&mut ops, nr, "vm", 0o755).map_err(sys_err)?;
    rootfs::mkdir(&mut ops, nr, "run", 0o755).map_err(sys_err)?;
    for (at, fd, file) in &mounts {
        let rel = at.trim_start_matches('/');
        rootfs::attach(&mut ops, nr, rel, fd.as_raw_fd(), *file).map_err(sys_err)?;
    }
    let (before_pivot, after_pivot) = rootfs::finish(ops, nr).map_err(sys_err)?;

    // Landlock: rules on the host inodes hold for their binds in the jail.
    let system_dirs: Vec<PathBuf> = entries
        .iter()
        .filter_map(|e| match e {
            SystemEntry::Dir(d) => Some(Path::new("/").join(d)),
            SystemEntry::Symlink(..) => None,
        })
        .collect();
    let dev_paths: Vec<PathBuf> = devices.iter().map(|d| Path::new("/dev").join(d)).collect();
    let mut rules: Vec<(&Path, Grant)> = system_dirs
        .iter()
        .map(|d| (d.as_path(), Grant::ReadExec))
        .collect();
    rules.extend([
        (spec.kernel, Grant::ReadFile),
        (spec.initrd, Grant::ReadFile),
        (spec.rootfs, Grant::ReadFile),
        (spec.share_dir, Grant::All),
    ]);
    rules.extend(dev_paths.iter().map(|d| (d.as_path(), Grant::Device)));
    let ruleset = landlock::ruleset(abi, &rules, Tcp::Nothing).map_err(sys_err)?;
    let child_rules = vec![landlock::child_rule(abi, "/proc", Grant::ReadExec).map_err(sys_err)?];

    let pipe = |what| sys::pipe().map_err(jail_err(what));
    let (go_r, go_w) = pipe("handshake pipe")?;
    let (rep_r, rep_w) = pipe("report pipe")?;
    let null = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(jail_err("/dev/null"))?;
    let limits = limits(u64::from(spec.memory_mib) << 20);
    let argv: Vec<CString> = std::iter::once(cstring(super::qemu::QEMU.as_bytes(), "argv")?)
        .chain(
            spec.args
                .iter()
                .map(|a| cstring(a.as_bytes(), "argument"))
                .collect::<Result<Vec<_>, _>>()?,
        )
        .collect();
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mount_fds: Vec<i32> = mounts.iter().map(|(_, fd, _)| fd.as_raw_fd()).collect();
    let plan = Plan {
        newroot: cstring(nr.as_os_str().as_bytes(), "root")?,
        put_old: cstring(nr.join(".oldroot").as_os_str().as_bytes(), "root")?,
        before_pivot,
        after_pivot,
        rules: child_rules,
        clear_groups: euid == 0,
        hostname: cstring(b"stele-vmm", "hostname")?,
        fds: ChildFds {
            go: go_r.as_raw_fd(),
            report: rep_w.as_raw_fd(),
            stdin: null.as_raw_fd(),
            stdout: null.as_raw_fd(),
            stderr: spec.stderr.as_raw_fd(),
            mounts: MountFds::of(&mount_fds).map_err(sys_err)?,
            ruleset: ruleset.as_raw_fd(),
            notify: -1,
        },
        _argv: argv,
        argv_ptrs,
        // No environment at all: stele's own (API keys!) stays outside.
        _env: Vec::new(),
        env_ptrs: vec![std::ptr::null()],
        programs: vec![cstring(qemu.as_os_str().as_bytes(), "QEMU path")?],
        cwd: cstring(b"/", "cwd")?,
        rlimits: limits
            .iter()
            .map(|(_, res, v)| {
                (
                    *res,
                    libc::rlimit {
                        rlim_cur: *v,
                        rlim_max: *v,
                    },
                )
            })
            .collect(),
        seccomp: seccomp::sandbox_filters().map_err(sys_err)?,
        notify_filter: None,
        cap_last: std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(63),
    };
    let flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP;
    let pid = match spec.cgroup {
        Some(leaf) => {
            let _in_leaf = leaf.enter_thread().map_err(jail_err("QEMU's v1 cgroups"))?;
            // SAFETY: the child runs only `child::run_jailed`, which makes
            // async-signal-safe raw system calls on the pre-built plan and
            // never returns (the guard is dropped in the parent only).
            let pid = unsafe { sys::raw_clone_into(flags, leaf.clone_fd()) }
                .map_err(jail_err("clone into new namespaces and QEMU's cgroup"))?;
            if pid == 0 {
                child::run_jailed(&plan);
            }
            pid
        }
        None => {
            // SAFETY: as above.
            let pid =
                unsafe { sys::raw_clone(flags) }.map_err(jail_err("clone into new namespaces"))?;
            if pid == 0 {
                child::run_jailed(&plan);
            }
            pid
        }
    };
    let vmm = Vmm::new(pid);
    // The child's ends, mounts and ruleset live on in the child only.
    drop((go_r, rep_w, null, spec.stderr, mounts, ruleset));
    drop(plan);
    write_id_maps(pid, spec.id.uid, spec.id.gid, euid == 0).map_err(sys_err)?;
    let mut go = File::from(go_w);
    let mut report = File::from(rep_r);
    write_byte(&mut go).map_err(sys_err)?;
    // End of stream: the report pipe closed on a successful execve.
    match read_record(&mut report).map_err(sys_err)? {
        None => {}
        Some(rec) if rec[0] == tag::SETUP_ERROR => {
            return Err(VmError::Jail(format!("QEMU's jail: {}", setup_error(&rec))))
        }
        Some(rec) if rec[0] == tag::EXEC_ERROR => {
            return Err(VmError::Qemu(format!(
                "cannot execute {} in its jail: {}",
                qemu.display(),
                std::io::Error::from_raw_os_error(record_value(&rec))
            )))
        }
        Some(_) => return Err(VmError::Jail("unexpected report from the jail".into())),
    }
    let mut paths: Vec<String> = system_dirs
        .iter()
        .map(|d| format!("{} (ro)", d.display()))
        .collect();
    paths.extend([JAIL_KERNEL, JAIL_INITRD, JAIL_ROOTFS].map(|p| format!("{p} (ro)")));
    paths.push(format!("{JAIL_RUN} (rw)"));
    paths.extend(devices.iter().map(|d| format!("/dev/{d}")));
    paths.push("/proc (own pid namespace)".into());
    let info = JailInfo {
        uid: spec.id.uid,
        gid: spec.id.gid,
        namespaces: vec!["user", "mount", "pid", "net", "ipc", "uts", "cgroup"],
        landlock_abi: abi,
        paths,
        rlimits: limits.iter().map(|(n, _, v)| (*n, *v)).collect(),
    };
    Ok((vmm, info))
}
