//! File requests over the guest channel: the host asks the agent to read,
//! write, list, stat, create, remove or rename a path of the granted
//! workspace; the agent does it through a `cap-std` `Dir` handle on its
//! virtio-fs mount and answers with a typed result or a typed error.
//!
//! Both sides check the caps below before acting on a message, so neither
//! a hostile host nor a hostile guest can make the other allocate more than
//! a frame ([`MAX_FRAME`](super::protocol::MAX_FRAME)) or one read's worth
//! of memory, or return more than was asked for.

use serde::{Deserialize, Serialize};

use super::protocol::Bytes;

/// Largest read per request, in bytes.
pub const MAX_FS_READ: u64 = 1 << 20;
/// Largest write per request, in bytes.
pub const MAX_FS_WRITE: usize = 1 << 20;
/// Most entries per listing (names are at most 255 bytes each, so even
/// fully escaped a listing fits in a frame).
pub const MAX_FS_ENTRIES: u32 = 4096;
/// Longest path, in bytes (the kernel's `PATH_MAX`).
pub const MAX_FS_PATH: usize = 4096;
/// Longest error message, in bytes.
pub const MAX_FS_MESSAGE: usize = 1024;
/// Permission bits a request may carry.
pub const MODE_MASK: u32 = 0o7777;

/// Where a write goes in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum WriteAt {
    /// Replace the contents (`O_TRUNC`).
    Truncate,
    /// After the current end (`O_APPEND`).
    Append,
    /// At this byte offset; the rest of the file is kept.
    Offset(u64),
}

/// Whether a write may or must create the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Create {
    /// The file must exist.
    Existing,
    /// Created when missing.
    IfMissing,
    /// The file must not exist yet (`O_EXCL`).
    New,
}

/// Whether a final symbolic link is followed (inside the workspace only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Links {
    /// Describe what the link points to.
    Follow,
    /// Describe the link itself.
    NoFollow,
}

/// Whether `mkdir` creates missing parents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parents {
    /// Only the last component; the parent must exist.
    No,
    /// Missing parents too; an existing directory is no error.
    Create,
}

/// What `remove` may remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoveWhat {
    /// A file or symbolic link.
    File,
    /// An empty directory.
    EmptyDir,
    /// A directory and everything below it.
    Tree,
}

/// One file operation. Paths are relative to the granted workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FsOp {
    /// Read at most `len` bytes (≤ [`MAX_FS_READ`]) from `offset`.
    Read {
        /// The file.
        path: String,
        /// First byte.
        offset: u64,
        /// Most bytes wanted.
        len: u64,
    },
    /// Write `data` (≤ [`MAX_FS_WRITE`] bytes).
    Write {
        /// The file.
        path: String,
        /// The bytes.
        data: Bytes,
        /// Where in the file.
        at: WriteAt,
        /// Whether the file may or must be created.
        create: Create,
        /// Permission bits of a created file (before the guest's umask).
        mode: u32,
    },
    /// List a directory (at most `max_entries` ≤ [`MAX_FS_ENTRIES`]).
    List {
        /// The directory (`""` is the workspace).
        path: String,
        /// Most entries wanted.
        max_entries: u32,
    },
    /// Describe a path.
    Stat {
        /// The path (`""` is the workspace).
        path: String,
        /// Whether a final symbolic link is followed.
        links: Links,
    },
    /// Create a directory.
    Mkdir {
        /// The directory.
        path: String,
        /// Whether missing parents are created.
        parents: Parents,
        /// Permission bits (before the guest's umask).
        mode: u32,
    },
    /// Remove a path.
    Remove {
        /// The path.
        path: String,
        /// What it must be.
        what: RemoveWhat,
    },
    /// Rename within the workspace.
    Rename {
        /// The old name.
        from: String,
        /// The new name (replaced if it exists and the kinds allow it).
        to: String,
    },
}

/// What kind of file a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (not followed).
    Symlink,
    /// Anything else (fifo, socket, device).
    Other,
}

/// Bytes read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsData {
    /// The bytes (fewer than asked at the end of the file).
    pub data: Bytes,
    /// The file's size when it was read.
    pub size: u64,
}

/// Bytes written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsWritten {
    /// Bytes written.
    pub bytes: u64,
    /// The file's size afterwards.
    pub size: u64,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsEntry {
    /// Its name.
    pub name: String,
    /// Its kind (links are not followed).
    pub kind: FsKind,
}

