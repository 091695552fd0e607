//! Upload: decided as `file.write` by the person, received into a new
//! temporary file in the target's own directory — unnamed (`O_TMPFILE`:
//! nothing is left behind if the server dies), or where the file system
//! has none, named and created exclusively — and only when the whole body
//! has arrived, within `server.max_upload_bytes`, synced, given a name and
//! renamed over the target — so the target is either the old file or the
//! whole new one. A body over the
//! limit stops being read at the limit (413), its temporary file removed,
//! the refusal recorded. The result entry names the bytes written and the
//! SHA-256 of the content now in the file.

use std::os::fd::{AsRawFd as _, OwnedFd};
use std::path::Path;

use axum::body::Bytes;
use futures_util::{Stream, StreamExt as _};
use rustix::fs::{AtFlags, Mode, OFlags};
use stele_audit::{Outcome, Status};
use stele_runtime::gate::Permit;
use stele_sandbox::fs::{Owner, WORKSPACE_UMASK};
use stele_sandbox::{FileAccess, FileOp, RefusalRule};
use tokio::io::AsyncWriteExt as _;

use super::access::{Ending, PersonGate};
use super::walk::{self, Unreachable};
use super::{abandon, denied, unreachable, FilesError};

/// Temporary files of uploads in progress start with this (listings hide them).
pub const TEMP_PREFIX: &str = ".stele-upload-";

/// What an upload did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Uploaded {
    /// The workspace path written.
    pub path: String,
    /// Bytes written.
    pub bytes: u64,
    /// SHA-256 of the content now in the file.
    pub sha256: String,
    /// Whether the file is new.
    pub created: bool,
    /// The request's session in the log.
    pub session: String,
    /// The result entry.
    pub entry: u64,
}

/// The temporary file of an upload.
#[derive(Debug)]
enum Temp {
    /// Without a name until the body is whole (`O_TMPFILE`).
    Unnamed,
    /// Named in the target's folder.
    Named(String),
    /// Renamed over the target: nothing left to remove.
    Placed,
}

fn temp_name() -> String {
    format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple())
}

/// Open a temporary file in `parent`: unnamed where the file system
/// allows, else named (exclusively, no link followed).
fn open_temp(parent: &OwnedFd) -> Result<(Temp, OwnedFd), rustix::io::Errno> {
    let private = Mode::from_raw_mode(0o600);
    match rustix::fs::openat(
        parent,
        ".",
        OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
        private,
    ) {
        Ok(fd) => Ok((Temp::Unnamed, fd)),
        Err(_) => {
            let name = temp_name();
            let fd = rustix::fs::openat(
                parent,
                name.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                private,
            )?;
            Ok((Temp::Named(name), fd))
        }
    }
}

/// Give the unnamed file `file` the name `name` in `parent`.
fn link_unnamed(file: &std::fs::File, parent: &OwnedFd, name: &str) -> std::io::Result<()> {
    // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc/self/fd does not.
    rustix::fs::linkat(file, "", parent, name, AtFlags::EMPTY_PATH)
        .or_else(|_| {
            rustix::fs::linkat(
                rustix::fs::CWD,
                format!("/proc/self/fd/{}", file.as_raw_fd()).as_str(),
                parent,
                name,
                AtFlags::SYMLINK_FOLLOW,
            )
        })
        .map_err(Into::into)
}

/// An upload under way: decided, its temporary file open.
#[derive(Debug)]
pub struct Receiving {
    pg: PersonGate,
    permit: Permit,
    parent: OwnedFd,
    temp: Temp,
    name: String,
    rel: String,
    created: bool,
    file: std::fs::File,
}

/// Refuse a body whose declared length is over `limit`, before reading any of it.
pub fn refuse_declared(pg: PersonGate, raw: &str, declared: u64, limit: u64) -> FilesError {
    let detail = format!("Content-Length {declared} over the limit of {limit} bytes");
    match pg.refuse_size(raw, &detail) {
        Ok(denial) => {
            pg.end(Ending::Refused, Some(detail));
            FilesError::Refused {
                status: axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                denial,
            }
        }
        Err(e) => {
            pg.end(Ending::Failed, Some(e.to_string()));
            FilesError::Gate(e)
        }
    }
}

