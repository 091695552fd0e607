//! The `Mediator`: the one question the sandbox asks before any effect.
//!
//! The sandbox knows nothing of policy or of the audit log. Before a sandboxed
//! process opens, creates, renames or deletes a workspace file, and before it
//! opens a network connection through the egress proxy, the sandbox asks its
//! `Mediator`. The runtime implements this trait with its gate (policy decision
//! plus a durable audit entry); tests implement it with simple rules.
//!
//! Calls are synchronous: they come from file-server threads and proxy tasks
//! (which use `spawn_blocking`). A call must not return `Allow` until the
//! implementation has done whatever it needs *before* the effect (for the
//! runtime: the intent record is durably committed, or — for reads, lookups
//! and listings, which take effect only when what was read leaves the
//! sandbox — ordered in the log ahead of anything that could carry it out).

use std::any::Any;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// What kind of file access is being asked for; maps one-to-one onto the
/// policy actions `file.read`, `file.write`, `file.delete` and `file.list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileAccess {
    /// Reading contents or metadata (`file.read`).
    Read,
    /// Creating, writing, truncating, changing attributes (`file.write`).
    Write,
    /// Unlinking or removing (`file.delete`).
    Delete,
    /// Looking up names or listing a directory (`file.list`).
    List,
}

impl FileAccess {
    /// The policy action name for this access.
    pub fn action(self) -> &'static str {
        match self {
            FileAccess::Read => "file.read",
            FileAccess::Write => "file.write",
            FileAccess::Delete => "file.delete",
            FileAccess::List => "file.list",
        }
    }
}

/// The file-system operation that caused the request (recorded for reviewers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileOp {
    /// Name lookup or stat.
    Lookup,
    /// Reading a directory.
    ReadDir,
    /// Opening an existing file.
    Open,
    /// Creating a new file.
    Create,
    /// Creating a directory.
    Mkdir,
    /// Removing a file.
    Unlink,
    /// Removing a directory.
    Rmdir,
    /// Renaming: asked once for the source (`Delete`) and once for the target (`Write`).
    Rename,
    /// Creating a hard link (asked as `Write` on the new name, `Read` on the source).
    Link,
    /// Creating a symbolic link.
    Symlink,
    /// Changing attributes (mode, size, times).
    SetAttr,
    /// Executing a file from the workspace.
    Exec,
}

impl FileOp {
    /// The name the op is recorded under (`data.op` of file entries), the
    /// same whoever asked: an agent's program or a person over the API.
    pub fn recorded_name(self) -> &'static str {
        match self {
            FileOp::Lookup => "lookup",
            FileOp::ReadDir => "readdir",
            FileOp::Open => "open",
            FileOp::Create => "create",
            FileOp::Mkdir => "mkdir",
            FileOp::Unlink => "unlink",
            FileOp::Rmdir => "rmdir",
            FileOp::Rename => "rename",
            FileOp::Link => "link",
            FileOp::Symlink => "symlink",
            FileOp::SetAttr => "setattr",
            FileOp::Exec => "exec",
        }
    }
}

/// Which sandboxed program made a request, as far as the sandbox knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requester {
    /// Process id inside the sandbox's pid namespace, when known.
    pub pid: Option<u32>,
    /// The sandbox-assigned id of the command (`ExecRequest::id`) this belongs to.
    pub exec_id: Option<String>,
}

/// A request to access one workspace file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRequest {
    /// The kind of access.
    pub access: FileAccess,
    /// The operation that caused it.
    pub op: FileOp,
    /// Workspace-relative path, `/`-separated, no `.`/`..` components, no
    /// leading `/`; the workspace root is `.` (the name policies use).
    pub path: String,
    /// Who asked.
    pub requester: Requester,
}

/// The path the mediator is asked about for the workspace root.
pub const ROOT_PATH: &str = ".";

/// A workspace-relative path as the mediator is asked about it: `""`
/// (the root, as the sandbox's path joins keep it) becomes [`ROOT_PATH`].
pub fn policy_path(path: &str) -> &str {
    if path.is_empty() {
        ROOT_PATH
    } else {
        path
    }
}

/// A request to open one outbound connection through the egress proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRequest {
    /// Host exactly as the client wrote it in the request's authority
    /// (`Example.COM.`, `[::ffff:7f00:1]`, `0x7f.1`, `Bücher.example`). The
    /// proxy only splits host and port: the mediator canonicalises the host
    /// (with the same function `stele policy explain` uses), resolves a name
    /// once and answers with the one address to connect to.
    pub host: String,
    /// Destination port.
    pub port: u16,
    /// `https` for CONNECT tunnels, `http` for plain proxied requests.
    pub scheme: NetScheme,
    /// Who asked.
    pub requester: Requester,
}

/// How a proxied connection was requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetScheme {
    /// An HTTP CONNECT tunnel (usually TLS).
    Connect,
    /// A plain HTTP request forwarded by the proxy.
    Http,
}

