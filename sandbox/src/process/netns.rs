//! The sandbox's network namespace: loopback up and the proxy listener bound
//! inside it, from the parent.
//!
//! A socket's network namespace is fixed when it is created, so a helper
//! thread joins the child's namespace (`setns` affects only that thread),
//! brings `lo` up, binds 127.0.0.1:3128 and exits; the listener keeps
//! working from any thread of the parent. No forwarder runs in the sandbox.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::SandboxError;
use crate::exec::PROXY_PORT;

fn io_err(what: &'static str) -> SandboxError {
    SandboxError::last_os(what)
}

fn lo_up() -> Result<(), SandboxError> {
    // SAFETY: creating a socket has no memory preconditions.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io_err("socket for loopback"));
    }
    // SAFETY: fd was just created and is owned here.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: ifr is a valid ifreq for SIOCGIFFLAGS/SIOCSIFFLAGS.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(io_err("read loopback flags"));
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) < 0 {
            return Err(io_err("bring loopback up"));
        }
    }
    Ok(())
}

/// Bring `lo` up in the network namespace of `pid` and return a listener on
/// 127.0.0.1:3128 inside it.
pub(crate) fn proxy_listener(pid: libc::pid_t) -> Result<TcpListener, SandboxError> {
    let ns =
        std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(|e| SandboxError::Prepare {
            what: "open the sandbox network namespace",
            source: e,
        })?;
    let handle = std::thread::Builder::new()
        .name("stele-netns".into())
        .spawn(move || -> Result<TcpListener, SandboxError> {
            // SAFETY: ns is an open namespace file; only this thread moves.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
                return Err(io_err("join the sandbox network namespace"));
            }
            lo_up()?;
            TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, PROXY_PORT)).map_err(|e| {
                SandboxError::Prepare {
                    what: "bind the proxy listener",
                    source: e,
                }
            })
        })
        .map_err(|e| SandboxError::Prepare {
            what: "spawn the network namespace helper",
            source: e,
        })?;
    handle
        .join()
        .map_err(|_| SandboxError::Lost("network namespace helper panicked".into()))?
}

/// Bring `lo` up in the namespace of `pid` without a listener (isolated mode).
pub(crate) fn loopback_only(pid: libc::pid_t) -> Result<(), SandboxError> {
    let ns =
        std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(|e| SandboxError::Prepare {
            what: "open the sandbox network namespace",
            source: e,
        })?;
    std::thread::Builder::new()
        .name("stele-netns".into())
        .spawn(move || -> Result<(), SandboxError> {
            // SAFETY: ns is an open namespace file; only this thread moves.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
                return Err(io_err("join the sandbox network namespace"));
            }
            lo_up()
        })
        .map_err(|e| SandboxError::Prepare {
            what: "spawn the network namespace helper",
            source: e,
        })?
        .join()
        .map_err(|_| SandboxError::Lost("network namespace helper panicked".into()))?
}
