//! Opening files for the tools without surprises: only regular files (a
//! FIFO or device would block a read, or act on open), never through a
//! final symbolic link, never blocking (`O_NONBLOCK`), and checked again on
//! the open descriptor (same file as the one decided, still regular), so a
//! swap between the check and the open is caught. A hard-linked file is
//! decided under every one of its names (see `fs/aliases.rs`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use cap_std::fs::{Metadata, MetadataExt as _, OpenOptions, OpenOptionsExt};

use super::{ToolError, WorkspaceTools};
use crate::fs::aliases;
use crate::fs::WORKSPACE_UMASK;
use crate::{FileAccess, FileOp, RefusalRule};

/// What a checked path is: its identity, to compare with the descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Identity {
    dev: u64,
    ino: u64,
}

fn kind_name(m: &Metadata) -> &'static str {
    let ft = m.file_type();
    if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else {
        use cap_std::fs::FileTypeExt;
        if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        }
    }
}

/// A file opened for writing by `write`, and whether it was created.
pub(super) struct Writable {
    pub file: std::fs::File,
    pub created: bool,
}

impl WorkspaceTools {
    /// `p` (canonical) must be a regular file: its identity, or the
    /// refusal (reported) for `access` by `op`.
    pub(super) fn regular(
        &self,
        access: FileAccess,
        op: FileOp,
        p: &str,
    ) -> Result<(Identity, Metadata), ToolError> {
        match self.dir.symlink_metadata(p) {
            Ok(m) if m.is_file() => Ok((
                Identity {
                    dev: m.dev(),
                    ino: m.ino(),
                },
                m,
            )),
            Ok(m) => Err(self.refused(access, op, p, RefusalRule::NotRegular, kind_name(&m))),
            Err(e) => Err(ToolError::io(p, e)),
        }
    }

    /// Every name `p` must be decided under: `p`, or all names of a
    /// hard-linked file, `p` first (refused when some are not in the
    /// workspace).
    pub(super) fn names(
        &self,
        access: FileAccess,
        op: FileOp,
        p: &str,
        meta: &Metadata,
    ) -> Result<Vec<String>, ToolError> {
        if meta.nlink() <= 1 {
            return Ok(vec![p.to_owned()]);
        }
        let root = self
            .dir
            .try_clone()
            .map_err(|e| ToolError::io(p, e))?
            .into_std_file();
        match aliases::all_names(&root, meta.dev(), meta.ino(), meta.nlink()) {
            Ok(mut names) => {
                // The name the tool was given is decided first.
                names.retain(|n| n != p);
                names.insert(0, p.to_owned());
                Ok(names)
            }
            Err(u) => Err(self.refused(
                access,
                op,
                p,
                RefusalRule::HardLinkUnresolved,
                &u.to_string(),
            )),
        }
    }

    /// Open the decided regular file `p` for reading: without blocking,
    /// without following a final link, and only if it is still `want`.
    pub(super) fn open_read(
        &self,
        op: FileOp,
        p: &str,
        want: Identity,
    ) -> Result<std::fs::File, ToolError> {
        let mut o = OpenOptions::new();
        o.read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY);
        let file = self
            .dir
            .open_with(p, &o)
            .map_err(|e| self.open_error(FileAccess::Read, op, p, e))?
            .into_std();
        self.same_file(FileAccess::Read, op, p, &file, want)?;
        Ok(file)
    }

    /// Open `p` for replacing its contents: the existing regular file
    /// `existing` (checked on the descriptor, setuid/setgid bits dropped),
    /// or a new one created with mode 0666 & !([`WORKSPACE_UMASK`] | the
    /// process umask) and given to the workspace's owner.
    pub(super) fn open_write(
        &self,
        op: FileOp,
        p: &str,
        existing: Option<Identity>,
    ) -> Result<Writable, ToolError> {
        let mut o = OpenOptions::new();
        o.write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY);
        if existing.is_none() {
            o.create_new(true).mode(0o666 & !WORKSPACE_UMASK);
        }
        let file = self
            .dir
            .open_with(p, &o)
            .map_err(|e| self.open_error(FileAccess::Write, op, p, e))?
            .into_std();
        match existing {
            Some(want) => {
                self.same_file(FileAccess::Write, op, p, &file, want)?;
                drop_setid(&file).map_err(|e| ToolError::io(p, e))?;
                file.set_len(0).map_err(|e| ToolError::io(p, e))?;
                Ok(Writable {
                    file,
                    created: false,
                })
            }
            None => {
                let m = file.metadata().map_err(|e| ToolError::io(p, e))?;
                let (uid, gid) = self.owner.give_away(m.uid(), m.gid());
                if uid.is_some() || gid.is_some() {
                    std::os::unix::fs::fchown(&file, uid, gid).map_err(|e| ToolError::io(p, e))?;
                }
                Ok(Writable {
                    file,
                    created: true,
                })
            }
        }
    }

    /// The descriptor must be the regular file that was checked.
    fn same_file(
        &self,
        access: FileAccess,
        op: FileOp,
        p: &str,
        file: &std::fs::File,
        want: Identity,
    ) -> Result<(), ToolError> {
        let m = file.metadata().map_err(|e| ToolError::io(p, e))?;
        if !m.is_file() {
            return Err(self.refused(access, op, p, RefusalRule::NotRegular, "replaced"));
        }
        if m.dev() != want.dev || m.ino() != want.ino {
            return Err(self.refused(
                access,
                op,
                p,
                RefusalRule::NotRegular,
                "replaced by another file after it was checked",
            ));
        }
        Ok(())
    }

    /// An open that failed: a final symbolic link put in place after the
    /// check is a refusal, like the escape it could be; the rest is I/O.
    fn open_error(&self, access: FileAccess, op: FileOp, p: &str, e: std::io::Error) -> ToolError {
        match e.raw_os_error() {
            Some(libc::ELOOP) => self.refused(access, op, p, RefusalRule::SymlinkEscape, "a link"),
            _ => ToolError::io(p, e),
        }
    }
}

/// Clear setuid/setgid bits of a file about to be rewritten (the tools run
/// with stele's rights, for which the kernel does not clear them).
fn drop_setid(file: &std::fs::File) -> std::io::Result<()> {
    let m = file.metadata()?;
    let mode = m.permissions().mode();
    let setid = libc::S_ISUID | libc::S_ISGID;
    if mode & setid != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777 & !setid))?;
    }
    Ok(())
}