/// An opaque reference the mediator hands out with an `Allow`, returned to it
/// in the matching close report (the runtime uses the intent's log index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// Why the mediator refused: a reason for people, and an opaque detail the
/// mediator may attach for whoever reports the refusal upward.
///
/// The sandbox never looks inside the detail: it hands the whole `Refusal`
/// back to the caller of a file tool ([`crate::tools::ToolError::Denied`]),
/// which gets back exactly the value its mediator attached (the runtime
/// attaches its logged denial: deciding rules, their layer, the audit
/// entry). File-system callers see only EACCES; the proxy shows the reason.
#[derive(Clone)]
pub struct Refusal {
    reason: String,
    detail: Option<Arc<dyn Any + Send + Sync>>,
}

impl Refusal {
    /// A refusal with only a reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            detail: None,
        }
    }

    /// A refusal carrying `detail` for the mediator's own caller.
    pub fn with_detail<T: Any + Send + Sync>(reason: impl Into<String>, detail: T) -> Self {
        Self {
            reason: reason.into(),
            detail: Some(Arc::new(detail)),
        }
    }

    /// The reason, for people.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The attached detail, if there is one of type `T`.
    pub fn detail<T: Any>(&self) -> Option<&T> {
        self.detail.as_deref().and_then(|d| d.downcast_ref::<T>())
    }
}

impl fmt::Debug for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refusal")
            .field("reason", &self.reason)
            .field("detail", &self.detail.as_ref().map(|_| "…"))
            .finish()
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Two refusals are equal when their reasons are and they carry the same
/// detail value (or none).
impl PartialEq for Refusal {
    fn eq(&self, other: &Self) -> bool {
        self.reason == other.reason
            && match (&self.detail, &other.detail) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, Some(_)) | (Some(_), None) => false,
            }
    }
}

impl Eq for Refusal {}

impl From<String> for Refusal {
    fn from(reason: String) -> Self {
        Refusal::new(reason)
    }
}

impl From<&str> for Refusal {
    fn from(reason: &str) -> Self {
        Refusal::new(reason)
    }
}

/// The mediator's answer to a connection request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetVerdict {
    /// Connect to exactly `address` (on the requested port) and report the
    /// close against `ticket`. The mediator decided on this address: a name
    /// is resolved once, by the mediator, before its decision, and the proxy
    /// never resolves it again (DNS cannot change the destination between
    /// the decision and the connection).
    Allow {
        /// Ticket for the close report.
        ticket: Ticket,
        /// The decided destination address.
        address: IpAddr,
    },
    /// Refuse (the proxy answers HTTP 403 with the reason).
    Deny(Refusal),
}

impl NetVerdict {
    /// True when the verdict allows the connection.
    pub fn is_allow(&self) -> bool {
        matches!(self, NetVerdict::Allow { .. })
    }
}

/// The mediator's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead; report the close (or the change's outcome) against this ticket.
    Allow(Ticket),
    /// Refuse (the sandbox returns EACCES / HTTP 403).
    Deny(Refusal),
}

impl Verdict {
    /// True when the verdict allows the access.
    pub fn is_allow(&self) -> bool {
        matches!(self, Verdict::Allow(_))
    }
}

/// What happened on an allowed file handle, reported when it closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCloseReport {
    /// The ticket from the `Allow` that opened the handle.
    pub ticket: Ticket,
    /// Workspace-relative path.
    pub path: String,
    /// Bytes read through the handle.
    pub bytes_read: u64,
    /// Bytes written through the handle.
    pub bytes_written: u64,
    /// SHA-256 of the file's contents after the last write, when it was written.
    pub sha256_after_write: Option<[u8; 32]>,
}

/// How a one-shot change (mkdir, unlink, rmdir, rename, link, symlink,
/// setattr) that the mediator allowed came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeOutcome {
    /// The change was made.
    Done,
    /// The file system refused or failed it with this errno (`EEXIST`, …).
    Failed(i32),
    /// Not attempted: another access the same operation needed was refused
    /// (a rename whose target was denied after its source was allowed).
    Abandoned,
}

/// The outcome of one allowed one-shot change, reported right after the
/// sandbox performed (or gave up) the operation. Operations that ask for
/// several accesses (rename, link) report once per ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileChangeReport {
    /// The ticket from the `Allow` for this access.
    pub ticket: Ticket,
    /// The operation.
    pub op: FileOp,
    /// How it came out.
    pub outcome: ChangeOutcome,
    /// SHA-256 of the file's whole contents after a change of contents that
    /// was made (a truncate or extension through `setattr`); `None` for
    /// changes that leave contents alone, and when the re-hash failed.
    pub sha256_after: Option<[u8; 32]>,
}

impl FileOp {
    /// Whether an allowed request for this op is a one-shot change whose
    /// outcome the sandbox reports with [`Mediator::file_changed`] (the
    /// others are handles, reported when they close, or name lookups and
    /// listings, which report nothing).
    pub fn is_change(self) -> bool {
        match self {
            FileOp::Mkdir
            | FileOp::Unlink
            | FileOp::Rmdir
            | FileOp::Rename
            | FileOp::Link
            | FileOp::Symlink
            | FileOp::SetAttr => true,
            FileOp::Lookup | FileOp::ReadDir | FileOp::Open | FileOp::Create | FileOp::Exec => {
                false
            }
        }
    }
}

