//! The egress proxy: HTTP CONNECT and plain-HTTP forwarding, every
//! destination decided by the [`Mediator`](crate::Mediator).
//!
//! The sandbox has no network but loopback; its only way out is this proxy,
//! listening (inside the sandbox's network namespace) on a socket the process
//! backend creates. Each client connection carries exactly one decision:
//!
//! 1. read the request head (size-bounded, with a total deadline);
//! 2. parse `CONNECT host:port` or an absolute `http://` request; anything
//!    that is not a proxy request with an authority is answered `400`;
//! 3. ask `net_connect(host as written, port, scheme)`: the mediator
//!    canonicalises the host, resolves a name once, decides on the address
//!    and names it; a denial is answered `403`;
//! 4. connect on the host side to exactly that address (never resolving
//!    again), relay bytes both ways;
//! 5. report `net_closed` with bytes, duration and error.
//!
//! * `host.rs` — splitting the authority; `request.rs` — head reading and
//!   parsing; `conn.rs` — one connection end to end.

mod conn;
mod host;
mod request;

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{Mediator, Requester};

/// Errors from starting or stopping the egress proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// An I/O error on the listener or the wake-up pipe.
    #[error("proxy listener: {0}")]
    Io(#[from] io::Error),
    /// A proxy thread panicked.
    #[error("a proxy thread panicked")]
    Thread,
}

/// Limits of the proxy.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The whole request head must arrive within this time (slowloris guard).
    pub header_timeout: Duration,
    /// Largest request head accepted.
    pub max_header_bytes: usize,
    /// Timeout for connecting to the destination.
    pub connect_timeout: Duration,
    /// A relayed connection with no traffic in one direction for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; more are answered `503`.
    pub max_connections: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_connections: 256,
        }
    }
}

/// Sockets of connections in progress, so `stop` can cut them.
#[derive(Clone, Default)]
pub(crate) struct Live {
    inner: Arc<Mutex<(u64, HashMap<u64, TcpStream>)>>,
}

