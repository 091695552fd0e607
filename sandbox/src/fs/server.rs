//! The /dev/fuse transport: threads that read requests from an
//! already-mounted FUSE connection and hand them to the mediated layer.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::{FuseChannel, FuseSession};

use super::layer::MediatedLayer;
use super::stats::RequestStats;
use super::FsError;

/// Default number of request-serving threads per connection.
///
/// Measured (fs_bench, 2 cores): every thread polls the same /dev/fuse fd, so
/// each request wakes all of them and all but one go back to sleep; with two
/// threads that herd cost ~20% more CPU per request than one thread. More
/// threads only pay off when sandboxed processes issue requests in parallel
/// *and* decisions are slow (a mediator that commits each decision to disk):
/// see [`MediatedFs::with_server_threads`](super::MediatedFs::with_server_threads).
pub(super) const DEFAULT_SERVER_THREADS: usize = 1;

/// A running file server; [`FsServer::stop`] ends it.
pub struct FsServer {
    session: Option<FuseSession>,
    threads: Vec<JoinHandle<()>>,
    placeholder: PathBuf,
    layer: Arc<MediatedLayer>,
    stats: Arc<RequestStats>,
}

impl std::fmt::Debug for FsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsServer")
            .field("threads", &self.threads.len())
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

impl FsServer {
    /// Start serving `fuse_dev` with `layer`.
    pub(super) fn start(
        layer: Arc<MediatedLayer>,
        fuse_dev: OwnedFd,
        threads_wanted: usize,
    ) -> Result<Self, FsError> {
        // Several threads poll the same fd; non-blocking reads let the losers
        // of a wake-up go back to polling instead of blocking where `stop`
        // cannot reach them.
        // SAFETY: fcntl on an fd we own, with F_GETFL/F_SETFL only.
        let flags = unsafe { libc::fcntl(fuse_dev.as_raw_fd(), libc::F_GETFL) };
        // SAFETY: as above.
        if flags < 0
            || unsafe {
                libc::fcntl(
                    fuse_dev.as_raw_fd(),
                    libc::F_SETFL,
                    flags | libc::O_NONBLOCK,
                )
            } < 0
        {
            return Err(FsError::Io(std::io::Error::last_os_error()));
        }

        // FuseSession wants a mount point, which it only uses to unmount on
        // drop. The real mount lives in the sandbox's mount namespace, so give
        // it a private empty directory where that unmount is a harmless EINVAL.
        let placeholder = placeholder_dir()?;
        let mut session = FuseSession::new(&placeholder, "stele-workspace", "", false)
            .map_err(|e| FsError::Session(e.to_string()))?;
        session.set_fuse_file(File::from(fuse_dev));

        let server = Arc::new(Server::new(layer.clone()));
        let stats = Arc::new(RequestStats::new());
        let threads_wanted = threads_wanted.max(1);
        let mut threads = Vec::with_capacity(threads_wanted);
        let mut me = FsServer {
            session: None,
            threads: Vec::new(),
            placeholder,
            layer,
            stats: stats.clone(),
        };
        for i in 0..threads_wanted {
            let channel = session
                .new_channel()
                .map_err(|e| FsError::Session(e.to_string()))?;
            let (server, stats) = (server.clone(), stats.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("stele-fuse-{i}"))
                .spawn(move || serve_channel(&server, &stats, channel));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    me.session = Some(session);
                    me.threads = threads;
                    let _ = me.shutdown();
                    return Err(FsError::Io(e));
                }
            }
        }
        me.session = Some(session);
        me.threads = threads;
        Ok(me)
    }

    /// The mediated layer being served (for diagnostics).
    pub fn layer(&self) -> &Arc<MediatedLayer> {
        &self.layer
    }

    /// FUSE requests served so far, per opcode name, busiest first.
    pub fn request_counts(&self) -> Vec<(String, u64)> {
        self.stats.snapshot()
    }

    /// Stop serving and join the server threads. Requests still pending in
    /// the kernel fail with ENOTCONN once the last fd of the connection closes.
    pub fn stop(mut self) -> Result<(), FsError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), FsError> {
        let mut first_err = None;
        if let Some(session) = self.session.as_ref() {
            if let Err(e) = session.wake() {
                first_err = Some(FsError::Session(e.to_string()));
            }
        }
        for t in self.threads.drain(..) {
            if t.join().is_err() && first_err.is_none() {
                first_err = Some(FsError::Thread);
            }
        }
        // No thread serves requests any more: account for handles the
        // kernel will never release, before the connection goes away.
        self.layer.close_all();
        // Dropping the session closes our fd; see `start` for the placeholder.
        drop(self.session.take());
        let _ = std::fs::remove_dir(&self.placeholder);
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for FsServer {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// One thread's request loop.
fn serve_channel(
    server: &Server<Arc<MediatedLayer>>,
    stats: &RequestStats,
    mut channel: FuseChannel,
) {
    loop {
        match channel.get_request() {
            Ok(Some((reader, writer))) => {
                if let Err(e) = server.handle_message(reader, writer.into(), None, Some(stats)) {
                    // EBADF while encoding the reply: the kernel shut the session down.
                    if matches!(e, fuse_backend_rs::Error::EncodeMessage(ref io) if io.raw_os_error() == Some(libc::EBADF))
                    {
                        return;
                    }
                }
            }
            // Woken by `stop`, or the file system was unmounted.
            Ok(None) => return,
            Err(_) => return,
        }
    }
}

/// A fresh private directory under the temp dir.
fn placeholder_dir() -> Result<PathBuf, FsError> {
    let mut template = std::env::temp_dir()
        .join("stele-fuse-XXXXXX")
        .into_os_string()
        .into_encoded_bytes();
    template.push(0);
    // SAFETY: `template` is a NUL-terminated, writable buffer ending in
    // "XXXXXX", as mkdtemp requires; it rewrites those bytes in place.
    let p = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
    if p.is_null() {
        return Err(FsError::Io(std::io::Error::last_os_error()));
    }
    template.pop();
    // SAFETY: the bytes came from an OsString plus ASCII replacements by mkdtemp.
    let os = unsafe { std::ffi::OsString::from_encoded_bytes_unchecked(template) };
    Ok(PathBuf::from(os))
}
