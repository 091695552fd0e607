//! The mediated workspace: a passthrough file system over a host directory,
//! wrapped in a policy/audit layer that asks the [`Mediator`](crate::Mediator).
//!
//! * `layer.rs` / `ops.rs` — the policy layer ([`MediatedLayer`]), an
//!   implementation of fuse-backend-rs's transport-independent `FileSystem`
//!   trait that asks the mediator and delegates to `PassthroughFs`;
//! * `paths.rs` — the inode → workspace-path map the decisions are made on;
//! * `handles.rs` / `write.rs` — per-handle counters and the SHA-256 of
//!   written data;
//! * `open.rs` / `pool.rs` — the handle numbers given to the kernel and the
//!   host descriptors behind them (shared for read-only opens);
//! * `idmap.rs` — owner translation for user namespaces;
//! * `attribution.rs` — which command a request comes from, when one server
//!   serves all the commands of a sandbox ([`CommandTable`]);
//! * `budget.rs` / `room.rs` / `evict.rs` — the descriptor budget, room
//!   in it for one more, and having the kernel drop entries to make room;
//! * `server.rs` / `standby.rs` — the /dev/fuse transport ([`FsServer`])
//!   and the readers that take over while a request waits for room;
//! * `cpu.rs` — keeping the server on the CPU of the programs it serves.
//!
//! A virtio-fs (vhost-user-fs) transport would drive the same
//! [`MediatedLayer`] from virtqueues instead of /dev/fuse.

pub(crate) mod aliases;
mod attribution;
mod budget;
mod bufio;
mod cpu;
mod decide;
mod evict;
mod guard;
mod handles;
mod idmap;
mod layer;
mod open;
mod ops;
mod paths;
mod pool;
mod quota;
mod room;
mod server;
mod standby;
mod stats;
mod write;

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

pub use attribution::{pid_namespace, CommandTable, Registration};
pub use cpu::{current_cpu, next_cpu, pin_current_thread, pin_task};
pub use guard::{Owner, WORKSPACE_UMASK};
pub use idmap::IdMap;
pub use layer::MediatedLayer;
pub use quota::{QuotaParseError, WriteQuota, WriteUsage, DEFAULT_WRITE_QUOTA};
pub use server::FsServer;

use attribution::Attribution;

use crate::{Mediator, Requester};

/// Errors from setting up or serving the mediated workspace.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The workspace root could not be resolved or is not a directory.
    #[error("workspace root {path}: {source}")]
    Root {
        /// The root that was given.
        path: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The passthrough file system could not be created.
    #[error("passthrough file system: {0}")]
    Passthrough(std::io::Error),
    /// The FUSE session could not be set up or woken.
    #[error("fuse session: {0}")]
    Session(String),
    /// A server thread panicked.
    #[error("a file-server thread panicked")]
    Thread,
    /// Another I/O error.
    #[error("i/o: {0}")]
    Io(std::io::Error),
}

/// A passthrough file system over a host directory, with every name-level
/// operation decided by the mediator.
#[derive(Debug)]
pub struct MediatedFs {
    layer: Arc<MediatedLayer>,
    threads: usize,
    cpu: Option<usize>,
}

/// Pages of data in a fuse-backend-rs session buffer (its
/// `FUSE_KERN_BUF_PAGES`, which the crate does not re-export).
const SESSION_BUF_PAGES: usize = 256;

/// Largest read the kernel may ask for: must fit the session's request
/// buffer (256 pages of data plus a page of header).
fn max_read() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = usize::try_from(page).unwrap_or(4096);
    SESSION_BUF_PAGES * page
}

impl MediatedFs {
    /// Build the file system over `root`. Decisions are attributed to
    /// `requester` (its pid is filled in per request).
    pub fn new(
        root: &Path,
        mediator: Arc<dyn Mediator>,
        requester: Requester,
    ) -> Result<Self, FsError> {
        Self::with_attribution(root, mediator, Attribution::Fixed(requester))
    }