/// Whether a listing holds every entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Listing {
    /// Every entry is there.
    Complete,
    /// The directory has more entries than were asked for.
    Truncated,
}

/// A directory listing, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsListing {
    /// The entries.
    pub entries: Vec<FsEntry>,
    /// Whether that is all of them.
    pub listing: Listing,
    /// Entries left out because their names are not UTF-8.
    pub non_utf8: u64,
}

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsStat {
    /// Its kind.
    pub kind: FsKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Last modification, seconds since the epoch.
    pub mtime_s: i64,
    /// Nanoseconds of the last modification.
    pub mtime_ns: i64,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "r", rename_all = "snake_case")]
pub enum FsReply {
    /// Answer to `Read`.
    Data(FsData),
    /// Answer to `Write`.
    Written(FsWritten),
    /// Answer to `List`.
    Entries(FsListing),
    /// Answer to `Stat`.
    Stat(FsStat),
    /// Answer to `Mkdir`, `Remove` and `Rename`.
    Done,
}

/// Why a file operation failed, errno-like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsErrorKind {
    /// `ENOENT`.
    NotFound,
    /// `EACCES`/`EPERM`: among others, the host's Mediator denied it.
    PermissionDenied,
    /// The path leads outside the workspace (absolute, `..`, a symbolic
    /// link pointing out): refused by `cap-std` before any access.
    Escape,
    /// `EEXIST`.
    AlreadyExists,
    /// `ENOTDIR`.
    NotADirectory,
    /// `EISDIR`.
    IsADirectory,
    /// `ENOTEMPTY`.
    DirectoryNotEmpty,
    /// Not a regular file where one is needed (a FIFO, socket or device:
    /// reading or writing it could block or act on open). Refused without
    /// blocking.
    NotAFile,
    /// The request is malformed (a NUL byte, a bad mode, …).
    InvalidRequest,
    /// The request or its answer exceeds a cap.
    TooLarge,
    /// The guest has no workspace mounted.
    NoWorkspace,
    /// Any other I/O error (see `errno`).
    Io,
}

/// A typed failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct FsError {
    /// What kind of failure.
    pub kind: FsErrorKind,
    /// The errno, when the failure is one.
    pub errno: Option<i32>,
    /// A human-readable description (≤ [`MAX_FS_MESSAGE`] bytes).
    pub message: String,
}

impl FsError {
    /// An error of `kind` without an errno; the message is cut to the cap.
    pub fn new(kind: FsErrorKind, message: impl Into<String>) -> FsError {
        FsError {
            kind,
            errno: None,
            message: cut(message.into()),
        }
    }

    /// The error an I/O failure stands for. `cap-std` reports escapes as
    /// `PermissionDenied` without an errno; the kernel's denials carry one.
    pub fn from_io(e: &std::io::Error) -> FsError {
        let errno = e.raw_os_error();
        let kind = match errno {
            Some(libc::ENOENT) => FsErrorKind::NotFound,
            Some(libc::EACCES | libc::EPERM) => FsErrorKind::PermissionDenied,
            Some(libc::EEXIST) => FsErrorKind::AlreadyExists,
            Some(libc::ENOTDIR) => FsErrorKind::NotADirectory,
            Some(libc::EISDIR) => FsErrorKind::IsADirectory,
            Some(libc::ENOTEMPTY) => FsErrorKind::DirectoryNotEmpty,
            Some(libc::EINVAL | libc::ENAMETOOLONG) => FsErrorKind::InvalidRequest,
            Some(_) => FsErrorKind::Io,
            None => match e.kind() {
                std::io::ErrorKind::PermissionDenied => FsErrorKind::Escape,
                std::io::ErrorKind::NotFound => FsErrorKind::NotFound,
                std::io::ErrorKind::AlreadyExists => FsErrorKind::AlreadyExists,
                std::io::ErrorKind::InvalidInput => FsErrorKind::InvalidRequest,
                _ => FsErrorKind::Io,
            },
        };
        FsError {
            kind,
            errno,
            message: cut(e.to_string()),
        }
    }
}

