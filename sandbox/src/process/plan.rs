//! Everything the sandbox child needs, prepared in the parent *before* the
//! clone: after it the child may not allocate, so every path is already a
//! `CString` and every pointer array is already built.

use std::ffi::CString;
use std::os::fd::RawFd;

use crate::error::{SandboxError, SetupStep};

/// One file-system operation the child performs while building its root.
#[derive(Debug)]
pub(crate) enum Op {
    /// `mkdir(path, mode)`.
    Mkdir { path: CString, mode: u32 },
    /// Create an empty file (a bind-mount target or a mask).
    Touch { path: CString, mode: u32 },
    /// `symlink(target, link)`.
    Symlink { target: CString, link: CString },
    /// `mount(2)`.
    Mount {
        src: Option<CString>,
        dst: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    /// `mount_setattr(2)` setting `set` (recursively or not).
    SetAttr {
        path: CString,
        set: u64,
        recursive: bool,
    },
    /// Attach a detached mount (the FUSE workspace, or a bind the parent
    /// cloned with `open_tree(2)`) with `move_mount(2)`.
    MoveMount { fd: RawFd, dst: CString },
    /// `unlink(path)`.
    Unlink { path: CString },
}

impl Op {
    /// The step reported when this operation fails.
    pub(crate) fn step(&self) -> SetupStep {
        match self {
            Op::Mkdir { .. } | Op::Touch { .. } | Op::Symlink { .. } | Op::Unlink { .. } => {
                SetupStep::MakeNode
            }
            Op::Mount { .. } => SetupStep::Mount,
            Op::SetAttr { .. } => SetupStep::MountAttr,
            Op::MoveMount { .. } => SetupStep::Workspace,
        }
    }
}

/// A Landlock rule the child adds itself (for mounts only it can see).
#[derive(Debug)]
pub(crate) struct ChildRule {
    /// Path inside the new root.
    pub path: CString,
    /// `LANDLOCK_ACCESS_FS_*` bits (already masked to the handled set).
    pub access: u64,
}

/// Most detached mounts one child attaches (the VM jail's image files and
/// share directory; a service's granted host paths).
pub(crate) const MAX_MOUNT_FDS: usize = 16;

/// Detached mounts the child attaches with [`Op::MoveMount`] and closes
/// once they are attached (a fixed array: the child may not allocate).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MountFds {
    fds: [RawFd; MAX_MOUNT_FDS],
    len: usize,
}

impl MountFds {
    /// No detached mounts.
    pub(crate) const fn none() -> MountFds {
        MountFds {
            fds: [-1; MAX_MOUNT_FDS],
            len: 0,
        }
    }

    /// The given mounts (at most [`MAX_MOUNT_FDS`]).
    pub(crate) fn of(fds: &[RawFd]) -> Result<MountFds, SandboxError> {
        let mut m = MountFds::none();
        if fds.len() > MAX_MOUNT_FDS {
            return Err(SandboxError::Prepare {
                what: "detached mounts",
                source: std::io::Error::other(format!(
                    "{} mounts, at most {MAX_MOUNT_FDS}",
                    fds.len()
                )),
            });
        }
        m.fds[..fds.len()].copy_from_slice(fds);
        m.len = fds.len();
        Ok(m)
    }

    /// The descriptors.
    pub(crate) fn as_slice(&self) -> &[RawFd] {
        &self.fds[..self.len]
    }
}

/// The descriptors the child uses; every other inherited descriptor is closed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildFds {
    /// Read end of the parent→child handshake pipe.
    pub go: RawFd,
    /// Write end of the child→parent report pipe.
    pub report: RawFd,
    /// The command's stdin (read end).
    pub stdin: RawFd,
    /// The command's stdout (write end).
    pub stdout: RawFd,
    /// The command's stderr (write end).
    pub stderr: RawFd,
    /// Detached mounts to attach (the FUSE workspace, if mediated).
    pub mounts: MountFds,
    /// The Landlock ruleset.
    pub ruleset: RawFd,
    /// The unix socket the init sends its seccomp listener over (-1: none).
    pub notify: RawFd,
}

