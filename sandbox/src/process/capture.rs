//! Standard streams of the sandboxed command: stdin fed from memory, stdout
//! and stderr captured up to a cap. Past the cap the stream is still drained
//! (so the command never blocks on a full pipe) and only counted.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::thread::JoinHandle;

use crate::exec::{Captured, Truncation};

/// A stream being captured on a background thread.
pub(crate) struct Capture {
    handle: JoinHandle<std::io::Result<Captured>>,
}

impl Capture {
    /// Start draining `fd`, keeping at most `cap` bytes.
    pub(crate) fn start(fd: OwnedFd, cap: usize) -> std::io::Result<Capture> {
        let handle = std::thread::Builder::new()
            .name("stele-capture".into())
            .spawn(move || drain(File::from(fd), cap))?;
        Ok(Capture { handle })
    }

    /// Wait for end of stream (every writer gone) and return what was kept.
    pub(crate) fn finish(self) -> std::io::Result<Captured> {
        self.handle
            .join()
            .map_err(|_| std::io::Error::other("capture thread panicked"))?
    }
}

fn drain(mut f: File, cap: usize) -> std::io::Result<Captured> {
    let mut kept = Vec::new();
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        let room = cap.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    let truncation = if total > kept.len() as u64 {
        Truncation::Truncated { total_bytes: total }
    } else {
        Truncation::Complete
    };
    Ok(Captured {
        bytes: kept,
        truncation,
    })
}

/// Feed `data` to the command's stdin on a background thread, then close it.
/// A command that exits without reading simply makes the write fail (EPIPE).
pub(crate) fn feed_stdin(fd: OwnedFd, data: Vec<u8>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("stele-stdin".into())
        .spawn(move || {
            let mut f = File::from(fd);
            let _ = f.write_all(&data);
        })
}
