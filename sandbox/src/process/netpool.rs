//! A pool of prepared network namespaces (loopback up, nothing else).
//!
//! Creating a network namespace is the single most expensive part of a
//! sandbox spawn (about 0.6 ms here, plus asynchronous teardown work), and
//! the namespace holds no state a command can change: it is owned by the
//! host's user namespace, where sandboxed processes have no capabilities
//! (no routes, addresses, sysctls or firewall rules can be altered), and its
//! sockets die with the command's processes. So each command borrows one
//! namespace for its lifetime; concurrent commands never share one.
//!
//! The spawning thread joins the borrowed namespace just around `clone` (a
//! thread's network namespace is its own; the child inherits it) and binds
//! the egress proxy's listener there, then returns to its own namespace.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;

use crate::error::SandboxError;
use crate::exec::PROXY_PORT;

/// Namespaces kept for reuse; more are created on demand.
const KEEP: usize = 8;

fn prep_err(what: &'static str) -> impl Fn(std::io::Error) -> SandboxError {
    move |source| SandboxError::Prepare { what, source }
}

/// The pool.
#[derive(Debug, Default)]
pub(crate) struct NetnsPool {
    free: Mutex<Vec<OwnedFd>>,
}

impl NetnsPool {
    /// Borrow a namespace (returned when the lease drops).
    pub(crate) fn lease(&self) -> Result<Lease<'_>, SandboxError> {
        let reused = self.free.lock().ok().and_then(|mut v| v.pop());
        let fd = match reused {
            Some(fd) => fd,
            None => create()?,
        };
        Ok(Lease {
            pool: self,
            fd: Some(fd),
        })
    }
}

/// A borrowed namespace.
#[derive(Debug)]
pub(crate) struct Lease<'a> {
    pool: &'a NetnsPool,
    fd: Option<OwnedFd>,
}

impl Lease<'_> {
    /// Run `f` with the calling thread inside the leased namespace, then
    /// move the thread back (also when `f` fails).
    pub(crate) fn enter<T>(
        &self,
        f: impl FnOnce() -> Result<T, SandboxError>,
    ) -> Result<T, SandboxError> {
        let ns = self
            .fd
            .as_ref()
            .ok_or_else(|| SandboxError::Lost("network namespace lease is empty".into()))?;
        let home = File::open("/proc/thread-self/ns/net")
            .map_err(prep_err("open this thread's network namespace"))?;
        setns(ns.as_raw_fd()).map_err(prep_err("join the sandbox network namespace"))?;
        let result = f();
        // Returning must not fail silently: a thread left in the sandbox's
        // namespace would make stele's own connections go nowhere.
        setns(home.as_raw_fd()).map_err(prep_err("return to stele's network namespace"))?;
        result
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let (Some(fd), Ok(mut free)) = (self.fd.take(), self.pool.free.lock()) {
            if free.len() < KEEP {
                free.push(fd);
            }
        }
    }
}

fn setns(fd: i32) -> std::io::Result<()> {
    // SAFETY: fd is an open network namespace file; only this thread moves.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A fresh namespace with loopback up, made on a short-lived thread so the
/// caller's own namespace is never touched.
fn create() -> Result<OwnedFd, SandboxError> {
    std::thread::Builder::new()
        .name("stele-netns".into())
        .spawn(|| -> Result<OwnedFd, SandboxError> {
            // SAFETY: unshare of the network namespace affects this thread only.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } < 0 {
                return Err(prep_err("create a network namespace")(
                    std::io::Error::last_os_error(),
                ));
            }
            if !super::loopback::lo_up() {
                return Err(prep_err("bring loopback up")(
                    std::io::Error::last_os_error(),
                ));
            }
            let f = File::open("/proc/thread-self/ns/net")
                .map_err(prep_err("open the new network namespace"))?;
            Ok(OwnedFd::from(f))
        })
        .map_err(prep_err("spawn the network namespace helper"))?
        .join()
        .map_err(|_| SandboxError::Lost("network namespace helper panicked".into()))?
}

/// Bind the proxy listener (call inside [`Lease::enter`]).
pub(crate) fn proxy_listener() -> Result<TcpListener, SandboxError> {
    // std sets SO_REUSEADDR, so a previous command's TIME_WAIT on the
    // proxy port does not block the next bind.
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, PROXY_PORT))
        .map_err(prep_err("bind the proxy listener"))
}