/// Decide the write of `raw` and open its temporary file (blocking).
pub fn begin(pg: PersonGate, root: &Path, raw: &str) -> Result<Receiving, FilesError> {
    let access = FileAccess::Write;
    let rel = match walk::check(raw) {
        Ok(r) if r.is_empty() => {
            let u = Unreachable::Refused(RefusalRule::NotRegular, "a directory".into());
            return Err(unreachable(&pg, access, FileOp::Create, raw, u));
        }
        Ok(r) => r,
        Err(u) => return Err(unreachable(&pg, access, FileOp::Create, raw, u)),
    };
    let permit = match pg.authorize(access, FileOp::Create, &rel)? {
        Ok(p) => p,
        Err(d) => return Err(denied(&pg, d)),
    };
    let opened = walk::open_root(root).and_then(|r| {
        let l = walk::locate(&r, &rel)?;
        let created = match walk::look(&l)? {
            None => true,
            Some(st) if !walk::is_regular(&st) => return Err(walk::not_regular(&st)),
            Some(st) if st.st_nlink > 1 => {
                return Err(Unreachable::Refused(
                    RefusalRule::HardLinkUnresolved,
                    format!("{} hard links", st.st_nlink),
                ))
            }
            Some(_) => false,
        };
        let (temp, fd) =
            open_temp(&l.parent).map_err(|e| Unreachable::Io(rel.clone(), e.into()))?;
        Ok((l, temp, created, std::fs::File::from(fd)))
    });
    match opened {
        Ok((l, temp, created, file)) => Ok(Receiving {
            pg,
            permit,
            parent: l.parent,
            temp,
            name: l.name,
            rel,
            created,
            file,
        }),
        Err(u) => Err(abandon(&pg, permit, access, FileOp::Create, raw, u)),
    }
}

/// How the body ended.
enum Received {
    /// All of it, this long, with this SHA-256.
    Whole(u64, [u8; 32]),
    /// More than the limit: reading stopped after this many bytes.
    TooLarge(u64),
    /// The body failed (client gone).
    Broken(u64, String),
}

/// Receive `body` into the upload, at most `limit` bytes, and finish it.
pub async fn receive<E: std::fmt::Display>(
    up: Receiving,
    body: impl Stream<Item = Result<Bytes, E>> + Unpin,
    limit: u64,
) -> Result<Uploaded, FilesError> {
    let mut body = body;
    let std_file = up
        .file
        .try_clone()
        .map_err(|e| FilesError::Io(up.rel.clone(), e))?;
    let mut file = tokio::fs::File::from_std(std_file);
    let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
    let mut n = 0u64;
    let received = loop {
        match body.next().await {
            None => {
                let d = sha.finish();
                let mut h = [0u8; 32];
                h.copy_from_slice(d.as_ref());
                break Received::Whole(n, h);
            }
            Some(Err(e)) => break Received::Broken(n, e.to_string()),
            Some(Ok(chunk)) => {
                let len = chunk.len() as u64;
                if n.saturating_add(len) > limit {
                    // Not written, and nothing more is read.
                    break Received::TooLarge(n.saturating_add(len));
                }
                if let Err(e) = file.write_all(&chunk).await {
                    break Received::Broken(n, format!("writing the temporary file: {e}"));
                }
                sha.update(&chunk);
                n += len;
            }
        }
    };
    if let Err(e) = file.flush().await {
        tracing::warn!("flushing an upload: {e}");
    }
    drop(file);
    tokio::task::spawn_blocking(move || up.finish(received, limit))
        .await
        .map_err(|e| FilesError::Io("finishing an upload".into(), std::io::Error::other(e)))?
}

impl Receiving {
    fn remove_temp(&self) {
        let temp = match &self.temp {
            Temp::Named(t) => t,
            // Unnamed: it goes when its descriptor closes.
            Temp::Unnamed | Temp::Placed => return,
        };
        if let Err(e) = rustix::fs::unlinkat(&self.parent, temp.as_str(), AtFlags::empty()) {
            tracing::error!(
                "removing the temporary file of an upload to {}: {e}",
                self.rel
            );
        }
    }

