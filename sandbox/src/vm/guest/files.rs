//! The agent's file requests, done through a `cap-std` `Dir` handle on the
//! granted folder (the virtio-fs workspace mount). The handle refuses every
//! path that leads out of the folder (absolute paths, `..`, symbolic links
//! pointing out) before anything is accessed; what stays inside reaches the
//! host through virtio-fs, where the Mediator decides and logs each access.

use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use cap_std::fs::{
    Dir, DirBuilder, DirBuilderExt, FileType, MetadataExt, OpenOptions, OpenOptionsExt,
};

use super::Sender;
use crate::vm::protocol::{
    Bytes, Create, FsData, FsEntry, FsError, FsErrorKind, FsKind, FsListing, FsOp, FsOutcome,
    FsReply, FsStat, FsWritten, GuestMsg, Links, Listing, Parents, RemoveWhat, WriteAt,
};

/// The folders granted to the agent: today the workspace, when mounted.
pub(crate) struct Granted {
    workspace: Option<Dir>,
}

impl Granted {
    /// Open the workspace mount at `path` (the agent's only use of ambient
    /// authority for file requests), or nothing when it is not mounted.
    pub fn open(path: Option<&str>) -> Result<Granted, String> {
        let workspace = match path {
            Some(p) => Some(
                Dir::open_ambient_dir(p, cap_std::ambient_authority())
                    .map_err(|e| format!("open {p}: {e}"))?,
            ),
            None => None,
        };
        Ok(Granted { workspace })
    }

    /// No folder granted.
    pub fn none() -> Granted {
        Granted { workspace: None }
    }
}

/// Do `op` on a worker thread and answer `id` through `tx`.
pub(crate) fn spawn(id: u64, op: FsOp, granted: Arc<Granted>, tx: Sender) {
    let tx2 = tx.clone();
    let job = Box::new(move || {
        let outcome = match &granted.workspace {
            Some(dir) => perform(dir, &op),
            None => FsOutcome::Err(FsError::new(
                FsErrorKind::NoWorkspace,
                "no workspace is mounted in the guest",
            )),
        };
        answer(&tx2, id, outcome);
    });
    if let Err(e) = super::workers::run(job) {
        answer(&tx, id, FsOutcome::Err(FsError::from_io(&e)));
    }
}

/// Send the answer; one too large for a frame becomes a `TooLarge` error.
fn answer(tx: &Sender, id: u64, outcome: FsOutcome) {
    if let Err(e) = tx.try_send(&GuestMsg::FsDone { id, outcome }) {
        if e.kind() == io::ErrorKind::InvalidInput {
            let outcome = FsOutcome::Err(FsError::new(
                FsErrorKind::TooLarge,
                "the answer does not fit in a frame",
            ));
            tx.send(&GuestMsg::FsDone { id, outcome });
        }
    }
}

/// Check and do one operation relative to `dir`.
pub(crate) fn perform(dir: &Dir, op: &FsOp) -> FsOutcome {
    match op.check().and_then(|()| run(dir, op)) {
        Ok(reply) => FsOutcome::Ok(reply),
        Err(e) => FsOutcome::Err(e),
    }
}

/// `""` names the folder itself.
fn rel(path: &str) -> &str {
    if path.is_empty() {
        "."
    } else {
        path
    }
}

fn io_err(e: io::Error) -> FsError {
    FsError::from_io(&e)
}

fn kind_of(ft: FileType) -> FsKind {
    if ft.is_symlink() {
        FsKind::Symlink
    } else if ft.is_dir() {
        FsKind::Dir
    } else if ft.is_file() {
        FsKind::File
    } else {
        FsKind::Other
    }
}

