//! Download: decided as `file.read` by the person, the file opened without
//! following a link and checked on its descriptor, its content streamed in
//! chunks; the result entry (bytes sent, SHA-256 of exactly those bytes,
//! and whether the client took them all) is written when the stream ends.

use std::io::Read as _;
use std::path::Path;

use stele_audit::{Outcome, Status};
use stele_runtime::gate::Permit;
use stele_sandbox::{FileAccess, FileOp, RefusalRule};
use tokio::sync::mpsc;

use super::access::{Ending, PersonGate};
use super::walk::{self, Unreachable};
use super::{abandon, denied, unreachable, FilesError};

/// Bytes read and sent at a time.
const CHUNK: usize = 64 * 1024;

/// One piece of a download, or the error that ended it.
pub type Chunk = Result<Vec<u8>, std::io::Error>;

/// A file ready to stream: its size and the receiving end of its chunks.
#[derive(Debug)]
pub struct Download {
    /// Its size when opened.
    pub size: u64,
    /// The request's session in the log.
    pub session: String,
    /// The intent entry the download is recorded under.
    pub intent: u64,
    /// The chunks.
    pub chunks: mpsc::Receiver<Chunk>,
}

/// Decide and open `raw` in the workspace at `root` for `pg`'s person, and
/// start streaming it (blocking: call from a blocking task).
pub fn start(pg: PersonGate, root: &Path, raw: &str) -> Result<Download, FilesError> {
    let (access, op) = (FileAccess::Read, FileOp::Open);
    let rel = match walk::check(raw) {
        Ok(r) if r.is_empty() => {
            let u = Unreachable::Refused(RefusalRule::NotRegular, "a directory".into());
            return Err(unreachable(&pg, access, op, raw, u));
        }
        Ok(r) => r,
        Err(u) => return Err(unreachable(&pg, access, op, raw, u)),
    };
    // Policy first: a person who may not read a path learns nothing of it.
    let permit = match pg.authorize(access, op, &rel)? {
        Ok(p) => p,
        Err(d) => return Err(denied(&pg, d)),
    };
    let opened = walk::open_root(root)
        .and_then(|r| walk::locate(&r, &rel))
        .and_then(|l| match walk::look(&l)? {
            None => Err(Unreachable::Missing(rel.clone())),
            Some(st) if !walk::is_regular(&st) => Err(walk::not_regular(&st)),
            // Its other names could be outside the workspace, or ones
            // policy was not asked about.
            Some(st) if st.st_nlink > 1 => Err(Unreachable::Refused(
                RefusalRule::HardLinkUnresolved,
                format!("{} hard links", st.st_nlink),
            )),
            Some(st) => walk::open_read(&l, &st).map(|f| (f, st.st_size as u64)),
        });
    let (file, size) = match opened {
        Ok(x) => x,
        Err(u) => return Err(abandon(&pg, permit, access, op, &rel, u)),
    };
    let (tx, rx) = mpsc::channel(4);
    let session = pg.session_id().to_string();
    let intent = permit.intent_seq();
    std::thread::Builder::new()
        .name("stele-download".into())
        .spawn(move || pump(&pg, permit, file, &tx))
        .map_err(|e| FilesError::Io("starting a download thread".into(), e))?;
    Ok(Download {
        size,
        session,
        intent,
        chunks: rx,
    })
}

/// Read, hash and send until the end or until the client goes; then the result entry.
fn pump(pg: &PersonGate, permit: Permit, mut file: std::fs::File, tx: &mpsc::Sender<Chunk>) {
    let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
    let mut sent = 0u64;
    let mut buf = vec![0u8; CHUNK];
    let failure = loop {
        match file.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => {
                let piece = buf.get(..n).unwrap_or_default().to_vec();
                sha.update(&piece);
                if tx.blocking_send(Ok(piece)).is_err() {
                    break Some(format!("the client went away after {sent} bytes"));
                }
                sent += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let why = format!("reading failed after {sent} bytes: {e}");
                let _ = tx.blocking_send(Err(e));
                break Some(why);
            }
        }
    };
    let mut o = Outcome::status(if failure.is_some() {
        Status::Error
    } else {
        Status::Ok
    });
    o.bytes_in = Some(sent);
    o.detail = failure.clone();
    let data = serde_json::json!({
        "op": "download",
        // Of the bytes that reached the stream, in order.
        "sha256": hex::encode(sha.finish()),
    });
    let ending = match pg.complete(permit, o, data) {
        Ok(_) if failure.is_none() => Ending::Done,
        Ok(_) => Ending::Failed,
        Err(e) => {
            tracing::error!("recording a download's result: {e}");
            Ending::Failed
        }
    };
    pg.end(ending, failure);
}

/// The stream a response body is made of.
pub fn stream(d: Download) -> impl futures_util::Stream<Item = Chunk> + Send {
    tokio_stream::wrappers::ReceiverStream::new(d.chunks)
}
