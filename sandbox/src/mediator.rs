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
//! runtime: the intent record is durably committed).

use std::fmt;
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
    /// Workspace-relative path, `/`-separated, no `.`/`..`, no leading `/`;
    /// the empty string is the workspace root.
    pub path: String,
    /// Who asked.
    pub requester: Requester,
}

/// A request to open one outbound connection through the egress proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRequest {
    /// Host as the client named it (the runtime canonicalises it before deciding).
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

/// The mediator's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead; report the close against this ticket.
    Allow(Ticket),
    /// Refuse with this reason (the sandbox returns EACCES / HTTP 403).
    Deny(String),
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

/// The policy-and-audit hook every sandbox effect passes through.
pub trait Mediator: Send + Sync + fmt::Debug {
    /// Decide one file access. Must not return `Allow` before the effect may happen.
    fn file_access(&self, req: &FileRequest) -> Verdict;
    /// An allowed file handle was closed.
    fn file_closed(&self, report: &FileCloseReport);
    /// Decide one outbound connection.
    fn net_connect(&self, req: &NetRequest) -> Verdict;
    /// An allowed connection was closed.
    fn net_closed(&self, report: &NetCloseReport);
}
