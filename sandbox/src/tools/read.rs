//! read, stat, list.

use std::io::Read;
use std::time::SystemTime;

use super::{ToolError, WorkspaceTools};
use crate::exec::Truncation;
use crate::{FileAccess, FileOp};

/// What kind of object a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed by `list`, `glob` or `search`).
    Symlink,
    /// Anything else (fifo, socket, device).
    Other,
}

impl EntryKind {
    fn of(ft: cap_std::fs::FileType) -> EntryKind {
        if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File
        } else {
            EntryKind::Other
        }
    }
}

/// The result of `read`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOutput {
    /// Canonical workspace-relative path that was read.
    pub path: String,
    /// The bytes read (at most the requested limit).
    pub content: Vec<u8>,
    /// Whether the file was longer than the limit.
    pub truncation: Truncation,
}

/// The result of `stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Canonical workspace-relative path.
    pub path: String,
    /// Kind of object.
    pub kind: EntryKind,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time, when available.
    pub modified: Option<SystemTime>,
    /// Unix permission bits.
    pub mode: u32,
}

/// One entry of `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntryInfo {
    /// The entry's name.
    pub name: String,
    /// Kind of object (symlinks are reported, not followed).
    pub kind: EntryKind,
    /// Size in bytes.
    pub size: u64,
}

impl WorkspaceTools {
    /// Read a file, keeping at most `limit` bytes.
    pub fn read(&self, rel: &str, limit: usize) -> Result<ReadOutput, ToolError> {
        let p = self.resolve(rel)?;
        let ticket = self.ask(FileAccess::Read, FileOp::Open, &p)?;
        let result = (|| {
            let f = self.dir.open(&p).map_err(|e| ToolError::io(&p, e))?;
            let meta = f.metadata().map_err(|e| ToolError::io(&p, e))?;
            if !meta.is_file() {
                return Err(ToolError::WrongKind {
                    path: p.clone(),
                    expected: "regular file",
                });
            }
            let mut content = Vec::new();
            let cap = u64::try_from(limit).unwrap_or(u64::MAX);
            f.take(cap)
                .read_to_end(&mut content)
                .map_err(|e| ToolError::io(&p, e))?;
            let truncation = if meta.len() > content.len() as u64 {
                Truncation::Truncated {
                    total_bytes: meta.len(),
                }
            } else {
                Truncation::Complete
            };
            Ok(ReadOutput {
                path: p.clone(),
                content,
                truncation,
            })
        })();
        let n = result.as_ref().map_or(0, |r| r.content.len() as u64);
        self.closed(ticket, &p, n, 0, None);
        result
    }

    /// Metadata of a file or directory.
    pub fn stat(&self, rel: &str) -> Result<FileInfo, ToolError> {
        let p = self.resolve(rel)?;
        let ticket = self.ask(FileAccess::Read, FileOp::Lookup, &p)?;
        let result = if p.is_empty() {
            self.dir.dir_metadata()
        } else {
            self.dir.metadata(&p)
        }
        .map_err(|e| ToolError::io(&p, e));
        self.closed(ticket, &p, 0, 0, None);
        let m = result?;
        use cap_std::fs::PermissionsExt;
        Ok(FileInfo {
            path: p,
            kind: EntryKind::of(m.file_type()),
            size: m.len(),
            modified: m.modified().ok().map(|t| t.into_std()),
            mode: m.permissions().mode(),
        })
    }

    /// List a directory (sorted by name).
    pub fn list(&self, rel: &str) -> Result<Vec<DirEntryInfo>, ToolError> {
        let p = self.resolve(rel)?;
        let ticket = self.ask(FileAccess::List, FileOp::ReadDir, &p)?;
        let result = self.list_unmediated(&p);
        self.closed(ticket, &p, 0, 0, None);
        result
    }

    /// Read a directory the mediator already allowed.
    pub(super) fn list_unmediated(&self, p: &str) -> Result<Vec<DirEntryInfo>, ToolError> {
        let rd = if p.is_empty() {
            self.dir.entries()
        } else {
            self.dir.read_dir(p)
        }
        .map_err(|e| ToolError::io(p, e))?;
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| ToolError::io(p, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let ft = entry.file_type().map_err(|e| ToolError::io(p, e))?;
            let size = if ft.is_file() {
                entry.metadata().map(|m| m.len()).unwrap_or(0)
            } else {
                0
            };
            out.push(DirEntryInfo {
                name,
                kind: EntryKind::of(ft),
                size,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}