fn run(dir: &Dir, op: &FsOp) -> Result<FsReply, FsError> {
    match op {
        FsOp::Read { path, offset, len } => read(dir, rel(path), *offset, *len),
        FsOp::Write {
            path,
            data,
            at,
            create,
            mode,
        } => write(dir, path, &data.0, *at, *create, *mode),
        FsOp::List { path, max_entries } => list(dir, rel(path), *max_entries),
        FsOp::Stat { path, links } => {
            let m = match links {
                Links::Follow => dir.metadata(rel(path)),
                Links::NoFollow => dir.symlink_metadata(rel(path)),
            }
            .map_err(io_err)?;
            Ok(FsReply::Stat(FsStat {
                kind: kind_of(m.file_type()),
                size: m.len(),
                mode: m.mode() & 0o7777,
                mtime_s: m.mtime(),
                mtime_ns: m.mtime_nsec(),
            }))
        }
        FsOp::Mkdir {
            path,
            parents,
            mode,
        } => {
            let mut b = DirBuilder::new();
            b.recursive(*parents == Parents::Create).mode(*mode);
            dir.create_dir_with(path, &b).map_err(io_err)?;
            Ok(FsReply::Done)
        }
        FsOp::Remove { path, what } => {
            match what {
                RemoveWhat::File => dir.remove_file(path),
                RemoveWhat::EmptyDir => dir.remove_dir(path),
                RemoveWhat::Tree => dir.remove_dir_all(path),
            }
            .map_err(io_err)?;
            Ok(FsReply::Done)
        }
        FsOp::Rename { from, to } => {
            dir.rename(from, dir, to).map_err(io_err)?;
            Ok(FsReply::Done)
        }
    }
}

/// Open flags that make opening anything safe: a FIFO without a writer,
/// or a device, never blocks the opener, and no terminal becomes ours.
const SAFE_OPEN: i32 = libc::O_NONBLOCK | libc::O_NOCTTY;

/// The opened `file` must be a regular file.
fn regular(file: &std::fs::File) -> Result<std::fs::Metadata, FsError> {
    let meta = file.metadata().map_err(io_err)?;
    if meta.is_dir() {
        return Err(io_err(io::Error::from_raw_os_error(libc::EISDIR)));
    }
    if !meta.is_file() {
        return Err(FsError::new(
            FsErrorKind::NotAFile,
            "not a regular file (a FIFO, socket or device)",
        ));
    }
    Ok(meta)
}

fn read(dir: &Dir, path: &str, offset: u64, len: u64) -> Result<FsReply, FsError> {
    let mut options = OpenOptions::new();
    options.read(true).custom_flags(SAFE_OPEN);
    let file = dir.open_with(path, &options).map_err(io_err)?.into_std();
    let size = regular(&file)?.len();
    // `len` is capped by `check`; never allocate more than the file holds.
    let want = len.min(size.saturating_sub(offset));
    let mut buf = vec![0u8; usize::try_from(want).unwrap_or(0)];
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    buf.truncate(got);
    Ok(FsReply::Data(FsData {
        data: Bytes(buf),
        size,
    }))
}

fn write(
    dir: &Dir,
    path: &str,
    data: &[u8],
    at: WriteAt,
    create: Create,
    mode: u32,
) -> Result<FsReply, FsError> {
    let mut options = OpenOptions::new();
    options.write(true).mode(mode).custom_flags(SAFE_OPEN);
    match create {
        Create::Existing => {}
        Create::IfMissing => {
            options.create(true);
        }
        Create::New => {
            options.create_new(true);
        }
    }
    match at {
        // Truncated only once the file is known to be a regular file.
        WriteAt::Truncate | WriteAt::Offset(_) => {}
        WriteAt::Append => {
            options.append(true);
        }
    }
    let mut file = dir.open_with(path, &options).map_err(io_err)?.into_std();
    regular(&file)?;
    if at == WriteAt::Truncate {
        file.set_len(0).map_err(io_err)?;
    }
    match at {
        WriteAt::Offset(o) => file.write_all_at(data, o),
        WriteAt::Truncate | WriteAt::Append => file.write_all(data),
    }
    .map_err(io_err)?;
    let size = file.metadata().map_err(io_err)?.len();
    Ok(FsReply::Written(FsWritten {
        bytes: data.len() as u64,
        size,
    }))
}

fn list(dir: &Dir, path: &str, max_entries: u32) -> Result<FsReply, FsError> {
    let mut entries = Vec::new();
    let mut non_utf8 = 0;
    let mut listing = Listing::Complete;
    for entry in dir.read_dir(path).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let Ok(name) = entry.file_name().into_string() else {
            non_utf8 += 1;
            continue;
        };
        // Stop reading at the cap: a huge directory costs the agent no more.
        if entries.len() >= max_entries as usize {
            listing = Listing::Truncated;
            break;
        }
        let kind = entry.file_type().map(kind_of).unwrap_or(FsKind::Other);
        entries.push(FsEntry { name, kind });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(FsReply::Entries(FsListing {
        entries,
        listing,
        non_utf8,
    }))
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
