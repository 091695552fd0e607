//! Long-lived services in the process sandbox: one program (an MCP server)
//! started in its own namespaces with its standard streams piped to the
//! caller, running until it exits or its handle stops or drops it.
//!
//! `Sandbox::exec` runs a command to completion; a service is the same
//! confinement kept open. It is built from the process backend's pieces
//! (`plan`, `child`, `rootfs`, `landlock`, `seccomp`, `netpool`, the egress
//! proxy), in the form the micro-VM's QEMU jail uses: the program is PID 1
//! of its own pid namespace, so killing it kills every process it started.
//!
//! What a service gets:
//!
//! * new user, mount, pid, network, IPC, UTS and cgroup namespaces; host uid
//!   and gid 65534 when stele runs as root, else stele's own; no
//!   capabilities, no new privileges, Landlock, stele's seccomp filters,
//!   rlimits;
//! * a minimal root: the host's system directories read-only (`/etc` with
//!   its secrets masked), a fresh `/proc`, a minimal `/dev`, a private
//!   size-capped `/tmp`; no home directory (`HOME=/tmp`);
//! * the host paths of its [`HostGrant`]s, at the same paths, read-only or
//!   read-write. These are plain bind mounts (no mediation): they are the
//!   *service's* grants on the host, named by the operator, never the
//!   agent's workspace;
//! * a scrubbed environment plus the spec's variables, and the proxy
//!   variables pointing at 127.0.0.1:3128;
//! * a network namespace of its own with only loopback, where the egress
//!   proxy asks the [`Mediator`](crate::Mediator) about every connection.
//!
//! Every step that fails is an error and the program does not start.

mod grants;
mod keeper;
mod launch;

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::SandboxError;
use crate::Mediator;

/// How a service may use a granted host path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GrantAccess {
    /// Read, list and execute.
    ReadOnly,
    /// Everything, including creating and deleting files.
    ReadWrite,
}

/// A host file or directory made visible to a service at the same path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostGrant {
    /// Absolute host path; it must exist (it is canonicalised).
    pub path: PathBuf,
    /// What the service may do with it.
    pub access: GrantAccess,
}

/// The network of a service.
#[derive(Debug, Clone)]
pub enum ServiceNetwork {
    /// Loopback and the egress proxy on 127.0.0.1:3128, which asks this
    /// mediator about every connection.
    EgressProxy(Arc<dyn Mediator>),
    /// Loopback only: no way out at all.
    LoopbackOnly,
}

/// Resource limits of a service (per process; processes per namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceLimits {
    /// CPU seconds per process (SIGXCPU, then SIGKILL a second later).
    pub cpu_seconds: u64,
    /// Address space per process in bytes.
    pub address_space_bytes: u64,
    /// Largest file a process may write, in bytes.
    pub file_size_bytes: u64,
    /// Processes and threads in the service's user namespace.
    pub processes: u64,
    /// Open descriptors per process.
    pub open_files: u64,
    /// Size of the private `/tmp` (and a quarter of it for `/dev/shm`).
    pub tmp_bytes: u64,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            // A long-lived server accumulates CPU time while idle; an hour
            // of it stops a runaway without ending a normal session.
            cpu_seconds: 3600,
            address_space_bytes: 4 << 30,
            file_size_bytes: 1 << 30,
            processes: 256,
            open_files: 1024,
            tmp_bytes: 256 << 20,
        }
    }
}

/// One service to start.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// The caller's name for it; proxy connections are attributed to it
    /// (`Requester::exec_id`).
    pub id: String,
    /// Program and arguments; a program without `/` is searched in the
    /// sandbox's `PATH`.
    pub argv: Vec<String>,
    /// Extra environment variables (the proxy variables cannot be replaced).
    pub env: Vec<(String, String)>,
    /// Working directory as the service sees it (absolute).
    pub cwd: PathBuf,
    /// Host paths the service may use.
    pub grants: Vec<HostGrant>,
    /// Its network.
    pub network: ServiceNetwork,
    /// Its resource limits.
    pub limits: ServiceLimits,
}

impl ServiceSpec {
    /// A service with no grants, default limits, cwd `/tmp`.
    pub fn new(id: impl Into<String>, argv: Vec<String>, network: ServiceNetwork) -> Self {
        ServiceSpec {
            id: id.into(),
            argv,
            env: Vec::new(),
            cwd: PathBuf::from("/tmp"),
            grants: Vec::new(),
            network,
            limits: ServiceLimits::default(),
        }
    }
}

/// The caller's ends of the service's standard streams.
#[derive(Debug)]
pub struct ServiceIo {
    /// Write end of its standard input.
    pub stdin: OwnedFd,
    /// Read end of its standard output.
    pub stdout: OwnedFd,
    /// Read end of its standard error.
    pub stderr: OwnedFd,
}

/// How a service ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceExit {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it (not stele's).
    Signaled(i32),
    /// stele killed it (stop, drop).
    Killed,
}

