//! [`GuestFiles`]: file requests to the guest agent, which does them
//! through a `cap-std` `Dir` handle on its virtio-fs workspace mount. Paths
//! leading out of the workspace (absolute, `..`, symbolic links pointing
//! out) are refused in the guest by `cap-std`, and FIFOs, sockets and
//! devices without blocking; each such refusal is reported to the sandbox's
//! Mediator ([`Mediator::file_refused`](crate::Mediator::file_refused)),
//! which logs it. What stays inside reaches the host over virtio-fs, where
//! the Mediator decides and logs each access as for any command in the
//! guest (names policy cannot see are refused and reported there).

use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use super::channel::ExecEvent;
use super::protocol::{
    Bytes, Create, FsData, FsError, FsErrorKind, FsListing, FsOp, FsOutcome, FsReply, FsStat,
    FsWritten, HostMsg, Links, Parents, RemoveWhat, WriteAt,
};
use super::sandbox::VmSandbox;
use crate::error::SandboxError;
use crate::{FileAccess, FileOp, FileRefusal, RefusalRule};

/// How long a file request may take before the VM counts as lost.
const FS_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a file request failed.
#[derive(Debug, thiserror::Error)]
pub enum GuestFsError {
    /// The guest did the request and it failed (or `cap-std` refused it).
    #[error("in the guest: {0}")]
    Guest(FsError),
    /// The request exceeds a cap or is malformed; it was not sent.
    #[error("not sent: {0}")]
    Invalid(FsError),
    /// The guest's answer does not fit the request.
    #[error("guest protocol violation: {0}")]
    Protocol(String),
    /// The VM did not answer.
    #[error(transparent)]
    Lost(#[from] SandboxError),
}

impl GuestFsError {
    /// The typed error, when the guest or the caps produced one.
    pub fn fs_error(&self) -> Option<&FsError> {
        match self {
            GuestFsError::Guest(e) | GuestFsError::Invalid(e) => Some(e),
            GuestFsError::Protocol(_) | GuestFsError::Lost(_) => None,
        }
    }
}

/// How a write goes (see [`GuestFiles::write`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Where in the file.
    pub at: WriteAt,
    /// Whether the file may or must be created.
    pub create: Create,
    /// Permission bits of a created file (before the guest's umask).
    pub mode: u32,
}

impl Default for WriteOptions {
    /// Replace the contents, creating the file (mode 0644) when missing.
    fn default() -> Self {
        WriteOptions {
            at: WriteAt::Truncate,
            create: Create::IfMissing,
            mode: 0o644,
        }
    }
}

/// File requests to one VM's agent (from [`VmSandbox::files`]). Paths are
/// relative to the workspace; `""` is the workspace itself.
#[derive(Debug, Clone, Copy)]
pub struct GuestFiles<'a> {
    vm: &'a VmSandbox,
}

impl VmSandbox {
    /// File requests done by the agent in the guest.
    pub fn files(&self) -> GuestFiles<'_> {
        GuestFiles { vm: self }
    }
}

