//! read, stat, list.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

use super::{ToolError, WorkspaceTools};
use crate::exec::Truncation;
use crate::{policy_path, FileAccess, FileOp, RefusalRule};

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
    /// Canonical workspace-relative path (`.` for the root).
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
    /// The entry's name, made printable ([`crate::printable_path`]).
    pub name: String,
    /// Kind of object (symlinks are reported, not followed).
    pub kind: EntryKind,
    /// Size in bytes.
    pub size: u64,
}

impl WorkspaceTools {
    /// Read a regular file, keeping at most `limit` bytes. A hard-linked
    /// file is decided under each of its names.
    pub fn read(&self, rel: &str, limit: usize) -> Result<ReadOutput, ToolError> {
        let (access, op) = (FileAccess::Read, FileOp::Open);
        let p = self.resolve(access, op, rel)?;
        if p.is_empty() {
            return Err(self.refused(access, op, rel, RefusalRule::NotRegular, "a directory"));
        }
        let (id, meta) = self.regular(access, op, &p)?;
        let names = self.names(access, op, &p, &meta)?;
        let mut tickets = Vec::with_capacity(names.len());
        for n in &names {
            match self.ask(access, op, n) {
                Ok(t) => tickets.push((t, n.clone())),
                Err(e) => {
                    for (t, n) in tickets {
                        self.closed(t, &n, 0, 0, None);
                    }
                    return Err(e);
                }
            }
        }
        let result = self.open_read(op, &p, id).and_then(|f| {
            let size = f.metadata().map_err(|e| ToolError::io(&p, e))?.len();
            let mut content = Vec::new();
            let cap = u64::try_from(limit).unwrap_or(u64::MAX);
            f.take(cap)
                .read_to_end(&mut content)
                .map_err(|e| ToolError::io(&p, e))?;
            let truncation = if size > content.len() as u64 {
                Truncation::Truncated { total_bytes: size }
            } else {
                Truncation::Complete
            };
            Ok(ReadOutput {
                path: p.clone(),
                content,
                truncation,
            })
        });
        let n = result.as_ref().map_or(0, |r| r.content.len() as u64);
        for (t, name) in tickets {
            self.closed(t, &name, n, 0, None);
        }
        result
    }

    /// Metadata of a file or directory (the root is `""`, `.` or `./`).
    pub fn stat(&self, rel: &str) -> Result<FileInfo, ToolError> {
        let p = self.resolve(FileAccess::Read, FileOp::Lookup, rel)?;
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
            path: policy_path(&p).to_owned(),
            kind: EntryKind::of(m.file_type()),
            size: m.len(),
            modified: m.modified().ok().map(|t| t.into_std()),
            mode: m.permissions().mode(),
        })
    }

    /// List a directory (sorted by name; the root is `""`, `.` or `./`).
    /// Names that are not UTF-8 or hold control or invisible formatting
    /// characters are listed escaped ([`crate::printable_path`]).
    pub fn list(&self, rel: &str) -> Result<Vec<DirEntryInfo>, ToolError> {
        let p = self.resolve(FileAccess::List, FileOp::ReadDir, rel)?;
        let ticket = self.ask(FileAccess::List, FileOp::ReadDir, &p)?;
        let result = self.list_unmediated(&p);
        self.closed(ticket, &p, 0, 0, None);
        Ok(result?
            .into_iter()
            .map(|e| DirEntryInfo {
                name: crate::printable_path(e.name.as_bytes()),
                kind: e.kind,
                size: e.size,
            })
            .collect())
    }

    /// Read a directory the mediator already allowed: names as they are.
    pub(super) fn list_unmediated(&self, p: &str) -> Result<Vec<RawEntry>, ToolError> {
        let rd = if p.is_empty() {
            self.dir.entries()
        } else {
            self.dir.read_dir(p)
        }
        .map_err(|e| ToolError::io(p, e))?;
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| ToolError::io(p, e))?;
            let name = entry.file_name();
            let ft = entry.file_type().map_err(|e| ToolError::io(p, e))?;
            let size = if ft.is_file() {
                entry.metadata().map(|m| m.len()).unwrap_or(0)
            } else {
                0
            };
            out.push(RawEntry {
                name,
                kind: EntryKind::of(ft),
                size,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// A directory entry with its name as the file system has it.
pub(super) struct RawEntry {
    pub name: std::ffi::OsString,
    pub kind: EntryKind,
    pub size: u64,
}
