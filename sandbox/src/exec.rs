//! The exec API shared by every sandbox backend (process today, micro-VM later).

use std::time::Duration;

use crate::check::LayerReport;
use crate::error::SandboxError;
use crate::resources::GroupUsage;

/// The address of the egress proxy as seen from inside the sandbox.
pub const PROXY_URL: &str = "http://127.0.0.1:3128";
/// The TCP port of the egress proxy inside the sandbox's network namespace.
pub const PROXY_PORT: u16 = 3128;
/// Where the workspace appears inside the sandbox.
pub const WORKSPACE_MOUNT: &str = "/workspace";

/// Environment variables pointing clients at the egress proxy; always set and
/// never overridable by the request.
pub const PROXY_ENV: [&str; 8] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "PIP_PROXY",
    "npm_config_proxy",
    "npm_config_https_proxy",
];

/// Resource limits for one command. Every limit is always applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time before the whole sandbox is killed.
    pub wall_time: Duration,
    /// Time between SIGTERM and SIGKILL at the wall-clock deadline.
    pub kill_grace: Duration,
    /// CPU time per process (RLIMIT_CPU), whole seconds.
    pub cpu_seconds: u64,
    /// Address space per process in bytes (RLIMIT_AS).
    pub address_space_bytes: u64,
    /// Largest file a process may write, in bytes (RLIMIT_FSIZE).
    pub file_size_bytes: u64,
    /// Processes (threads included) in the sandbox (RLIMIT_NPROC, counted
    /// per user namespace).
    pub processes: u64,
    /// Open file descriptors per process (RLIMIT_NOFILE).
    pub open_files: u64,
    /// Size of the private `/tmp` (and `/dev/shm`) tmpfs, in bytes.
    pub tmp_bytes: u64,
    /// Bytes kept of each of stdout and stderr; the rest is counted and dropped.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            wall_time: Duration::from_secs(120),
            kill_grace: Duration::from_secs(2),
            cpu_seconds: 120,
            address_space_bytes: 4 << 30,
            file_size_bytes: 1 << 30,
            processes: 256,
            open_files: 1024,
            tmp_bytes: 256 << 20,
            output_bytes: 1 << 20,
        }
    }
}

/// One command to run in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// Caller-assigned id (the runtime uses it to tie file and network
    /// requests back to the command).
    pub id: String,
    /// Program and arguments; a program without `/` is searched in `PATH`.
    pub argv: Vec<String>,
    /// Working directory relative to the workspace (`""` is the workspace root).
    pub cwd: String,
    /// Extra environment variables, applied on top of the sandbox defaults
    /// (the proxy variables cannot be overridden).
    pub env: Vec<(String, String)>,
    /// Bytes fed to the command's standard input, which is then closed.
    pub stdin: Vec<u8>,
    /// Resource limits.
    pub limits: Limits,
}

impl ExecRequest {
    /// A request with default limits, empty stdin and cwd at the workspace root.
    pub fn new(id: impl Into<String>, argv: Vec<String>) -> ExecRequest {
        ExecRequest {
            id: id.into(),
            argv,
            cwd: String::new(),
            env: Vec::new(),
            stdin: Vec::new(),
            limits: Limits::default(),
        }
    }
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited normally with this code.
    Exit(i32),
    /// Killed by this signal.
    Signal(i32),
    /// Killed by stele at the wall-clock deadline.
    TimedOut,
}

impl ExitStatus {
    /// The conventional shell exit code (128 + signal; 124 for a timeout).
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exit(c) => c,
            ExitStatus::Signal(s) => 128 + s,
            ExitStatus::TimedOut => 124,
        }
    }
}

/// Whether a captured stream was kept whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// Everything the command wrote was kept.
    Complete,
    /// Output exceeded the cap; `total_bytes` were written in all.
    Truncated {
        /// Bytes the command wrote to the stream in total.
        total_bytes: u64,
    },
}

/// One captured output stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// The bytes kept (at most `Limits::output_bytes`).
    pub bytes: Vec<u8>,
    /// Whether anything was dropped.
    pub truncation: Truncation,
}

/// Resources used by every process of the command, as the kernel accounted them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResourceUsage {
    /// User CPU time.
    pub user_cpu: Duration,
    /// System CPU time.
    pub system_cpu: Duration,
    /// Largest resident set of any one process, in bytes.
    pub max_rss_bytes: u64,
    /// The command's whole process tree, as its cgroup accounted it (peak
    /// memory of all processes together, processes, CPU, limits hit);
    /// `None` when the sandbox runs without cgroups.
    pub group: Option<GroupUsage>,
    /// The session's group after the command (all commands so far; its
    /// counters are cumulative), `None` without cgroups.
    pub session: Option<GroupUsage>,
}

/// The result of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    /// The request's id.
    pub id: String,
    /// How it ended.
    pub status: ExitStatus,
    /// Captured standard output.
    pub stdout: Captured,
    /// Captured standard error.
    pub stderr: Captured,
    /// CPU and memory used.
    pub usage: ResourceUsage,
    /// Wall-clock time from spawn to the last process gone.
    pub duration: Duration,
    /// Network attempts the sandbox refused by itself (sockets of other
    /// kinds, connections elsewhere than the egress proxy); each distinct
    /// one was reported to the Mediator ([`crate::Mediator::net_refused`]).
    pub network_refusals: u64,
}

/// Which kind of backend a sandbox is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Linux namespaces + Landlock + seccomp on the host kernel.
    Process,
    /// A micro-VM with its own kernel.
    MicroVm,
}

/// A place to run the agent's commands. Implemented by the process backend
/// and, later, the micro-VM backend.
pub trait Sandbox: Send + Sync {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;
    /// The layers this sandbox enforces (probed when it was built).
    fn layers(&self) -> &LayerReport;
    /// Run one command to completion (or to its deadline).
    fn exec(&self, req: ExecRequest) -> Result<ExecOutcome, SandboxError>;
    /// How much of the workspace write quota the sandbox (the session) has
    /// used, when its workspace is mediated.
    fn workspace_usage(&self) -> Option<crate::fs::WriteUsage> {
        None
    }
}