/// `s` cut to [`MAX_FS_MESSAGE`] bytes at a character boundary.
fn cut(mut s: String) -> String {
    if s.len() > MAX_FS_MESSAGE {
        let mut end = MAX_FS_MESSAGE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The result of one file operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "value", rename_all = "snake_case")]
pub enum FsOutcome {
    /// It worked.
    Ok(FsReply),
    /// It failed.
    Err(FsError),
}

fn check_path(path: &str) -> Result<(), FsError> {
    if path.len() > MAX_FS_PATH {
        return Err(FsError::new(
            FsErrorKind::TooLarge,
            format!("path of {} bytes exceeds {MAX_FS_PATH}", path.len()),
        ));
    }
    if path.contains('\0') {
        return Err(FsError::new(
            FsErrorKind::InvalidRequest,
            "path contains a NUL byte",
        ));
    }
    Ok(())
}

fn check_mode(mode: u32) -> Result<(), FsError> {
    if mode & !MODE_MASK != 0 {
        return Err(FsError::new(
            FsErrorKind::InvalidRequest,
            format!("mode {mode:#o} has bits beyond {MODE_MASK:#o}"),
        ));
    }
    Ok(())
}

impl FsOp {
    /// Check the caps (both sides do, before acting on a request). Escapes
    /// are not judged here: `cap-std` refuses them in the guest.
    pub fn check(&self) -> Result<(), FsError> {
        match self {
            FsOp::Read { path, len, .. } => {
                check_path(path)?;
                if *len > MAX_FS_READ {
                    return Err(FsError::new(
                        FsErrorKind::TooLarge,
                        format!("read of {len} bytes exceeds {MAX_FS_READ}"),
                    ));
                }
                Ok(())
            }
            FsOp::Write {
                path, data, mode, ..
            } => {
                check_path(path)?;
                check_mode(*mode)?;
                if data.0.len() > MAX_FS_WRITE {
                    return Err(FsError::new(
                        FsErrorKind::TooLarge,
                        format!("write of {} bytes exceeds {MAX_FS_WRITE}", data.0.len()),
                    ));
                }
                Ok(())
            }
            FsOp::List { path, max_entries } => {
                check_path(path)?;
                if *max_entries > MAX_FS_ENTRIES {
                    return Err(FsError::new(
                        FsErrorKind::TooLarge,
                        format!("listing of {max_entries} entries exceeds {MAX_FS_ENTRIES}"),
                    ));
                }
                Ok(())
            }
            FsOp::Stat { path, .. } | FsOp::Remove { path, .. } => check_path(path),
            FsOp::Mkdir { path, mode, .. } => {
                check_path(path)?;
                check_mode(*mode)
            }
            FsOp::Rename { from, to } => {
                check_path(from)?;
                check_path(to)
            }
        }
    }

    /// Check that `reply` answers this request within its caps (the host
    /// does, so a hostile guest cannot pass off more than was asked for).
    pub fn check_reply(&self, reply: &FsReply) -> Result<(), String> {
        match (self, reply) {
            (FsOp::Read { len, .. }, FsReply::Data(d)) => {
                if d.data.0.len() as u64 > *len {
                    return Err(format!("{} bytes for a read of {len}", d.data.0.len()));
                }
                Ok(())
            }
            (FsOp::Write { data, .. }, FsReply::Written(w)) => {
                if w.bytes > data.0.len() as u64 {
                    return Err(format!("{} bytes written of {}", w.bytes, data.0.len()));
                }
                Ok(())
            }
            (FsOp::List { max_entries, .. }, FsReply::Entries(l)) => {
                if l.entries.len() > *max_entries as usize {
                    return Err(format!("{} entries of {max_entries}", l.entries.len()));
                }
                if let Some(e) = l.entries.iter().find(|e| {
                    e.name.is_empty()
                        || e.name.contains('/')
                        || e.name.contains('\0')
                        || e.name.len() > 255
                }) {
                    return Err(format!("bad entry name {:?}", e.name));
                }
                Ok(())
            }
            (FsOp::Stat { .. }, FsReply::Stat(_)) => Ok(()),
            (FsOp::Mkdir { .. } | FsOp::Remove { .. } | FsOp::Rename { .. }, FsReply::Done) => {
                Ok(())
            }
            (op, reply) => Err(format!("{reply:?} does not answer {op:?}")),
        }
    }
}

#[cfg(test)]
#[path = "fsproto_tests.rs"]
mod tests;