    /// Build the file system over `root` for a server shared by several
    /// commands: each request is attributed to the command whose pid
    /// namespace the requesting process is in, as registered in `commands`
    /// (requests from any other process are refused with EACCES).
    pub fn for_commands(
        root: &Path,
        mediator: Arc<dyn Mediator>,
        commands: Arc<CommandTable>,
    ) -> Result<Self, FsError> {
        Self::with_attribution(root, mediator, Attribution::ByPidNamespace(commands))
    }

    fn with_attribution(
        root: &Path,
        mediator: Arc<dyn Mediator>,
        attribution: Attribution,
    ) -> Result<Self, FsError> {
        Ok(MediatedFs {
            layer: Arc::new(MediatedLayer::new(root, mediator, attribution)?),
            threads: server::DEFAULT_SERVER_THREADS,
            cpu: None,
        })
    }

    /// Translate file ownership between the host and the sandbox's user
    /// namespace: host files owned by `map.host_uid` appear owned by
    /// `map.sandbox_uid`, and what the sandbox user creates is created as the
    /// server's own user. Without it ids pass through unchanged (right when
    /// the sandbox's ids are the host's, e.g. no user namespace).
    pub fn with_id_map(self, map: IdMap) -> Self {
        self.layer.set_id_map(map);
        self
    }

    /// Hold at most `max` remembered inodes and open handles together
    /// (each takes a host descriptor). The default is the process's
    /// descriptor limit (raised as far as allowed) less a reserve of an
    /// eighth of it, at least 1,024 (half of a limit below 2,048), for the
    /// rest of stele; near it (see `budget.rs`) the least recently used
    /// entries are dropped from the
    /// kernel's cache, and past all of it new lookups and opens fail with
    /// `ENFILE` (reported). See `docs/mediated-workspace.md`.
    pub fn with_max_open(self, max: usize) -> Self {
        self.layer.set_max_open(max);
        self
    }

    /// Limit what the sandbox may write into the workspace over the
    /// server's life (a session) to `quota` (default
    /// [`DEFAULT_WRITE_QUOTA`]); writes beyond it fail with `EDQUOT`.
    pub fn with_write_quota(self, quota: WriteQuota) -> Self {
        self.layer.set_write_quota(quota);
        self
    }

    /// Serve with `n` request threads instead of the default (one). Worth it
    /// only when the mediator blocks for long (e.g. a disk commit per
    /// decision) and sandboxed programs work in parallel.
    pub fn with_server_threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    /// Run the server threads on `cpu` only. Pin the programs that use the
    /// workspace to the same CPU ([`pin_current_thread`] before `exec`) and
    /// every FUSE round trip stays on one CPU: on an otherwise idle machine
    /// the scheduler would put the woken side on the idle CPU each time, and
    /// cross-CPU wake-ups are what FUSE round trips mostly cost on the
    /// development VM (see `docs/mediated-workspace.md`, Performance).
    pub fn with_cpu(mut self, cpu: usize) -> Self {
        self.cpu = Some(cpu);
        self
    }

    /// Options string for mount(2) of type "fuse" given the /dev/fuse fd
    /// number as seen by the mounting process.
    ///
    /// `default_permissions` makes the kernel enforce mode bits for the
    /// sandboxed users (the server itself runs privileged); `max_read` keeps
    /// read requests within the server's buffer.
    pub fn mount_options(fd: i32, uid: u32, gid: u32) -> String {
        format!(
            "fd={fd},rootmode=40000,user_id={uid},group_id={gid},allow_other,default_permissions,max_read={}",
            max_read()
        )
    }

    /// The transport-independent layer, for driving it directly (tests,
    /// other transports).
    pub fn layer(&self) -> &Arc<MediatedLayer> {
        &self.layer
    }

    /// Serve FUSE requests on an already-mounted /dev/fuse fd, on background
    /// threads, until unmounted or stopped.
    ///
    /// The fd must be the only one left open on the connection once the
    /// mounting process is done with it (close it there, keep it away from
    /// sandboxed processes): stopping the server closes it, which aborts the
    /// connection.
    pub fn serve(self, fuse_dev: OwnedFd) -> Result<FsServer, FsError> {
        FsServer::start(self.layer, fuse_dev, self.threads, self.cpu)
    }
}
