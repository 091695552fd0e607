//! The agent's file tools: read, write, edit, list, glob, search and stat on
//! the workspace, through a `cap-std` directory handle.
//!
//! The handle makes escapes impossible by construction (absolute paths,
//! `..`, symlinks pointing out, `/proc/self/root` tricks all fail inside
//! cap-std); on top of that every path is normalised and resolved to its
//! canonical workspace-relative form *before* the Mediator is asked, so the
//! policy judges the file that is really touched. Every access asks the
//! Mediator first and reports the close (bytes, SHA-256 of written content).
//!
//! What the tools refuse on their own — an absolute path, `..`, control
//! characters, a symbolic link leading out, a file that is not a regular
//! file (a FIFO would block a read forever), a hard-linked file whose names
//! are not all in the workspace — is reported to the Mediator
//! ([`Mediator::file_refused`]) and comes back as [`ToolError::Refused`]:
//! the runtime logs it as a denial like any other. The workspace root is
//! `""`, `.` or `./`, and policy is asked about it as `.`.

mod error;
mod open;
pub mod path;
mod read;
mod search;
mod write;

use std::path::Path;
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::Dir;

pub use self::error::ToolError;
pub use self::read::{DirEntryInfo, EntryKind, FileInfo, ReadOutput};
pub use self::search::SearchHit;
pub use self::write::{Creation, WriteOutput};
use crate::fs::Owner;
use crate::{
    policy_path, FileAccess, FileCloseReport, FileOp, FileRefusal, FileRequest, Mediator,
    RefusalRule, Requester, Ticket, Verdict,
};

/// File tools bound to one workspace.
#[derive(Debug)]
pub struct WorkspaceTools {
    dir: Arc<Dir>,
    owner: Owner,
    mediator: Arc<dyn Mediator>,
    requester: Requester,
}

impl WorkspaceTools {
    /// Open the workspace folder `root` (the only ambient-authority use).
    pub fn open(
        root: &Path,
        mediator: Arc<dyn Mediator>,
        requester: Requester,
    ) -> Result<WorkspaceTools, ToolError> {
        let io = |e| ToolError::Io {
            path: root.display().to_string(),
            source: e,
        };
        let dir = Dir::open_ambient_dir(root, ambient_authority()).map_err(io)?;
        let owner = Owner::of(root).map_err(io)?;
        Ok(WorkspaceTools {
            dir: Arc::new(dir),
            owner,
            mediator,
            requester,
        })
    }

    /// The same workspace (the same directory handle), with accesses asked
    /// of `mediator` on behalf of `requester`: the runtime gives each tool
    /// call a mediator of its own, so its entries name the call.
    pub fn with_mediator(
        &self,
        mediator: Arc<dyn Mediator>,
        requester: Requester,
    ) -> WorkspaceTools {
        WorkspaceTools {
            dir: self.dir.clone(),
            owner: self.owner,
            mediator,
            requester,
        }
    }

    /// Ask the mediator; `Err(Denied)` unless it allows.
    fn ask(&self, access: FileAccess, op: FileOp, path: &str) -> Result<Ticket, ToolError> {
        let req = FileRequest {
            access,
            op,
            path: policy_path(path).to_string(),
            requester: self.requester.clone(),
        };
        match self.mediator.file_access(&req) {
            Verdict::Allow(t) => Ok(t),
            Verdict::Deny(refusal) => Err(ToolError::Denied {
                action: access.action(),
                path: policy_path(path).to_string(),
                refusal,
            }),
        }
    }

    /// Refuse `access` by `op` on `path` (as given) by `rule`: reported to
    /// the mediator, which logs it.
    fn refused(
        &self,
        access: FileAccess,
        op: FileOp,
        path: &str,
        rule: RefusalRule,
        detail: &str,
    ) -> ToolError {
        self.refused_raw(access, op, path.as_bytes(), rule, detail)
    }

    /// [`WorkspaceTools::refused`] for a path as raw bytes.
    fn refused_raw(
        &self,
        access: FileAccess,
        op: FileOp,
        path: &[u8],
        rule: RefusalRule,
        detail: &str,
    ) -> ToolError {
        let path = if path.is_empty() { b"." } else { path };
        let r =
            FileRefusal::new(access, op, path, rule, self.requester.clone()).with_detail(detail);
        let refusal = self.mediator.file_refused(&r);
        ToolError::Refused {
            action: access.action(),
            path: r.path,
            rule,
            refusal,
        }
    }

    /// Report a closed handle.
    fn closed(&self, ticket: Ticket, path: &str, read: u64, written: u64, sha: Option<[u8; 32]>) {
        self.mediator.file_closed(&FileCloseReport {
            ticket,
            path: policy_path(path).to_string(),
            bytes_read: read,
            bytes_written: written,
            sha256_after_write: sha,
        });
    }

    /// Canonical workspace-relative form of an existing path, for `access`
    /// by `op` (symlinks resolved inside the workspace; escapes refused).
    fn resolve(&self, access: FileAccess, op: FileOp, rel: &str) -> Result<String, ToolError> {
        let norm = path::normalize(rel).map_err(|rule| self.refused(access, op, rel, rule, ""))?;
        if norm.is_empty() {
            return Ok(norm);
        }
        let canon = match self.dir.canonicalize(&norm) {
            Ok(c) => c,
            // cap-std reports an attempted escape as PermissionDenied.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(self.refused(access, op, rel, RefusalRule::SymlinkEscape, ""))
            }
            Err(e) => return Err(ToolError::io(&norm, e)),
        };
        let Some(s) = canon.to_str() else {
            return Err(self.refused(access, op, rel, RefusalRule::NotUtf8, "after symlinks"));
        };
        path::normalize(s).map_err(|rule| self.refused(access, op, rel, rule, "after symlinks"))
    }

    /// Canonical form of a path that may not exist yet: the parent must
    /// exist; an existing final symlink is followed (inside the workspace).
    fn resolve_for_create(&self, op: FileOp, rel: &str) -> Result<String, ToolError> {
        let access = FileAccess::Write;
        let norm = path::normalize(rel).map_err(|rule| self.refused(access, op, rel, rule, ""))?;
        let (parent, name) = match norm.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => ("", norm.as_str()),
        };
        if name.is_empty() {
            return Err(self.refused(
                access,
                op,
                rel,
                RefusalRule::NotRegular,
                "the workspace root is a directory",
            ));
        }
        match self.dir.symlink_metadata(&norm) {
            Ok(m) if m.file_type().is_symlink() => {
                self.resolve(access, op, &norm).map_err(|e| match e {
                    // A link to nothing: where it points is not the
                    // workspace's to create.
                    ToolError::NotFound(_) => {
                        self.refused(access, op, rel, RefusalRule::SymlinkEscape, "dangling")
                    }
                    e => e,
                })
            }
            _ => {
                let parent = self.resolve(access, op, parent)?;
                Ok(path::join(&parent, name))
            }
        }
    }
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}
