//! The policy/audit layer: state and helpers shared by the `FileSystem`
//! implementation in `ops.rs`.
//!
//! The layer wraps fuse-backend-rs's `PassthroughFs` and knows nothing about
//! the transport: the same value can be driven by the /dev/fuse session in
//! `server.rs` or, later, by a vhost-user-fs backend for a micro-VM.

use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::Duration;

use fuse_backend_rs::api::filesystem::{Context, FileSystem};
use fuse_backend_rs::passthrough::{CachePolicy, Config, PassthroughFs};
use ring::digest::{Context as Sha, SHA256};

use super::attribution::Attribution;
use super::budget::Budget;
use super::bufio::HashingSink;
use super::guard::Owner;
use super::handles::OpenHandle;
use super::idmap::IdMap;
use super::paths::{NameError, NodeMap, Seen};
use super::pool::ReadPool;
use super::quota::{QuotaCounter, WriteQuota, WriteUsage};
use super::FsError;
use crate::file_refusal::{FileRefusal, RefusalRule};
use crate::{
    policy_path, FileAccess, FileCloseReport, FileOp, FileRequest, Mediator, Requester, Ticket,
    Verdict,
};

/// How long the kernel may cache names and attributes. Lookups are decided
/// again after this; opens are decided every time regardless.
const ENTRY_TIMEOUT: Duration = Duration::from_secs(5);

/// Chunk size for re-hashing a file at close.
const REHASH_CHUNK: u32 = 256 * 1024;

/// The mediated passthrough file system (transport-independent).
pub struct MediatedLayer {
    pub(super) inner: PassthroughFs<()>,
    pub(super) mediator: Arc<dyn Mediator>,
    attribution: Attribution,
    pub(super) nodes: RwLock<NodeMap>,
    /// Open file handles by the handle number the kernel was given.
    pub(super) handles: RwLock<HashMap<u64, Arc<OpenHandle>>>,
    /// The next handle number to give the kernel.
    pub(super) next_handle: AtomicU64,
    /// Shared inner handles of read-only opens (see `pool.rs`).
    pub(super) pool: Mutex<ReadPool>,
    pub(super) idmap: std::sync::OnceLock<IdMap>,
    /// Signalled whenever a handle stops being tracked (see `settle_command`).
    pub(super) released: (Mutex<()>, Condvar),
    /// The workspace root, opened once, for searching a hard-linked file's
    /// other names (`aliases.rs`).
    pub(super) root_dir: File,
    /// Who owns the workspace: what the sandbox creates is given to them.
    pub(super) owner: Owner,
    /// The session's write quota and what it has used.
    pub(super) quota: QuotaCounter,
    /// How many descriptors the layer may hold (`budget.rs`).
    pub(super) budget: Budget,
}

impl std::fmt::Debug for MediatedLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediatedLayer")
            .field("mediator", &self.mediator)
            .field("attribution", &self.attribution)
            .finish_non_exhaustive()
    }
}