impl ChildFds {
    /// All descriptors to keep, sorted ascending, in a fixed-size array (no allocation).
    pub(crate) fn sorted(&self) -> ([RawFd; 7 + MAX_MOUNT_FDS], usize) {
        let mut out = [-1; 7 + MAX_MOUNT_FDS];
        let mut n = 0;
        let fixed = [
            self.go,
            self.report,
            self.stdin,
            self.stdout,
            self.stderr,
            self.ruleset,
            self.notify,
        ];
        for &fd in fixed.iter().chain(self.mounts.as_slice()) {
            if fd < 0 {
                continue;
            }
            out[n] = fd;
            n += 1;
        }
        // Insertion sort: tiny, allocation-free.
        let mut i = 1;
        while i < n {
            let mut j = i;
            while j > 0 && out[j - 1] > out[j] {
                out.swap(j - 1, j);
                j -= 1;
            }
            i += 1;
        }
        (out, n)
    }
}

/// The complete, pre-built plan for one sandboxed command.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Host directory the new root is mounted on (inside the private mount namespace).
    pub newroot: CString,
    /// `newroot/.oldroot`, where `pivot_root` parks the old root.
    pub put_old: CString,
    /// Operations before `pivot_root` (host paths under `newroot`).
    pub before_pivot: Vec<Op>,
    /// Operations after `pivot_root` (sandbox paths).
    pub after_pivot: Vec<Op>,
    /// Landlock rules for sandbox-only mounts.
    pub rules: Vec<ChildRule>,
    /// Whether to call `setgroups(0, NULL)` (possible when stele is root).
    pub clear_groups: bool,
    /// Hostname inside the UTS namespace.
    pub hostname: CString,
    /// Descriptors.
    pub fds: ChildFds,
    /// Kept alive for `argv_ptrs`.
    pub _argv: Vec<CString>,
    /// NULL-terminated argv for `execve`.
    pub argv_ptrs: Vec<*const libc::c_char>,
    /// Kept alive for `env_ptrs`.
    pub _env: Vec<CString>,
    /// NULL-terminated environment for `execve`.
    pub env_ptrs: Vec<*const libc::c_char>,
    /// Program paths to try in order (PATH search done up front).
    pub programs: Vec<CString>,
    /// Working directory inside the sandbox.
    pub cwd: CString,
    /// Resource limits to set in the command before `execve`.
    pub rlimits: Vec<(libc::__rlimit_resource_t, libc::rlimit)>,
    /// The compiled seccomp filters, installed in order.
    pub seccomp: Vec<seccompiler::BpfProgram>,
    /// The program handing network attempts to stele, installed last with
    /// a listener that goes to the parent over `fds.notify`.
    pub notify_filter: Option<seccompiler::BpfProgram>,
    /// `/proc/sys/kernel/cap_last_cap`.
    pub cap_last: u32,
}

/// Report record tags (child → parent).
pub(crate) mod tag {
    /// Root built; waiting for the go-ahead.
    pub const READY: u8 = b'R';
    /// A set-up step failed: (step, errno).
    pub const SETUP_ERROR: u8 = b'E';
    /// `execve` failed for every candidate: errno.
    pub const EXEC_ERROR: u8 = b'X';
    /// The command ended: raw wait status.
    pub const STATUS: u8 = b'S';
}

/// Size of one report record: tag, step, 4-byte little-endian value.
pub(crate) const RECORD_LEN: usize = 6;

/// Encode a report record.
pub(crate) fn record(tag: u8, step: u8, value: i32) -> [u8; RECORD_LEN] {
    let v = value.to_le_bytes();
    [tag, step, v[0], v[1], v[2], v[3]]
}