/// What happened on an allowed connection, reported when it closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetCloseReport {
    /// The ticket from the `Allow` that opened the connection.
    pub ticket: Ticket,
    /// Bytes sent from the sandbox to the destination.
    pub bytes_out: u64,
    /// Bytes received from the destination.
    pub bytes_in: u64,
    /// How long the connection was open.
    pub duration: Duration,
    /// `None` on a clean close, otherwise why it ended.
    pub error: Option<String>,
}

/// A network attempt the sandbox itself refused, before any policy could
/// be asked: the only way out of the sandbox is the egress proxy, so a
/// direct connection or a socket of another kind can never be allowed;
/// it is reported so that the attempt is on the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetAttempt {
    /// What was tried.
    pub kind: NetAttemptKind,
    /// Who tried.
    pub requester: Requester,
}

/// What a refused network attempt was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetAttemptKind {
    /// `connect(2)` (or a TCP Fast Open send) to an address other than
    /// the egress proxy's.
    Connect(std::net::SocketAddr),
    /// `socket(2)` of a family or type the sandbox does not allow (UDP,
    /// raw, packet, …): `family` and `socket_type` as the program passed them.
    Socket {
        /// `AF_*`.
        family: i32,
        /// `SOCK_*` (flags removed).
        socket_type: i32,
    },
}

impl NetAttemptKind {
    /// The transport as a scheme name (`tcp`, `udp`, `raw`, `packet`, …).
    pub fn transport(&self) -> String {
        match self {
            NetAttemptKind::Connect(_) => "tcp".into(),
            NetAttemptKind::Socket {
                family,
                socket_type,
            } => match (*family, *socket_type) {
                (libc::AF_INET | libc::AF_INET6, libc::SOCK_DGRAM) => "udp".into(),
                (libc::AF_INET | libc::AF_INET6, libc::SOCK_RAW) => "raw".into(),
                (libc::AF_INET | libc::AF_INET6, libc::SOCK_SEQPACKET) => "sctp".into(),
                (libc::AF_PACKET, _) => "packet".into(),
                (libc::AF_VSOCK, _) => "vsock".into(),
                (libc::AF_BLUETOOTH, _) => "bluetooth".into(),
                (libc::AF_CAN, _) => "can".into(),
                (libc::AF_XDP, _) => "xdp".into(),
                (f, t) => format!("family-{f}-type-{t}"),
            },
        }
    }

    /// For people: what was tried.
    pub fn describe(&self) -> String {
        match self {
            NetAttemptKind::Connect(a) => format!("a direct TCP connection to {a}"),
            NetAttemptKind::Socket { .. } => {
                format!("a {} socket", self.transport())
            }
        }
    }
}

/// The policy-and-audit hook every sandbox effect passes through.
pub trait Mediator: Send + Sync + fmt::Debug {
    /// Decide one file access. Must not return `Allow` before the effect may happen.
    fn file_access(&self, req: &FileRequest) -> Verdict;
    /// An allowed file handle was closed.
    fn file_closed(&self, report: &FileCloseReport);
    /// An allowed one-shot change was made, failed, or was given up
    /// ([`FileOp::is_change`]). Called on the file-server thread right after
    /// the operation, before its reply goes back to the sandboxed process.
    ///
    /// The default does nothing, for mediators that record no intent for
    /// changes (test doubles). A mediator that does (the runtime's gate)
    /// records the result here; one that forwards to another must forward
    /// this too.
    fn file_changed(&self, report: &FileChangeReport) {
        let _ = report;
    }
    /// The sandbox refused a file access on its own, before or instead of
    /// asking [`Mediator::file_access`] (a name that cannot be put to
    /// policy, an escape, a device node, a privileged mode, the write
    /// quota…: see [`RefusalRule`](crate::RefusalRule)). Called before the
    /// refusal reaches the program. The runtime records it as a denial;
    /// the returned [`Refusal`] goes back to a file tool's caller.
    ///
    /// The default records nothing (test doubles); a mediator that
    /// forwards to another must forward this too.
    fn file_refused(&self, refusal: &crate::FileRefusal) -> Refusal {
        Refusal::new(refusal.reason())
    }
    /// Decide one outbound connection: canonicalise the host, decide, and
    /// name the address the proxy must connect to.
    fn net_connect(&self, req: &NetRequest) -> NetVerdict;
    /// An allowed connection was closed.
    fn net_closed(&self, report: &NetCloseReport);
    /// The sandbox refused a network attempt by itself (no policy can
    /// allow it; see [`NetAttempt`]); record it. The program gets EACCES
    /// whatever this does.
    ///
    /// The default does nothing, for test doubles; the runtime's gate
    /// records a refusal, and a mediator that forwards must forward this.
    fn net_refused(&self, attempt: &NetAttempt) {
        let _ = attempt;
    }
}
