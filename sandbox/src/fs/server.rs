//! The /dev/fuse transport: threads that read requests from an
//! already-mounted FUSE connection and hand them to the mediated layer.
//!
//! The request loop is ours rather than fuse-backend-rs's `FuseChannel`:
//! that one allocates an event list per request and shares one buffer
//! between the request and the reply; this one keeps two buffers per thread
//! for the life of the thread and waits with a single `poll`.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::{FuseBuf, FuseDevWriter, Reader};

use super::layer::MediatedLayer;
use super::standby::{Standby, STANDBY_READERS};
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

/// Size of a request buffer: the largest request is a WRITE of `max_write`
/// (what `init` negotiates, at most the session's 256 pages) plus its headers.
fn request_buf_size() -> usize {
    super::max_read() + 0x1000
}

/// A running file server; [`FsServer::stop`] ends it.
pub struct FsServer {
    fuse: Option<Arc<File>>,
    /// Readable once `stop` has been asked (an eventfd, never reset).
    stop: Arc<OwnedFd>,
    threads: Vec<JoinHandle<()>>,
    /// Asks the kernel to drop least recently used entries (`budget.rs`).
    evictor: Option<JoinHandle<()>>,
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
    /// Start serving `fuse_dev` with `layer`, on `threads_wanted` threads,
    /// all restricted to `cpu` when given.
    pub(super) fn start(
        layer: Arc<MediatedLayer>,
        fuse_dev: OwnedFd,
        threads_wanted: usize,
        cpu: Option<usize>,
    ) -> Result<Self, FsError> {
        // Several threads may poll the same fd; non-blocking reads let the
        // losers of a wake-up go back to polling instead of blocking where
        // `stop` cannot reach them.
        set_nonblocking(fuse_dev.as_raw_fd()).map_err(FsError::Io)?;
        let fuse = Arc::new(File::from(fuse_dev));
        // SAFETY: eventfd has no memory-safety preconditions; the result is
        // checked before it is wrapped.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(FsError::Io(std::io::Error::last_os_error()));
        }
        // SAFETY: `efd` is a fresh descriptor nothing else owns.
        let stop = Arc::new(unsafe { OwnedFd::from_raw_fd(efd) });

