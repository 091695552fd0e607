//! Typed errors of the sandbox backends.
//!
//! A sandbox that cannot be set up exactly as asked is an error, never a
//! weaker sandbox: every failure names the layer or the set-up step.

use std::fmt;

/// A protection layer of the process sandbox, as probed and required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// A new user namespace (unprivileged identity).
    UserNamespace,
    /// A new mount namespace (private file-system view).
    MountNamespace,
    /// A new pid namespace (no view of other processes).
    PidNamespace,
    /// A new network namespace (loopback only).
    NetNamespace,
    /// A new IPC namespace.
    IpcNamespace,
    /// A new UTS namespace.
    UtsNamespace,
    /// Landlock file-system (and, where available, TCP and scoping) rules.
    Landlock,
    /// A seccomp system-call filter.
    Seccomp,
    /// `/dev/fuse`, needed for the mediated workspace.
    Fuse,
    /// `mount_setattr(2)`, used to make whole mount trees read-only.
    MountSetattr,
    /// `pidfd_open(2)`, used to wait for the sandbox with a deadline.
    Pidfd,
    /// cgroups: memory, process and CPU limits per command and per session.
    Cgroup,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Layer::UserNamespace => "user namespace",
            Layer::MountNamespace => "mount namespace",
            Layer::PidNamespace => "pid namespace",
            Layer::NetNamespace => "network namespace",
            Layer::IpcNamespace => "ipc namespace",
            Layer::UtsNamespace => "uts namespace",
            Layer::Landlock => "landlock",
            Layer::Seccomp => "seccomp",
            Layer::Fuse => "fuse (/dev/fuse)",
            Layer::MountSetattr => "mount_setattr",
            Layer::Pidfd => "pidfd",
            Layer::Cgroup => "cgroup (resource limits)",
        };
        f.write_str(s)
    }
}

/// The step of sandbox set-up inside the new namespaces that failed.
///
/// The child reports a step number and an errno over a pipe (it cannot
/// allocate), so the numbering is part of the parent/child protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SetupStep {
    /// Waiting for the parent (it went away).
    Handshake = 1,
    /// Becoming uid/gid 0 inside the user namespace.
    Identity = 2,
    /// Making the inherited mount tree private.
    MountPrivate = 3,
    /// Creating a directory, file or symlink in the new root.
    MakeNode = 4,
    /// A mount (bind, tmpfs, proc, device).
    Mount = 5,
    /// Making a mount tree read-only / nosuid / nodev.
    MountAttr = 6,
    /// Attaching the mediated workspace.
    Workspace = 7,
    /// `pivot_root` and detaching the old root.
    PivotRoot = 8,
    /// Adding Landlock rules or restricting self.
    Landlock = 9,
    /// Dropping capabilities, securebits, no-new-privs.
    Privileges = 10,
    /// Installing the seccomp filter.
    Seccomp = 11,
    /// Forking the command under the sandbox init.
    Fork = 12,
    /// Resource limits.
    Rlimit = 13,
    /// Changing into the working directory.
    Chdir = 14,
    /// Closing inherited descriptors.
    CloseFds = 15,
    /// Standard streams.
    Stdio = 16,
    /// Loopback and the proxy listener in the network namespace.
    Network = 17,
}

impl SetupStep {
    /// Decode a step number received from the child.
    pub fn from_code(code: u8) -> Option<SetupStep> {
        use SetupStep::*;
        let all = [
            Handshake,
            Identity,
            MountPrivate,
            MakeNode,
            Mount,
            MountAttr,
            Workspace,
            PivotRoot,
            Landlock,
            Privileges,
            Seccomp,
            Fork,
            Rlimit,
            Chdir,
            CloseFds,
            Stdio,
            Network,
        ];
        all.into_iter().find(|s| *s as u8 == code)
    }
}

/// Errors of the sandbox backends.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A layer the configuration requires is not available on this host.
    #[error("required sandbox layer unavailable: {layer}: {detail}")]
    LayerUnavailable {
        /// The missing layer.
        layer: Layer,
        /// What the probe found.
        detail: String,
    },
    /// The request was malformed (empty argv, bad cwd, NUL bytes, …).
    #[error("invalid sandbox request: {0}")]
    InvalidRequest(String),
    /// Preparing the sandbox in the parent failed.
    #[error("sandbox preparation failed ({what}): {source}")]
    Prepare {
        /// What was being prepared.
        what: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A set-up step inside the new namespaces failed.
    #[error("sandbox set-up failed at {step:?}: {source}")]
    Setup {
        /// The failing step.
        step: SetupStep,
        /// The errno it failed with.
        source: std::io::Error,
    },
    /// The program could not be executed inside the sandbox.
    #[error("cannot execute {program:?} in the sandbox: {source}")]
    Spawn {
        /// argv\[0\].
        program: String,
        /// The errno of the last `execve` attempt.
        source: std::io::Error,
    },
    /// The mediated workspace file server failed.
    #[error("mediated workspace: {0}")]
    Workspace(#[from] crate::fs::FsError),
    /// The egress proxy failed.
    #[error("egress proxy: {0}")]
    Proxy(#[from] crate::proxy::ProxyError),
    /// The sandbox child vanished without reporting (killed from outside?).
    #[error("sandbox init exited unexpectedly: {0}")]
    Lost(String),
    /// The micro-VM backend failed (image, boot, channel).
    #[error("micro-VM: {0}")]
    Vm(#[from] crate::vm::VmError),
    /// The tool image the process backend runs on is missing or unsafe.
    #[error("tool image: {0}")]
    ToolImage(String),
}
