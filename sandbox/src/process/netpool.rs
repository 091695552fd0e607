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
//! thread's network namespace is its own; the child inherits it), then
//! returns to its own namespace.
//!
//! With the egress proxy, each pooled namespace also keeps its proxy: the
//! listener on 127.0.0.1:3128 is bound once, when the namespace is made, and
//! served by one [`EgressProxy`] for the namespace's whole life. A lease
//! attributes the proxy's connections to the borrowing command
//! ([`Lease::begin`]); when the command has ended, [`Lease::finish`] refuses
//! further connections, drops the unread backlog and waits for the
//! command's connections to be reported, before the namespace goes back to
//! the pool.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use crate::error::SandboxError;
use crate::exec::PROXY_PORT;
use crate::proxy::{EgressProxy, ProxyConfig};
use crate::{Mediator, Requester};

/// Namespaces kept for reuse; more are created on demand.
const KEEP: usize = 8;

fn prep_err(what: &'static str) -> impl Fn(std::io::Error) -> SandboxError {
    move |source| SandboxError::Prepare { what, source }
}

/// A prepared namespace and, with the egress proxy, its proxy.
#[derive(Debug)]
struct Prepared {
    ns: OwnedFd,
    proxy: Option<EgressProxy>,
}

/// The pool.
#[derive(Debug)]
pub(crate) struct NetnsPool {
    free: Mutex<Vec<Prepared>>,
    /// Serves the pooled namespaces' proxies; `None`: loopback only.
    proxy_mediator: Option<Arc<dyn Mediator>>,
}

impl NetnsPool {
    /// A pool of namespaces with the egress proxy served by `mediator`, or
    /// with loopback only (`None`).
    pub(crate) fn new(proxy_mediator: Option<Arc<dyn Mediator>>) -> Self {
        NetnsPool {
            free: Mutex::new(Vec::new()),
            proxy_mediator,
        }
    }

    /// Borrow a namespace (returned when the lease drops).
    pub(crate) fn lease(&self) -> Result<Lease<'_>, SandboxError> {
        let reused = self.free.lock().ok().and_then(|mut v| v.pop());
        let prepared = match reused {
            Some(p) => p,
            None => self.create()?,
        };
        Ok(Lease {
            pool: self,
            prepared: Some(prepared),
            reusable: true,
        })
    }

    fn create(&self) -> Result<Prepared, SandboxError> {
        let with_proxy = self.proxy_mediator.is_some();
        let (ns, listener) = fresh_namespace(with_proxy)?;
        let proxy = match (listener, &self.proxy_mediator) {
            (Some(l), Some(m)) => Some(
                EgressProxy::serve_for_commands(l, m.clone(), ProxyConfig::default()).map_err(
                    |e| SandboxError::Prepare {
                        what: "start the egress proxy",
                        source: std::io::Error::other(e),
                    },
                )?,
            ),
            _ => None,
        };
        Ok(Prepared { ns, proxy })
    }
}

/// A borrowed namespace.
#[derive(Debug)]
pub(crate) struct Lease<'a> {
    pool: &'a NetnsPool,
    prepared: Option<Prepared>,
    /// Cleared when the proxy could not be settled: then the namespace is
    /// dropped instead of lent again.
    reusable: bool,
}

impl Lease<'_> {
    /// Attribute the proxy's connections to `requester` (the command about
    /// to run in this namespace).
    pub(crate) fn begin(&self, requester: Requester) {
        if let Some(p) = self.prepared.as_ref().and_then(|p| p.proxy.as_ref()) {
            p.begin_command(requester);
        }
    }

    /// The borrowing command has ended: settle its proxy connections.
    pub(crate) fn finish(&mut self) -> Result<(), SandboxError> {
        let Some(proxy) = self.prepared.as_ref().and_then(|p| p.proxy.as_ref()) else {
            return Ok(());
        };
        proxy.end_command().map_err(|e| {
            self.reusable = false;
            SandboxError::Proxy(e)
        })
    }

    /// Run `f` with the calling thread inside the leased namespace, then
    /// move the thread back (also when `f` fails).
    pub(crate) fn enter<T>(
        &self,
        f: impl FnOnce() -> Result<T, SandboxError>,
    ) -> Result<T, SandboxError> {
        let ns = self
            .prepared
            .as_ref()
            .map(|p| &p.ns)
            .ok_or_else(|| SandboxError::Lost("network namespace lease is empty".into()))?;
        in_namespace(ns, f)
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(mut prepared) = self.prepared.take() else {
            return;
        };
        // A lease dropped without `finish` (an error path) settles here.
        if let Some(proxy) = prepared.proxy.as_ref() {
            if self.reusable && proxy.end_command().is_err() {
                self.reusable = false;
            }
        }
        if !self.reusable {
            return;
        }
        if let Ok(mut free) = self.pool.free.lock() {
            if free.len() < KEEP {
                free.push(prepared);
                return;
            }
        }
        // Stopped outside the lock (joins the proxy's threads).
        drop(prepared.proxy.take());
    }
}

/// Run `f` with the calling thread inside the network namespace `ns`, then
/// move the thread back (also when `f` fails). A child cloned in `f`
/// inherits `ns`.
pub(crate) fn in_namespace<T>(
    ns: &OwnedFd,
    f: impl FnOnce() -> Result<T, SandboxError>,
) -> Result<T, SandboxError> {
    let home = File::open("/proc/thread-self/ns/net")
        .map_err(prep_err("open this thread's network namespace"))?;
    setns(ns.as_raw_fd()).map_err(prep_err("join the sandbox network namespace"))?;
    let result = f();
    // Returning must not fail silently: a thread left in the sandbox's
    // namespace would make stele's own connections go nowhere.
    setns(home.as_raw_fd()).map_err(prep_err("return to stele's network namespace"))?;
    result
}

fn setns(fd: i32) -> std::io::Result<()> {
    // SAFETY: fd is an open network namespace file; only this thread moves.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A fresh namespace with loopback up (and the proxy's listener bound in
/// it), made on a short-lived thread so the caller's own namespace is never
/// touched. Pooled for commands; made once per long-lived service.
pub(crate) fn fresh_namespace(
    with_proxy: bool,
) -> Result<(OwnedFd, Option<TcpListener>), SandboxError> {
    std::thread::Builder::new()
        .name("stele-netns".into())
        .spawn(
            move || -> Result<(OwnedFd, Option<TcpListener>), SandboxError> {
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
                let listener = if with_proxy {
                    Some(proxy_listener()?)
                } else {
                    None
                };
                Ok((OwnedFd::from(f), listener))
            },
        )
        .map_err(prep_err("spawn the network namespace helper"))?
        .join()
        .map_err(|_| SandboxError::Lost("network namespace helper panicked".into()))?
}

/// Bind the proxy listener in the calling thread's network namespace.
fn proxy_listener() -> Result<TcpListener, SandboxError> {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, PROXY_PORT))
        .map_err(prep_err("bind the proxy listener"))
}