impl Live {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<u64, TcpStream>)> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Register a socket; returns its id.
    pub fn add(&self, s: TcpStream) -> u64 {
        let mut g = self.lock();
        g.0 += 1;
        let id = g.0;
        g.1.insert(id, s);
        id
    }

    /// Forget a socket.
    pub fn remove(&self, id: u64) {
        self.lock().1.remove(&id);
    }

    fn shutdown_all(&self) {
        for s in self.lock().1.values() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Whom new connections are attributed to; `None` between commands, when
/// connections are refused unread.
#[derive(Clone, Default)]
struct Owner {
    inner: Arc<Mutex<Option<Requester>>>,
}

impl Owner {
    fn set(&self, r: Option<Requester>) {
        *self.inner.lock().unwrap_or_else(PoisonError::into_inner) = r;
    }

    fn get(&self) -> Option<Requester> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// How long [`EgressProxy::end_command`] waits for cut connections to finish
/// (a connection thread may be inside a slow mediator decision or connect).
const END_WAIT: Duration = Duration::from_secs(30);

/// A running egress proxy; [`EgressProxy::stop`] ends it.
pub struct EgressProxy {
    stopping: Arc<AtomicBool>,
    /// Write end of the acceptor's control pipe: a byte asks it to drain its
    /// backlog and acknowledge; closing it stops the acceptor.
    wake: Option<OwnedFd>,
    acked: Mutex<Receiver<()>>,
    acceptor: Option<JoinHandle<Vec<JoinHandle<()>>>>,
    live: Live,
    active: Arc<AtomicU64>,
    owner: Owner,
    local: Option<std::net::SocketAddr>,
}

impl std::fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressProxy")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl EgressProxy {
    /// Serve HTTP CONNECT and plain-HTTP proxy connections accepted on
    /// `listener`, asking the mediator for every (host, port).
    pub fn serve(
        listener: TcpListener,
        mediator: Arc<dyn Mediator>,
        requester: Requester,
    ) -> Result<EgressProxy, ProxyError> {
        Self::serve_with(listener, mediator, requester, ProxyConfig::default())
    }

    /// [`EgressProxy::serve`] with explicit limits.
    pub fn serve_with(
        listener: TcpListener,
        mediator: Arc<dyn Mediator>,
        requester: Requester,
        config: ProxyConfig,
    ) -> Result<EgressProxy, ProxyError> {
        Self::start(listener, mediator, Some(requester), config)
    }

    /// Serve a listener that outlives single commands (the process backend
    /// keeps one per pooled network namespace): connections are attributed
    /// to the requester set by [`EgressProxy::begin_command`] and refused,
    /// unread, while no command owns the listener.
    pub fn serve_for_commands(
        listener: TcpListener,
        mediator: Arc<dyn Mediator>,
        config: ProxyConfig,
    ) -> Result<EgressProxy, ProxyError> {
        Self::start(listener, mediator, None, config)
    }

    fn start(
        listener: TcpListener,
        mediator: Arc<dyn Mediator>,
        requester: Option<Requester>,
        config: ProxyConfig,
    ) -> Result<EgressProxy, ProxyError> {
        listener.set_nonblocking(true)?;
        let local = listener.local_addr().ok();
        let (wake_r, wake_w) = pipe()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let live = Live::default();
        let active = Arc::new(AtomicU64::new(0));
        let owner = Owner::default();
        owner.set(requester);
        let (ack_tx, ack_rx) = mpsc::channel();
        let ctx = Arc::new(conn::Ctx {
            mediator,
            config,
            live: live.clone(),
        });
        let acceptor = {
            let (stop_flag, active, owner) = (stopping.clone(), active.clone(), owner.clone());
            std::thread::Builder::new()
                .name("stele-proxy-accept".into())
                .spawn(move || {
                    accept_loop(&Acceptor {
                        listener: &listener,
                        control: &wake_r,
                        stopping: &stop_flag,
                        ctx: &ctx,
                        active: &active,
                        owner: &owner,
                        ack: &ack_tx,
                    })
                })?
        };
        Ok(EgressProxy {
            stopping,
            wake: Some(wake_w),
            acked: Mutex::new(ack_rx),
            acceptor: Some(acceptor),
            live,
            active,
            owner,
            local,
        })
    }

    /// Attribute connections accepted from now on to `requester`.
    pub fn begin_command(&self, requester: Requester) {
        self.owner.set(Some(requester));
    }

    /// The command that owned the listener has ended (its processes are
    /// gone): refuse connections from now on, drop the ones still waiting in
    /// the backlog unread, cut the open ones and wait (bounded) until each
    /// has been reported, so all of the command's connections are closed in
    /// the log before its end.
    pub fn end_command(&self) -> Result<(), ProxyError> {
        self.owner.set(None);
        let Some(wake) = self.wake.as_ref() else {
            return Ok(());
        };
        let acked = self.acked.lock().unwrap_or_else(PoisonError::into_inner);
        // SAFETY: writing one byte from a live buffer to our own pipe.
        let n = unsafe { libc::write(wake.as_raw_fd(), b"e".as_ptr().cast(), 1) };
        if n != 1 {
            return Err(ProxyError::Io(io::Error::last_os_error()));
        }
        // Every connection accepted before the acknowledgement is in `live`.
        acked
            .recv_timeout(END_WAIT)
            .map_err(|_| ProxyError::Thread)?;
        drop(acked);
        self.live.shutdown_all();
        let deadline = Instant::now() + END_WAIT;
        let mut pause = Duration::from_micros(50);
        while self.active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Stop accepting, cut open connections (they are still reported) and
    /// join every proxy thread.
    pub fn stop(mut self) -> Result<(), ProxyError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), ProxyError> {
        self.stopping.store(true, Ordering::SeqCst);
        // Closing the write end wakes the acceptor's poll.
        drop(self.wake.take());
        self.live.shutdown_all();
        let Some(acceptor) = self.acceptor.take() else {
            return Ok(());
        };
        let workers = acceptor.join().map_err(|_| ProxyError::Thread)?;
        // Connections accepted just before the flag was seen.
        self.live.shutdown_all();
        let mut panicked = false;
        for w in workers {
            panicked |= w.join().is_err();
        }
        if panicked {
            Err(ProxyError::Thread)
        } else {
            Ok(())
        }
    }
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// What the acceptor thread works with.
struct Acceptor<'a> {
    listener: &'a TcpListener,
    control: &'a OwnedFd,
    stopping: &'a AtomicBool,
    ctx: &'a Arc<conn::Ctx>,
    active: &'a Arc<AtomicU64>,
    owner: &'a Owner,
    ack: &'a Sender<()>,
}

/// Handle the control pipe: `false` when the proxy is stopping.
fn control(a: &Acceptor<'_>) -> bool {
    let mut buf = [0u8; 16];
    // SAFETY: reading into a live local buffer from our own pipe.
    let n = unsafe { libc::read(a.control.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 || a.stopping.load(Ordering::SeqCst) {
        return false;
    }
    // End of a command: whatever still waits in the backlog was opened by
    // its (now dead) processes; drop it unread.
    loop {
        match a.listener.accept() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    for _ in 0..n {
        let _ = a.ack.send(());
    }
    true
}

/// Accept until told to stop; returns the connection threads to join.
fn accept_loop(a: &Acceptor<'_>) -> Vec<JoinHandle<()>> {
    let (listener, stopping, ctx, active) = (a.listener, a.stopping, a.ctx, a.active);
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    while !stopping.load(Ordering::SeqCst) {
        let mut fds = [
            libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: a.control.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfd structs for the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, 1000) };
        if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
        if stopping.load(Ordering::SeqCst) || (fds[1].revents != 0 && !control(a)) {
            break;
        }
        workers.retain(|w| !w.is_finished());
        loop {
            let (stream, _) = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ECONNABORTED and friends: that client is gone, keep serving.
                Err(_) => break,
            };
            // No command owns the listener: nobody may connect.
            let Some(requester) = a.owner.get() else {
                continue;
            };
            if stream.set_nonblocking(false).is_err() {
                continue;
            }
            let mut stream = stream;
            if active.load(Ordering::SeqCst) >= ctx.config.max_connections as u64 {
                conn::respond(
                    &mut stream,
                    503,
                    "Service Unavailable",
                    "stele: too many connections\n",
                );
                continue;
            }
            let Ok(clone) = stream.try_clone() else {
                continue;
            };
            let id = ctx.live.add(clone);
            active.fetch_add(1, Ordering::SeqCst);
            let (ctx2, active2) = (ctx.clone(), active.clone());
            let spawned = std::thread::Builder::new()
                .name("stele-proxy-conn".into())
                .spawn(move || {
                    conn::handle(&ctx2, stream, requester);
                    ctx2.live.remove(id);
                    active2.fetch_sub(1, Ordering::SeqCst);
                });
            match spawned {
                Ok(w) => workers.push(w),
                Err(_) => {
                    ctx.live.remove(id);
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
    }
    workers
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are fresh descriptors we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
