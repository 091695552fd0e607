//! The keeper: one thread per service that starts it, then waits until it
//! exits or is told to stop (a byte on, or the closing of, the stop pipe),
//! kills it if told, reaps it, stops its egress proxy (so every connection
//! is reported) and only then publishes how it ended.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use super::launch::{launch, Launched};
use super::{ServiceExit, ServiceInfo, ServiceIo, ServiceSpec, Shared};
use crate::error::SandboxError;
use crate::process::sys;

/// What the starting caller gets back.
pub(super) struct Started {
    pub pid: u32,
    pub io: ServiceIo,
    pub info: ServiceInfo,
}

/// The keeper thread's body.
pub(super) fn run(
    spec: ServiceSpec,
    stop: OwnedFd,
    shared: Arc<Shared>,
    tx: SyncSender<Result<Started, SandboxError>>,
) {
    let Launched {
        mut guard,
        pidfd,
        io,
        info,
        proxy,
    } = match launch(&spec) {
        Ok(l) => l,
        Err(e) => {
            let _ = tx.send(Err(e));
            return;
        }
    };
    let pid = guard.pid;
    let started = Started {
        pid: u32::try_from(pid).unwrap_or(0),
        io,
        info,
    };
    // A caller that has gone away gets its service killed at once.
    let asked_to_stop = tx.send(Ok(started)).is_err() || wait(&pidfd, &stop);
    if asked_to_stop {
        // SAFETY: our unreaped child; SIGKILL of a pid namespace's init
        // kills every process in the namespace.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let status = reap(pid);
    guard.reaped = true;
    // Cut and report the service's connections before saying it ended.
    if let Some(p) = proxy {
        let _ = p.stop();
    }
    let exit = match status {
        Some(st)
            if asked_to_stop && libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL =>
        {
            ServiceExit::Killed
        }
        Some(st) if libc::WIFEXITED(st) => ServiceExit::Exited(libc::WEXITSTATUS(st)),
        Some(st) if libc::WIFSIGNALED(st) => ServiceExit::Signaled(libc::WTERMSIG(st)),
        _ => ServiceExit::Killed,
    };
    shared.set(exit);
}

/// Block until the service exits (`false`) or a stop is asked (`true`).
fn wait(pidfd: &OwnedFd, stop: &OwnedFd) -> bool {
    loop {
        let mut fds = [
            libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: a valid array of two pollfd structs.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if rc < 0 {
            if sys::errno() == libc::EINTR {
                continue;
            }
            // poll itself failing leaves no way to wait: stop the service.
            return true;
        }
        if fds[0].revents != 0 {
            return false;
        }
        if fds[1].revents != 0 {
            return true;
        }
    }
}

/// Reap `pid`; its raw wait status.
fn reap(pid: libc::pid_t) -> Option<i32> {
    loop {
        let mut st = 0;
        // SAFETY: waiting for our own child into a local.
        let r = unsafe { libc::waitpid(pid, &mut st, libc::__WALL) };
        if r == pid {
            return Some(st);
        }
        if r < 0 && sys::errno() != libc::EINTR {
            return None;
        }
    }
}