impl std::fmt::Display for ServiceExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceExit::Exited(c) => write!(f, "exit status: {c}"),
            ServiceExit::Signaled(s) => write!(f, "killed by signal {s}"),
            ServiceExit::Killed => f.write_str("killed by stele"),
        }
    }
}

/// How a service is confined, as set up (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Host uid the service runs as.
    pub uid: u32,
    /// Host gid.
    pub gid: u32,
    /// Namespaces of its own.
    pub namespaces: Vec<&'static str>,
    /// Landlock ABI of its ruleset.
    pub landlock_abi: u8,
    /// What it sees of the file system, as `path (what)`.
    pub paths: Vec<String>,
    /// Resource limits (name, value).
    pub rlimits: Vec<(&'static str, u64)>,
    /// `egress proxy` or `loopback only`.
    pub network: &'static str,
    /// Names of its environment variables (never the values).
    pub env_names: Vec<String>,
}

impl ServiceInfo {
    /// As JSON, for the audit log.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "uid": self.uid,
            "gid": self.gid,
            "namespaces": self.namespaces,
            "capabilities": "none",
            "no_new_privs": true,
            "landlock_abi": self.landlock_abi,
            "seccomp": "stele's sandbox filters",
            "paths": self.paths,
            "rlimits": self.rlimits.iter()
                .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                .collect::<serde_json::Map<_, _>>(),
            "network": self.network,
            "env_names": self.env_names,
        })
    }
}

/// The exit status, set once by the keeper thread.
#[derive(Debug, Default)]
struct Shared {
    exit: Mutex<Option<ServiceExit>>,
    changed: Condvar,
}

impl Shared {
    fn set(&self, e: ServiceExit) {
        *self.exit.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
        self.changed.notify_all();
    }
}

/// A running service. Dropping it kills the service (and every process it
/// started) and waits until it is gone and its connections are reported.
#[derive(Debug)]
pub struct ServiceProcess {
    pid: u32,
    info: ServiceInfo,
    io: Option<ServiceIo>,
    shared: Arc<Shared>,
    /// Write end of the keeper's stop pipe: a byte or its closing kills.
    stop: Option<OwnedFd>,
    keeper: Option<JoinHandle<()>>,
}

impl ServiceProcess {
    /// Start `spec`. Returns once the program has been executed in its
    /// sandbox; a sandbox that cannot be set up exactly is an error.
    pub fn start(spec: ServiceSpec) -> Result<ServiceProcess, SandboxError> {
        let shared = Arc::new(Shared::default());
        let (stop_r, stop_w) = super::sys::pipe().map_err(|source| SandboxError::Prepare {
            what: "service stop pipe",
            source,
        })?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let keeper_shared = shared.clone();
        // The service dies with the thread that cloned it (PDEATHSIG), so
        // it gets a thread of its own for its whole life.
        let keeper = std::thread::Builder::new()
            .name("stele-service".into())
            .spawn(move || keeper::run(spec, stop_r, keeper_shared, tx))
            .map_err(|source| SandboxError::Prepare {
                what: "service keeper thread",
                source,
            })?;
        match rx.recv() {
            Ok(Ok(started)) => Ok(ServiceProcess {
                pid: started.pid,
                info: started.info,
                io: Some(started.io),
                shared,
                stop: Some(stop_w),
                keeper: Some(keeper),
            }),
            Ok(Err(e)) => {
                let _ = keeper.join();
                Err(e)
            }
            Err(_) => {
                let _ = keeper.join();
                Err(SandboxError::Lost("the service keeper thread ended".into()))
            }
        }
    }

    /// Host pid of the service (PID 1 of its pid namespace).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// How it is confined.
    pub fn info(&self) -> &ServiceInfo {
        &self.info
    }

    /// The standard streams (once).
    pub fn take_io(&mut self) -> Option<ServiceIo> {
        self.io.take()
    }

    /// How it ended, if it has (its connections are reported by then).
    pub fn try_wait(&self) -> Option<ServiceExit> {
        *self
            .shared
            .exit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait up to `timeout` for it to end.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<ServiceExit> {
        let deadline = Instant::now() + timeout;
        let mut g = self
            .shared
            .exit
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while g.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            g = self
                .shared
                .changed
                .wait_timeout(g, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *g
    }

    /// Kill it (and everything it started); returns at once.
    pub fn kill(&self) {
        if let Some(fd) = &self.stop {
            use std::os::fd::AsRawFd;
            // SAFETY: one byte from a live buffer to our own pipe.
            unsafe { libc::write(fd.as_raw_fd(), b"k".as_ptr().cast(), 1) };
        }
    }

    /// Kill it and wait until it is gone.
    pub fn stop(mut self) -> Option<ServiceExit> {
        self.shutdown();
        self.try_wait()
    }

    fn shutdown(&mut self) {
        // Closing the stop pipe wakes the keeper, which kills and reaps.
        drop(self.stop.take());
        if let Some(k) = self.keeper.take() {
            let _ = k.join();
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.shutdown();
    }
}