impl GuestFiles<'_> {
    /// Send `op` and wait for its answer, checked against the request.
    pub fn call(&self, op: FsOp) -> Result<FsReply, GuestFsError> {
        op.check().map_err(GuestFsError::Invalid)?;
        let id = self.vm.next_id();
        let channel = &self.vm.channel;
        let rx = channel.register(id);
        let answer = channel
            .send(&HostMsg::Fs { id, op: op.clone() })
            .map_err(|e| GuestFsError::Lost(e.into()))
            .and_then(|()| match rx.recv_timeout(FS_TIMEOUT) {
                Ok(ExecEvent::Fs(outcome)) => Ok(outcome),
                Ok(other) => Err(GuestFsError::Protocol(format!(
                    "unexpected {other:?} for a file request"
                ))),
                Err(RecvTimeoutError::Timeout) => Err(GuestFsError::Lost(SandboxError::Lost(
                    "no answer to a file request".into(),
                ))),
                Err(RecvTimeoutError::Disconnected) => Err(GuestFsError::Lost(SandboxError::Lost(
                    "the VM's agent went away".into(),
                ))),
            });
        channel.unregister(id);
        match answer? {
            FsOutcome::Ok(reply) => {
                op.check_reply(&reply).map_err(GuestFsError::Protocol)?;
                Ok(reply)
            }
            FsOutcome::Err(e) => {
                self.report(&op, &e);
                Err(GuestFsError::Guest(e))
            }
        }
    }

    /// Read at most `len` bytes (≤ `MAX_FS_READ`) from `offset`.
    pub fn read(&self, path: &str, offset: u64, len: u64) -> Result<FsData, GuestFsError> {
        let op = FsOp::Read {
            path: path.into(),
            offset,
            len,
        };
        match self.call(op)? {
            FsReply::Data(d) => Ok(d),
            other => Err(unexpected(&other)),
        }
    }

    /// Write `data` (≤ `MAX_FS_WRITE` bytes).
    pub fn write(
        &self,
        path: &str,
        data: &[u8],
        options: WriteOptions,
    ) -> Result<FsWritten, GuestFsError> {
        let op = FsOp::Write {
            path: path.into(),
            data: Bytes(data.to_vec()),
            at: options.at,
            create: options.create,
            mode: options.mode,
        };
        match self.call(op)? {
            FsReply::Written(w) => Ok(w),
            other => Err(unexpected(&other)),
        }
    }

    /// List a directory, at most `max_entries` (≤ `MAX_FS_ENTRIES`).
    pub fn list(&self, path: &str, max_entries: u32) -> Result<FsListing, GuestFsError> {
        let op = FsOp::List {
            path: path.into(),
            max_entries,
        };
        match self.call(op)? {
            FsReply::Entries(l) => Ok(l),
            other => Err(unexpected(&other)),
        }
    }

    /// Describe a path.
    pub fn stat(&self, path: &str, links: Links) -> Result<FsStat, GuestFsError> {
        let op = FsOp::Stat {
            path: path.into(),
            links,
        };
        match self.call(op)? {
            FsReply::Stat(s) => Ok(s),
            other => Err(unexpected(&other)),
        }
    }

    /// Create a directory.
    pub fn mkdir(&self, path: &str, parents: Parents, mode: u32) -> Result<(), GuestFsError> {
        self.done(FsOp::Mkdir {
            path: path.into(),
            parents,
            mode,
        })
    }

    /// Remove a path.
    pub fn remove(&self, path: &str, what: RemoveWhat) -> Result<(), GuestFsError> {
        self.done(FsOp::Remove {
            path: path.into(),
            what,
        })
    }

    /// Rename within the workspace.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), GuestFsError> {
        self.done(FsOp::Rename {
            from: from.into(),
            to: to.into(),
        })
    }

    fn done(&self, op: FsOp) -> Result<(), GuestFsError> {
        match self.call(op)? {
            FsReply::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// A refusal the guest made without asking the host's layer (an
    /// escape `cap-std` caught, a FIFO): report it to the sandbox's
    /// mediator, with the rule the path breaks (`..`, absolute) or, for a
    /// clean path, the symbolic link that led out.
    fn report(&self, op: &FsOp, e: &FsError) {
        let (access, fop) = accesses(op);
        let named = paths(op);
        let Some(first) = named.first().copied() else {
            return;
        };
        let (path, rule) = match e.kind {
            FsErrorKind::Escape => named
                .iter()
                .find_map(|p| crate::tools::path::normalize(p).err().map(|r| (*p, r)))
                .unwrap_or((first, RefusalRule::SymlinkEscape)),
            FsErrorKind::NotAFile => (first, RefusalRule::NotRegular),
            _ => return,
        };
        let shown = if path.is_empty() { "." } else { path };
        let r = FileRefusal::new(
            access,
            fop,
            shown.as_bytes(),
            rule,
            crate::Requester::default(),
        )
        .with_detail("refused in the guest");
        self.vm.mediator.file_refused(&r);
    }
}

/// The access and operation a request amounts to (for refusals).
fn accesses(op: &FsOp) -> (FileAccess, FileOp) {
    match op {
        FsOp::Read { .. } => (FileAccess::Read, FileOp::Open),
        FsOp::Write { .. } => (FileAccess::Write, FileOp::Open),
        FsOp::List { .. } => (FileAccess::List, FileOp::ReadDir),
        FsOp::Stat { .. } => (FileAccess::Read, FileOp::Lookup),
        FsOp::Mkdir { .. } => (FileAccess::Write, FileOp::Mkdir),
        FsOp::Remove { .. } => (FileAccess::Delete, FileOp::Unlink),
        FsOp::Rename { .. } => (FileAccess::Delete, FileOp::Rename),
    }
}

/// The workspace paths a request names.
fn paths(op: &FsOp) -> Vec<&str> {
    match op {
        FsOp::Read { path, .. }
        | FsOp::Write { path, .. }
        | FsOp::List { path, .. }
        | FsOp::Stat { path, .. }
        | FsOp::Mkdir { path, .. }
        | FsOp::Remove { path, .. } => vec![path.as_str()],
        FsOp::Rename { from, to } => vec![from.as_str(), to.as_str()],
    }
}

/// `check_reply` already matched kinds; this only guards the typed wrappers.
fn unexpected(reply: &FsReply) -> GuestFsError {
    GuestFsError::Protocol(format!("unexpected answer {reply:?}"))
}