impl MediatedLayer {
    /// Build the layer over the host directory `root`.
    pub(super) fn new(
        root: &Path,
        mediator: Arc<dyn Mediator>,
        attribution: Attribution,
    ) -> Result<Self, FsError> {
        let root_err = |source| FsError::Root {
            path: root.display().to_string(),
            source,
        };
        let canonical = root.canonicalize().map_err(root_err)?;
        if !canonical.is_dir() {
            return Err(root_err(io::Error::from_raw_os_error(libc::ENOTDIR)));
        }
        let root_dir = canonical
            .to_str()
            .ok_or_else(|| root_err(io::Error::from_raw_os_error(libc::EINVAL)))?
            .to_owned();
        let cfg = Config {
            root_dir,
            // Standalone (no Vfs above us): the passthrough imports its root in
            // `init` and does *not* switch to no-open mode, so every open
            // reaches this layer and is decided.
            do_import: true,
            no_open: false,
            no_opendir: false,
            // Writeback caching would let the kernel batch writes from several
            // handles into one, breaking per-handle accounting.
            writeback: false,
            xattr: false,
            // Auto: no KEEP_CACHE, so each open revalidates the page cache.
            cache_policy: CachePolicy::Auto,
            entry_timeout: ENTRY_TIMEOUT,
            attr_timeout: ENTRY_TIMEOUT,
            ..Config::default()
        };
        let inner = PassthroughFs::<()>::new(cfg).map_err(FsError::Passthrough)?;
        let root_dir = File::open(&canonical).map_err(root_err)?;
        let owner = Owner::of(&canonical).map_err(root_err)?;
        let budget = Budget::new();
        Ok(MediatedLayer {
            inner,
            mediator,
            attribution,
            nodes: RwLock::new(NodeMap::new()),
            handles: RwLock::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            pool: Mutex::new(ReadPool::with_budget(budget.max())),
            idmap: std::sync::OnceLock::new(),
            released: (Mutex::new(()), Condvar::new()),
            root_dir,
            owner,
            quota: QuotaCounter::new(WriteQuota::default()),
            budget,
        })
    }