    /// Close the intent with `status` and `detail`, remove the temporary
    /// file; the session ends with `ending`.
    fn give_up(self, status: Status, bytes: u64, detail: String) -> Result<u64, FilesError> {
        self.remove_temp();
        let mut o = Outcome::status(status);
        o.bytes_out = Some(bytes);
        o.detail = Some(detail.clone());
        let r = self.pg.complete(
            self.permit,
            o,
            serde_json::json!({"op": "upload", "kept": false}),
        );
        let ending = match status {
            Status::Denied => Ending::Refused,
            Status::Ok | Status::Error | Status::Interrupted | Status::Timeout => Ending::Failed,
        };
        self.pg.end(ending, Some(detail));
        Ok(r?)
    }

    fn finish(self, received: Received, limit: u64) -> Result<Uploaded, FilesError> {
        match received {
            Received::Whole(n, sha) => self.commit(n, sha),
            Received::TooLarge(seen) => {
                let detail = format!("the body passed {limit} bytes (stopped reading at {seen})");
                let denial = self.pg.refuse_size(&self.rel, &detail);
                let pg_denial = match denial {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = self.give_up(Status::Error, 0, e.to_string());
                        return Err(FilesError::Gate(e));
                    }
                };
                self.give_up(Status::Denied, 0, detail)?;
                Err(FilesError::Refused {
                    status: axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    denial: pg_denial,
                })
            }
            Received::Broken(n, why) => {
                let detail = format!("the body ended after {n} bytes: {why}; nothing was kept");
                self.give_up(Status::Error, n, detail)?;
                Err(FilesError::Body(why))
            }
        }
    }

    /// Sync, set the mode and owner, name the file and rename it over the
    /// target.
    fn settle(&mut self) -> std::io::Result<()> {
        let mode = 0o666 & !WORKSPACE_UMASK;
        rustix::fs::fchmod(&self.file, Mode::from_raw_mode(mode))?;
        self.file.sync_all()?;
        // The workspace's owner owns what is written in it (stele may run as root).
        let st = rustix::fs::fstat(&self.parent)?;
        let owner = Owner {
            uid: st.st_uid,
            gid: st.st_gid,
        };
        let mine = rustix::fs::fstat(&self.file)?;
        let (uid, gid) = owner.give_away(mine.st_uid, mine.st_gid);
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::fchown(&self.file, uid, gid)?;
        }
        let named = match &self.temp {
            Temp::Named(t) => t.clone(),
            Temp::Unnamed => {
                let t = temp_name();
                link_unnamed(&self.file, &self.parent, &t)?;
                self.temp = Temp::Named(t.clone());
                t
            }
            Temp::Placed => return Ok(()),
        };
        // Replaces the name, whatever it is now; never writes through it.
        rustix::fs::renameat(
            &self.parent,
            named.as_str(),
            &self.parent,
            self.name.as_str(),
        )?;
        self.temp = Temp::Placed;
        rustix::fs::fsync(&self.parent)?;
        Ok(())
    }

    /// Settle the file and record the result.
    fn commit(mut self, n: u64, sha: [u8; 32]) -> Result<Uploaded, FilesError> {
        let done = self.settle();
        if let Err(e) = done {
            let rel = self.rel.clone();
            self.give_up(Status::Error, n, format!("not written: {e}"))?;
            return Err(FilesError::Io(rel, e));
        }
        let hex = hex::encode(sha);
        let mut o = Outcome::status(Status::Ok);
        o.bytes_out = Some(n);
        let data = serde_json::json!({
            "op": "upload",
            "created": self.created,
            "sha256_after_write": hex,
        });
        let session = self.pg.session_id().to_string();
        let entry = self.pg.complete(self.permit, o, data);
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                self.pg.end(Ending::Failed, Some(e.to_string()));
                return Err(FilesError::Gate(e));
            }
        };
        self.pg.end(Ending::Done, None);
        Ok(Uploaded {
            path: self.rel,
            bytes: n,
            sha256: hex,
            created: self.created,
            session,
            entry,
        })
    }
}