        let server = Arc::new(Server::new(layer.clone()));
        let stats = Arc::new(RequestStats::new());
        let mut me = FsServer {
            fuse: Some(fuse.clone()),
            stop: stop.clone(),
            threads: Vec::new(),
            evictor: None,
            layer: layer.clone(),
            stats: stats.clone(),
        };
        let evict_fuse = fuse.clone();
        let spawned = std::thread::Builder::new()
            .name("stele-fs-evict".into())
            .spawn(move || super::evict::evict_loop(&layer, evict_fuse.as_raw_fd()));
        match spawned {
            Ok(t) => me.evictor = Some(t),
            Err(e) => {
                let _ = me.shutdown();
                return Err(FsError::Io(e));
            }
        }
        let readers = (0..threads_wanted.max(1))
            .map(Role::Regular)
            .chain((0..STANDBY_READERS).map(Role::Standby));
        for role in readers {
            let (server, stats, fuse, stop, layer) = (
                server.clone(),
                stats.clone(),
                fuse.clone(),
                stop.clone(),
                me.layer.clone(),
            );
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name(role.thread_name())
                .spawn(move || {
                    let pinned = cpu.map_or(Ok(()), super::cpu::pin_current_thread);
                    let ok = pinned.is_ok();
                    let _ = ready_tx.send(pinned);
                    let (fuse, stop) = (fuse.as_raw_fd(), stop.as_raw_fd());
                    match (ok, role) {
                        (false, _) => {}
                        (true, Role::Regular(_)) => serve_loop(&server, &stats, fuse, stop),
                        (true, Role::Standby(rank)) => {
                            standby_loop(&server, &stats, fuse, stop, (layer.standby(), rank))
                        }
                    }
                });
            let started = match spawned {
                Ok(t) => {
                    me.threads.push(t);
                    ready_rx
                        .recv()
                        .unwrap_or_else(|_| Err(std::io::Error::other("server thread died")))
                }
                Err(e) => Err(e),
            };
            if let Err(e) = started {
                let _ = me.shutdown();
                return Err(FsError::Io(e));
            }
        }
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
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        let wrote = unsafe { libc::write(self.stop.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if wrote != 8 {
            first_err = Some(FsError::Session(format!(
                "wake the server threads: {}",
                std::io::Error::last_os_error()
            )));
        }
        // Parked standby readers wait on the gate, not on the device.
        self.layer.standby().stop();
        for t in self.threads.drain(..) {
            if t.join().is_err() && first_err.is_none() {
                first_err = Some(FsError::Thread);
            }
        }
        self.layer.stop_evicting();
        if let Some(t) = self.evictor.take() {
            if t.join().is_err() && first_err.is_none() {
                first_err = Some(FsError::Thread);
            }
        }
        // No thread serves requests any more: account for handles the
        // kernel will never release, before the connection goes away.
        self.layer.close_all();
        // The threads' clones are gone with them: this closes the fd.
        drop(self.fuse.take());
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for FsServer {
    fn drop(&mut self) {
        if self.fuse.is_some() {
            let _ = self.shutdown();
        }
    }
}

fn set_nonblocking(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on an fd we own, with F_GETFL/F_SETFL only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A request-reading thread's part.
#[derive(Clone, Copy)]
enum Role {
    /// Reads requests for as long as the server runs (the `n`th).
    Regular(usize),
    /// Parked until requests wait for room (`standby.rs`), of this rank.
    Standby(usize),
}

impl Role {
    fn thread_name(self) -> String {
        match self {
            Role::Regular(i) => format!("stele-fuse-{i}"),
            Role::Standby(rank) => format!("stele-fuse-standby-{rank}"),
        }
    }
}

/// What waiting for the next request gave.
enum Wait {
    Request(usize),
    Again,
    Stop,
}

/// One thread's request buffers, kept for the life of the thread.
struct Buffers {
    request: Vec<u8>,
    reply: Vec<u8>,
}

impl Buffers {
    fn new() -> Self {
        let size = request_buf_size();
        Buffers {
            request: vec![0u8; size],
            reply: vec![0u8; size],
        }
    }
}

/// Whether a reader goes on after a request.
enum Served {
    More,
    End,
}

/// One thread's request loop, until stopped, unmounted or broken.
fn serve_loop(server: &Server<Arc<MediatedLayer>>, stats: &RequestStats, fuse: RawFd, stop: RawFd) {
    let mut bufs = Buffers::new();
    while let Served::More = serve_one(server, stats, fuse, stop, &mut bufs) {}
}

/// A standby reader of rank `rank` (`standby.rs`): parked until more than
/// `rank` requests wait for room, then a reader like the others until they
/// no longer do.
fn standby_loop(
    server: &Server<Arc<MediatedLayer>>,
    stats: &RequestStats,
    fuse: RawFd,
    stop: RawFd,
    (gate, rank): (&Standby, usize),
) {
    let mut bufs = None;
    while gate.wanted(rank) {
        let bufs = bufs.get_or_insert_with(Buffers::new);
        if let Served::End = serve_one(server, stats, fuse, stop, bufs) {
            return;
        }
    }
}

/// Wait for and handle one request (or the stop signal).
fn serve_one(
    server: &Server<Arc<MediatedLayer>>,
    stats: &RequestStats,
    fuse: RawFd,
    stop: RawFd,
    bufs: &mut Buffers,
) -> Served {
    let len = match next_request(fuse, stop, &mut bufs.request) {
        Ok(Wait::Request(len)) => len,
        Ok(Wait::Again) => return Served::More,
        Ok(Wait::Stop) | Err(_) => return Served::End,
    };
    let Some(buf) = bufs.request.get_mut(..len) else {
        return Served::End;
    };
    let (Ok(reader), Ok(writer)) = (
        Reader::from_fuse_buffer(FuseBuf::new(buf)),
        FuseDevWriter::<()>::new(fuse, &mut bufs.reply),
    ) else {
        return Served::End;
    };
    if let Err(e) = server.handle_message(reader, writer.into(), None, Some(stats)) {
        // EBADF while encoding the reply: the kernel shut the session down.
        if matches!(e, fuse_backend_rs::Error::EncodeMessage(ref io) if io.raw_os_error() == Some(libc::EBADF))
        {
            return Served::End;
        }
    }
    Served::More
}

/// The next request, or the stop signal.
///
/// Reads first and polls only when nothing is queued: when the program runs
/// on the server's CPU, the reply's wake-up lets it run and send its next
/// request before the server gets the CPU back, so the read usually
/// succeeds at once and the `poll` (a system call per request) is skipped.
fn next_request(fuse: RawFd, stop: RawFd, buf: &mut [u8]) -> std::io::Result<Wait> {
    match read_request(fuse, buf)? {
        Wait::Again => {}
        ready => return Ok(ready),
    }
    let mut fds = [
        libc::pollfd {
            fd: fuse,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: stop,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a live array of two pollfd structs.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EINTR) => Ok(Wait::Again),
            _ => Err(e),
        };
    }
    if fds[1].revents != 0 {
        return Ok(Wait::Stop);
    }
    if fds[0].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
        return Ok(Wait::Stop);
    }
    read_request(fuse, buf)
}

/// One non-blocking read of the device.
fn read_request(fuse: RawFd, buf: &mut [u8]) -> std::io::Result<Wait> {
    // SAFETY: reads at most `buf.len()` bytes into the live buffer.
    let got = unsafe { libc::read(fuse, buf.as_mut_ptr().cast(), buf.len()) };
    if got >= 0 {
        return usize::try_from(got).map(Wait::Request).or(Ok(Wait::Again));
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        // Nothing queued (or another thread took it), an interrupted
        // request, or a signal.
        Some(libc::EAGAIN | libc::ENOENT | libc::EINTR) => Ok(Wait::Again),
        // The file system was unmounted.
        Some(libc::ENODEV) => Ok(Wait::Stop),
        _ => Err(e),
    }
}
