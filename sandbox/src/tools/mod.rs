//! The agent's file tools: read, write, edit, list, glob, search and stat on
//! the workspace, through a `cap-std` directory handle.
//!
//! The handle makes escapes impossible by construction (absolute paths,
//! `..`, symlinks pointing out, `/proc/self/root` tricks all fail inside
//! cap-std); on top of that every path is normalised and resolved to its
//! canonical workspace-relative form *before* the Mediator is asked, so the
//! policy judges the file that is really touched. Every access asks the
//! Mediator first and reports the close (bytes, SHA-256 of written content).

mod error;
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
use crate::{
    FileAccess, FileCloseReport, FileOp, FileRequest, Mediator, Requester, Ticket, Verdict,
};

/// File tools bound to one workspace.
#[derive(Debug)]
pub struct WorkspaceTools {
    dir: Arc<Dir>,
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
        let dir = Dir::open_ambient_dir(root, ambient_authority()).map_err(|e| ToolError::Io {
            path: root.display().to_string(),
            source: e,
        })?;
        Ok(WorkspaceTools {
            dir: Arc::new(dir),
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
            mediator,
            requester,
        }
    }

    /// Ask the mediator; `Err(Denied)` unless it allows.
    fn ask(&self, access: FileAccess, op: FileOp, path: &str) -> Result<Ticket, ToolError> {
        let req = FileRequest {
            access,
            op,
            path: path.to_string(),
            requester: self.requester.clone(),
        };
        match self.mediator.file_access(&req) {
            Verdict::Allow(t) => Ok(t),
            Verdict::Deny(refusal) => Err(ToolError::Denied {
                action: access.action(),
                path: path.to_string(),
                refusal,
            }),
        }
    }

    /// Report a closed handle.
    fn closed(&self, ticket: Ticket, path: &str, read: u64, written: u64, sha: Option<[u8; 32]>) {
        self.mediator.file_closed(&FileCloseReport {
            ticket,
            path: path.to_string(),
            bytes_read: read,
            bytes_written: written,
            sha256_after_write: sha,
        });
    }

    /// Canonical workspace-relative form of an existing path (symlinks
    /// resolved inside the workspace; escapes refused).
    fn resolve(&self, rel: &str) -> Result<String, ToolError> {
        let norm = path::normalize(rel)?;
        if norm.is_empty() {
            return Ok(norm);
        }
        let canon = self
            .dir
            .canonicalize(&norm)
            .map_err(|e| ToolError::io(&norm, e))?;
        let s = canon.to_str().ok_or_else(|| ToolError::InvalidPath {
            path: rel.to_string(),
            why: "not valid UTF-8",
        })?;
        let out = path::normalize(s)?;
        Ok(out)
    }

    /// Canonical form of a path that may not exist yet: the parent must
    /// exist; an existing final symlink is followed (inside the workspace).
    fn resolve_for_create(&self, rel: &str) -> Result<String, ToolError> {
        let norm = path::normalize(rel)?;
        let (parent, name) = match norm.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => ("", norm.as_str()),
        };
        if name.is_empty() {
            return Err(ToolError::InvalidPath {
                path: rel.to_string(),
                why: "names the workspace root",
            });
        }
        match self.dir.symlink_metadata(&norm) {
            Ok(m) if m.file_type().is_symlink() => self.resolve(&norm).map_err(|e| match e {
                ToolError::NotFound(p) => ToolError::Escape(p),
                e => e,
            }),
            _ => {
                let parent = self.resolve(parent)?;
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
