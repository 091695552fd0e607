//! Listing a workspace folder: decided as `file.list` by the person (one
//! decision entry), the folder reached without following a link, each
//! entry described without following it. Names policy could not be asked
//! about (not UTF-8, control characters) are counted, not shown; temporary
//! files of uploads under way are not shown.

use std::path::Path;

use rustix::fs::{AtFlags, FileType};
use stele_sandbox::{FileAccess, FileOp};

use super::access::{Ending, PersonGate};
use super::upload::TEMP_PREFIX;
use super::walk;
use super::{denied, unreachable, FilesError};

/// One entry of a folder.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// Its workspace path.
    pub path: String,
    /// `file`, `dir`, `symlink` or `other` (a FIFO, a socket, a device).
    pub kind: &'static str,
    /// Size in bytes (files only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Last change, seconds since the epoch.
    pub modified: i64,
}

/// A folder's entries.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Listing {
    /// The folder (`""` is the workspace root).
    pub path: String,
    /// Its entries, by name.
    pub entries: Vec<Entry>,
    /// Entries not shown because their names cannot be put to policy.
    pub unlisted: usize,
    /// The decision entry.
    pub entry: u64,
}

fn kind(ft: FileType) -> &'static str {
    match ft {
        FileType::RegularFile => "file",
        FileType::Directory => "dir",
        FileType::Symlink => "symlink",
        FileType::Fifo
        | FileType::Socket
        | FileType::CharacterDevice
        | FileType::BlockDevice
        | FileType::Unknown => "other",
    }
}

/// List folder `raw` of the workspace at `root` (blocking).
pub fn list(pg: PersonGate, root: &Path, raw: &str) -> Result<Listing, FilesError> {
    let (access, op) = (FileAccess::List, FileOp::ReadDir);
    let rel = walk::check(raw).map_err(|u| unreachable(&pg, access, op, raw, u))?;
    let entry = match pg.check_list(&rel)? {
        Ok(seq) => seq,
        Err(d) => return Err(denied(&pg, d)),
    };
    let dir = walk::open_root(root)
        .and_then(|r| walk::open_dir(&r, &rel))
        .map_err(|u| unreachable(&pg, access, op, raw, u))?;
    let io = |e: rustix::io::Errno| {
        let e = FilesError::Io(rel.clone(), e.into());
        pg.end(Ending::Failed, Some(e.to_string()));
        e
    };
    let mut entries = Vec::new();
    let mut unlisted = 0;
    for item in rustix::fs::Dir::read_from(&dir).map_err(io)? {
        let item = item.map_err(io)?;
        let raw_name = item.file_name().to_bytes();
        if raw_name == b"." || raw_name == b".." {
            continue;
        }
        let Ok(name) = std::str::from_utf8(raw_name) else {
            unlisted += 1;
            continue;
        };
        if name.chars().any(char::is_control) {
            unlisted += 1;
            continue;
        }
        if name.starts_with(TEMP_PREFIX) {
            continue;
        }
        // Gone since it was read: not listed.
        let Ok(st) = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        let ft = FileType::from_raw_mode(st.st_mode);
        entries.push(Entry {
            name: name.to_string(),
            path: stele_sandbox::tools::path::join(&rel, name),
            kind: kind(ft),
            size: (ft == FileType::RegularFile).then_some(st.st_size as u64),
            modified: st.st_mtime,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    pg.end(Ending::Done, None);
    Ok(Listing {
        path: rel,
        entries,
        unlisted,
        entry,
    })
}
