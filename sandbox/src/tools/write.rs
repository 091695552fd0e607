//! write and edit.

use std::io::Write;

use super::{sha256, ToolError, WorkspaceTools};
use crate::{FileAccess, FileOp};

/// Whether `write` created the file or replaced an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creation {
    /// The file did not exist.
    Created,
    /// An existing file's contents were replaced.
    Replaced,
}

/// The result of `write` and `edit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutput {
    /// Canonical workspace-relative path written.
    pub path: String,
    /// Bytes written.
    pub bytes_written: u64,
    /// SHA-256 of the file's new contents.
    pub sha256: [u8; 32],
    /// Created or replaced.
    pub creation: Creation,
}

impl WorkspaceTools {
    /// Write `content` to a file (created if missing, replaced otherwise).
    /// A new file gets mode 0666 less the workspace umask and belongs to
    /// the workspace's owner; an existing one must be a regular file (a
    /// hard-linked one is decided under each of its names) and loses any
    /// setuid/setgid bits.
    pub fn write(&self, rel: &str, content: &[u8]) -> Result<WriteOutput, ToolError> {
        let access = FileAccess::Write;
        let p = self.resolve_for_create(FileOp::Create, rel)?;
        let existing = match self.dir.symlink_metadata(&p) {
            Ok(_) => Some(self.regular(access, FileOp::Open, &p)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(ToolError::io(&p, e)),
        };
        let op = if existing.is_some() {
            FileOp::Open
        } else {
            FileOp::Create
        };
        let names = match &existing {
            Some((_, meta)) => self.names(access, op, &p, meta)?,
            None => vec![p.clone()],
        };
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
        let result = self
            .open_write(op, &p, existing.map(|(id, _)| id))
            .and_then(|mut w| {
                w.file
                    .write_all(content)
                    .and_then(|()| w.file.sync_all())
                    .map_err(|e| ToolError::io(&p, e))?;
                Ok(w.created)
            });
        let sha = sha256(content);
        match result {
            Ok(created) => {
                for (t, n) in tickets {
                    self.closed(t, &n, 0, content.len() as u64, Some(sha));
                }
                Ok(WriteOutput {
                    path: p,
                    bytes_written: content.len() as u64,
                    sha256: sha,
                    creation: if created {
                        Creation::Created
                    } else {
                        Creation::Replaced
                    },
                })
            }
            Err(e) => {
                for (t, n) in tickets {
                    self.closed(t, &n, 0, 0, None);
                }
                Err(e)
            }
        }
    }

    /// Replace the single occurrence of `old` with `new` in a text file.
    pub fn edit(&self, rel: &str, old: &str, new: &str) -> Result<WriteOutput, ToolError> {
        let read = self.read(rel, usize::MAX)?;
        let p = read.path;
        if old.is_empty() {
            return Err(ToolError::NoMatch(p));
        }
        let text = String::from_utf8(read.content).map_err(|e| ToolError::Io {
            path: p.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        let count = text.matches(old).count();
        match count {
            0 => return Err(ToolError::NoMatch(p)),
            1 => {}
            n => return Err(ToolError::NotUnique { path: p, count: n }),
        }
        let replaced = text.replacen(old, new, 1);
        self.write(&p, replaced.as_bytes()).map(|mut w| {
            w.creation = Creation::Replaced;
            w
        })
    }
}
