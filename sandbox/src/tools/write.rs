//! write and edit.

use std::io::{Read, Write};

use cap_std::fs::OpenOptions;

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
    pub fn write(&self, rel: &str, content: &[u8]) -> Result<WriteOutput, ToolError> {
        let p = self.resolve_for_create(rel)?;
        let exists = match self.dir.symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {
                return Err(ToolError::WrongKind {
                    path: p,
                    expected: "file",
                })
            }
            Ok(_) => true,
            Err(_) => false,
        };
        let op = if exists { FileOp::Open } else { FileOp::Create };
        let ticket = self.ask(FileAccess::Write, op, &p)?;
        let result = (|| {
            let mut f = self
                .dir
                .open_with(
                    &p,
                    OpenOptions::new().write(true).create(true).truncate(true),
                )
                .map_err(|e| ToolError::io(&p, e))?;
            f.write_all(content).map_err(|e| ToolError::io(&p, e))?;
            f.sync_all().map_err(|e| ToolError::io(&p, e))?;
            Ok(())
        })();
        let sha = sha256(content);
        match result {
            Ok(()) => {
                self.closed(ticket, &p, 0, content.len() as u64, Some(sha));
                Ok(WriteOutput {
                    path: p,
                    bytes_written: content.len() as u64,
                    sha256: sha,
                    creation: if exists {
                        Creation::Replaced
                    } else {
                        Creation::Created
                    },
                })
            }
            Err(e) => {
                self.closed(ticket, &p, 0, 0, None);
                Err(e)
            }
        }
    }

    /// Replace the single occurrence of `old` with `new` in a text file.
    pub fn edit(&self, rel: &str, old: &str, new: &str) -> Result<WriteOutput, ToolError> {
        let p = self.resolve(rel)?;
        if old.is_empty() {
            return Err(ToolError::NoMatch(p));
        }
        let ticket = self.ask(FileAccess::Read, FileOp::Open, &p)?;
        let mut text = String::new();
        let read = self
            .dir
            .open(&p)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map_err(|e| ToolError::io(&p, e));
        self.closed(ticket, &p, text.len() as u64, 0, None);
        read?;
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
