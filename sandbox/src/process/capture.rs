//! The parent's wait loop: feed stdin, capture stdout/stderr up to a cap,
//! watch the sandbox init through its pidfd and enforce the wall-clock
//! deadline, all on the calling thread with `poll(2)` (no helper threads, so
//! nothing to spawn per command).
//!
//! Past the cap a stream is still drained (so the command never blocks on a
//! full pipe) and only counted.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::netnotify::NetNotify;
use super::sys;
use crate::exec::{Captured, Truncation};

/// How long to keep draining output after the init exited (every writer is
/// gone by then, so EOF is immediate unless a stray descriptor lingers).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// One captured output stream.
struct Sink {
    fd: Option<OwnedFd>,
    kept: Vec<u8>,
    total: u64,
    cap: usize,
}

impl Sink {
    fn new(fd: OwnedFd, cap: usize) -> Sink {
        Sink {
            fd: Some(fd),
            kept: Vec::new(),
            total: 0,
            cap,
        }
    }

    /// Read what is available; close on EOF or error.
    fn pump(&mut self, buf: &mut [u8]) {
        let Some(fd) = &self.fd else { return };
        loop {
            // SAFETY: reading into a live buffer from a descriptor we own.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                let n = usize::try_from(n).unwrap_or(0);
                self.total += n as u64;
                let room = self.cap.saturating_sub(self.kept.len());
                self.kept.extend_from_slice(&buf[..n.min(room)]);
                continue;
            }
            if n < 0 && matches!(sys::errno(), libc::EAGAIN | libc::EINTR) {
                return;
            }
            self.fd = None; // EOF or a real error: the stream is over.
            return;
        }
    }

    fn finish(self) -> Captured {
        let truncation = if self.total > self.kept.len() as u64 {
            Truncation::Truncated {
                total_bytes: self.total,
            }
        } else {
            Truncation::Complete
        };
        Captured {
            bytes: self.kept,
            truncation,
        }
    }
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl flag changes on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
}

/// What the loop saw.
pub(crate) struct Streams {
    /// Captured stdout.
    pub stdout: Captured,
    /// Captured stderr.
    pub stderr: Captured,
    /// The deadline passed and the sandbox was killed.
    pub timed_out: bool,
    /// Network attempts the sandbox refused (see `netnotify.rs`).
    pub network_refusals: u64,
}

/// The descriptors and limits of one wait.
pub(crate) struct Io<'a> {
    pub pid: libc::pid_t,
    pub pidfd: &'a OwnedFd,
    pub stdin: OwnedFd,
    pub stdin_data: &'a [u8],
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub cap: usize,
    pub deadline: Instant,
    pub grace: Duration,
    /// The command's `cgroup.kill`, when it has a cgroup.
    pub group_kill: Option<&'a std::fs::File>,
    /// The command's seccomp listener for network attempts.
    pub net: Option<NetNotify>,
}

/// Run until the init has exited and both streams are closed.
pub(crate) fn run(io: Io<'_>) -> Streams {
    let mut out = Sink::new(io.stdout, io.cap);
    let mut err = Sink::new(io.stderr, io.cap);
    let mut stdin = if io.stdin_data.is_empty() {
        drop(io.stdin); // closing it now gives the command EOF at once
        None
    } else {
        Some(io.stdin)
    };
    for fd in [&out.fd, &err.fd].into_iter().flatten() {
        set_nonblocking(fd.as_raw_fd());
    }
    if let Some(fd) = &stdin {
        set_nonblocking(fd.as_raw_fd());
    }
    let mut fed = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let mut notify = io.net;
    let mut notify_open = notify.is_some();
    let mut exited_at: Option<Instant> = None;
    let mut term_sent: Option<Instant> = None;
    let mut killed = false;
    let mut timed_out = false;
    loop {
        let now = Instant::now();
        if let Some(t) = exited_at {
            if (out.fd.is_none() && err.fd.is_none()) || now >= t + DRAIN_AFTER_EXIT {
                break;
            }
        } else if now >= io.deadline {
            timed_out = true;
            match term_sent {
                None => {
                    // SAFETY: signalling our own unreaped child; its init
                    // forwards SIGTERM to every process of the namespace.
                    unsafe { libc::kill(io.pid, libc::SIGTERM) };
                    term_sent = Some(now);
                }
                Some(t) if !killed && now >= t + io.grace => {
                    // Every process of the command's cgroup at once.
                    if let Some(mut k) = io.group_kill {
                        use std::io::Write;
                        let _ = k.write_all(b"1");
                    }
                    // SAFETY: as above; SIGKILL of a pid-namespace init
                    // kills the whole namespace (also without a cgroup).
                    unsafe { libc::kill(io.pid, libc::SIGKILL) };
                    killed = true;
                }
                _ => {}
            }
        }
        let wake = match (exited_at, term_sent) {
            (Some(t), _) => t + DRAIN_AFTER_EXIT,
            (None, Some(t)) if !killed => t + io.grace,
            (None, Some(_)) => now + Duration::from_millis(100),
            (None, None) => io.deadline,
        };
        let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(6);
        let mut add = |fd: RawFd, events: libc::c_short| {
            pfds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
        };
        add(out.fd.as_ref().map_or(-1, |f| f.as_raw_fd()), libc::POLLIN);
        add(err.fd.as_ref().map_or(-1, |f| f.as_raw_fd()), libc::POLLIN);
        add(stdin.as_ref().map_or(-1, |f| f.as_raw_fd()), libc::POLLOUT);
        let pidfd = if exited_at.is_none() {
            io.pidfd.as_raw_fd()
        } else {
            -1
        };
        add(pidfd, libc::POLLIN);
        let listener = match &notify {
            Some(n) if notify_open => n.fd(),
            _ => -1,
        };
        add(listener, libc::POLLIN);
        let ms = wake.saturating_duration_since(now).as_millis().min(60_000) as libc::c_int;
        // SAFETY: polling a live array of pollfds (negative fds are ignored).
        let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms.max(1)) };
        if rc < 0 {
            continue; // EINTR
        }
        if pfds[0].revents != 0 {
            out.pump(&mut buf);
        }
        if pfds[1].revents != 0 {
            err.pump(&mut buf);
        }
        if pfds[2].revents != 0 {
            if let Some(fd) = &stdin {
                let rest = &io.stdin_data[fed..];
                // SAFETY: writing from a live slice to a descriptor we own.
                let n = unsafe { libc::write(fd.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
                if n > 0 {
                    fed += usize::try_from(n).unwrap_or(0);
                }
                if (n < 0 && !matches!(sys::errno(), libc::EAGAIN | libc::EINTR))
                    || fed >= io.stdin_data.len()
                {
                    stdin = None; // all fed, or the reader is gone (EPIPE)
                }
            }
        }
        if pfds[3].revents != 0 && exited_at.is_none() {
            exited_at = Some(Instant::now());
            stdin = None;
        }
        if pfds[4].revents != 0 {
            if let Some(n) = notify.as_mut() {
                if pfds[4].revents & libc::POLLIN != 0 {
                    n.handle();
                } else {
                    // Every program under the filter is gone.
                    notify_open = false;
                }
            }
        }
    }
    Streams {
        stdout: out.finish(),
        stderr: err.finish(),
        timed_out,
        network_refusals: notify.map_or(0, |n| n.refused),
    }
}