    /// Who is asking (and the serial of their command, when the server is
    /// shared by several); EACCES for a process of no command we serve.
    pub(super) fn requester(&self, ctx: &Context) -> io::Result<(Requester, Option<u64>)> {
        self.attribution
            .requester(ctx.pid)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EACCES))
    }

    /// Ask the mediator; a denial becomes EACCES.
    pub(super) fn ask(
        &self,
        ctx: &Context,
        access: FileAccess,
        op: FileOp,
        path: &str,
    ) -> io::Result<Ticket> {
        let (requester, _) = self.requester(ctx)?;
        self.ask_as(&requester, access, op, path)
    }

    /// Ask the mediator on behalf of `requester`; a denial becomes EACCES.
    pub(super) fn ask_as(
        &self,
        requester: &Requester,
        access: FileAccess,
        op: FileOp,
        path: &str,
    ) -> io::Result<Ticket> {
        let req = FileRequest {
            access,
            op,
            path: policy_path(path).to_owned(),
            requester: requester.clone(),
        };
        match self.mediator.file_access(&req) {
            Verdict::Allow(ticket) => Ok(ticket),
            Verdict::Deny(_) => Err(io::Error::from_raw_os_error(libc::EACCES)),
        }
    }

    /// Refuse `access` by `op` on `path` (raw bytes, workspace-relative) by
    /// `rule`: reported to the mediator, and the errno for the program.
    pub(super) fn refuse(
        &self,
        ctx: &Context,
        access: FileAccess,
        op: FileOp,
        path: &[u8],
        rule: RefusalRule,
        detail: String,
    ) -> io::Error {
        // A process of no command we serve is refused without a report,
        // as for every other request of it.
        let Ok((requester, _)) = self.requester(ctx) else {
            return io::Error::from_raw_os_error(libc::EACCES);
        };
        let path = if path.is_empty() { b"." } else { path };
        let refusal = FileRefusal::new(access, op, path, rule, requester).with_detail(detail);
        self.mediator.file_refused(&refusal);
        io::Error::from_raw_os_error(refusal_errno(rule))
    }

    /// Path of `name` in `parent`, for `access` by `op`; a name that cannot
    /// be put to policy is refused (and reported) here.
    pub(super) fn child_path(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        access: FileAccess,
        op: FileOp,
    ) -> io::Result<String> {
        let r = self
            .nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .child_path(parent, name);
        match r {
            Ok(p) => Ok(p),
            Err(NameError::Io(e)) => Err(e),
            Err(NameError::Refused(rule)) => {
                let (dir, _) = self.node(parent)?;
                let mut raw = Vec::from(dir.as_bytes());
                if !dir.is_empty() {
                    raw.extend_from_slice(b"/");
                }
                raw.extend_from_slice(name.to_bytes());
                Err(self.refuse(ctx, access, op, &raw, rule, String::new()))
            }
        }
    }

    /// Path (as a directory: its first name) and file type of `inode`.
    pub(super) fn node(&self, inode: u64) -> io::Result<(String, u32)> {
        let nodes = self.nodes.read().unwrap_or_else(PoisonError::into_inner);
        let node = nodes.get(inode)?;
        Ok((node.path().to_owned(), node.kind))
    }

    /// Record that the kernel now holds a reference to the inode of
    /// `entry`, reached as `name` in `parent` at `path`.
    pub(super) fn remember(
        &self,
        parent: u64,
        name: &CStr,
        path: String,
        entry: &fuse_backend_rs::api::filesystem::Entry,
    ) {
        let seen = Seen {
            mode: entry.attr.st_mode,
            nlink: entry.attr.st_nlink,
        };
        let known = {
            let mut nodes = self.nodes.write().unwrap_or_else(PoisonError::into_inner);
            nodes.remember(entry.inode, parent, name, path, seen);
            nodes.len()
        };
        self.budget.note(known + self.open_handles());
    }

    /// Limit the inodes and open handles the layer holds together to `max`
    /// (before serving; see `budget.rs`).
    pub fn set_max_open(&self, max: usize) {
        self.budget.set_max(max);
        *self.pool.lock().unwrap_or_else(PoisonError::into_inner) = ReadPool::with_budget(max);
    }

    /// Inodes and open handles the layer may hold together.
    pub fn max_open(&self) -> usize {
        self.budget.max()
    }

    /// Block until the layer holds more than its high-water mark (true),
    /// or eviction was stopped (false).
    pub(super) fn wait_for_eviction(&self) -> bool {
        self.budget.wait()
    }

    /// End [`MediatedLayer::wait_for_eviction`] for good.
    pub(super) fn stop_evicting(&self) {
        self.budget.stop();
    }

    /// The evictor asks the kernel to drop an entry of `parent` (until
    /// the guard is dropped; `budget.rs`).
    pub(super) fn asking_to_drop_in(&self, parent: u64) -> super::evict::Asking<'_> {
        self.budget.inval().asking(parent)
    }

    /// The gate of the transport's standby readers (`standby.rs`).
    pub(super) fn standby(&self) -> &super::standby::Standby {
        self.budget.standby()
    }

    /// A transport runs an evictor for this layer (or no longer does).
    pub(super) fn set_evictor(&self, running: bool) {
        self.budget.set_evictor(running);
    }

    /// The write quota of this layer (one per sandbox: the session's).
    pub fn set_write_quota(&self, quota: WriteQuota) {
        self.quota.set(quota);
    }

    /// What the write quota has used so far.
    pub fn write_usage(&self) -> WriteUsage {
        self.quota.usage()
    }

    /// Report the close of `open` (after the inner handle was released).
    pub(super) fn report_close(&self, ctx: &Context, open: &OpenHandle) {
        if !open.claim_report() {
            return;
        }
        let sha256_after_write = if open.writable {
            self.final_hash(ctx, open)
        } else {
            None
        };
        let bytes_read = open.bytes_read.load(std::sync::atomic::Ordering::Relaxed);
        let bytes_written = open
            .bytes_written
            .load(std::sync::atomic::Ordering::Relaxed);
        for (ticket, path) in &open.tickets {
            self.mediator.file_closed(&FileCloseReport {
                ticket: *ticket,
                path: policy_path(path).to_owned(),
                bytes_read,
                bytes_written,
                sha256_after_write,
            });
        }
    }

    /// SHA-256 of the file after this handle's writes: the running hash when
    /// it covers the whole file, otherwise a fresh read of the file.
    fn final_hash(&self, ctx: &Context, open: &OpenHandle) -> Option<[u8; 32]> {
        let mut hash = open.hash.lock().unwrap_or_else(PoisonError::into_inner);
        if !hash.changed() {
            return None;
        }
        let size = self
            .inner
            .getattr(ctx, open.inode, None)
            .ok()
            .map(|(st, _)| u64::try_from(st.st_size).unwrap_or(0))?;
        if let Some(done) = hash.finish_if_covers(size) {
            return Some(done);
        }
        drop(hash);
        self.rehash(ctx, open.inode).ok()
    }

    /// Read the whole file through a fresh inner handle and hash it.
    pub(super) fn rehash(&self, ctx: &Context, inode: u64) -> io::Result<[u8; 32]> {
        let (handle, _, _) = self.inner.open(ctx, inode, libc::O_RDONLY as u32, 0)?;
        let handle = handle.ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        let mut sha = Sha::new(&SHA256);
        let result = (|| -> io::Result<()> {
            let mut sink = HashingSink::new(&mut sha, REHASH_CHUNK as usize);
            loop {
                let before = sink.total;
                self.inner
                    .read(ctx, inode, handle, &mut sink, REHASH_CHUNK, before, None, 0)?;
                if sink.total == before {
                    return Ok(());
                }
            }
        })();
        let released = self
            .inner
            .release(ctx, inode, 0, handle, false, false, None);
        result?;
        released?;
        sha.finish()
            .as_ref()
            .try_into()
            .map_err(|_| io::Error::from_raw_os_error(libc::EIO))
    }

    /// Translate file ownership between the host and the sandbox's user
    /// namespace (see [`IdMap`]). Set once, before serving; later calls are
    /// ignored and return false.
    pub fn set_id_map(&self, map: IdMap) -> bool {
        self.idmap.set(map).is_ok()
    }

    /// Number of inodes the layer currently names (diagnostics and tests).
    pub fn known_inodes(&self) -> usize {
        self.nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The errno a program gets for a refusal by `rule`.
pub(super) fn refusal_errno(rule: RefusalRule) -> i32 {
    match rule {
        RefusalRule::PrivilegedMode | RefusalRule::Ownership | RefusalRule::DeviceNode => {
            libc::EPERM
        }
        RefusalRule::ExtendedAttribute => libc::EOPNOTSUPP,
        RefusalRule::WriteQuota => libc::EDQUOT,
        RefusalRule::OpenFiles => libc::ENFILE,
        RefusalRule::EmptyName
        | RefusalRule::ControlCharacter
        | RefusalRule::NotUtf8
        | RefusalRule::ParentDir
        | RefusalRule::Absolute
        | RefusalRule::SlashInName
        | RefusalRule::SymlinkEscape
        | RefusalRule::NotRegular
        | RefusalRule::HardLinkUnresolved => libc::EACCES,
    }
}

/// The requesting process's pid as seen inside its own (innermost) pid
/// namespace, read from the `NSpid:` line of /proc/<pid>/status. `None` when
/// the kernel gave no pid or the process is gone.
///
/// Reading /proc costs more than the rest of a lookup, so answers are cached
/// for a second: a pid cannot be recycled within that time short of cycling
/// through the whole pid space, which the sandbox's process limit prevents.
pub(crate) fn sandbox_pid(host_pid: libc::pid_t) -> Option<u32> {
    use std::sync::{Mutex, OnceLock};
    use std::time::Instant;
    const TTL: Duration = Duration::from_secs(1);
    type Cache = Mutex<(Instant, HashMap<u32, Option<u32>>)>;
    static CACHE: OnceLock<Cache> = OnceLock::new();

    let pid = u32::try_from(host_pid).ok().filter(|p| *p > 0)?;
    let cache = CACHE.get_or_init(|| Mutex::new((Instant::now(), HashMap::new())));
    {
        let mut c = cache.lock().unwrap_or_else(PoisonError::into_inner);
        if c.0.elapsed() > TTL {
            c.0 = Instant::now();
            c.1.clear();
        }
        if let Some(hit) = c.1.get(&pid) {
            return *hit;
        }
    }
    let found = read_ns_pid(pid);
    cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .1
        .insert(pid, found);
    found
}

fn read_ns_pid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|ids| ids.split_whitespace().last())
        .and_then(|id| id.parse().ok())
}
