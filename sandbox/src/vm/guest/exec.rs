//! Running one command in the guest: spawn under the confinement
//! (`spawn.rs`) in a cgroup of its own (`groups.rs`), stream its output,
//! enforce the deadline (SIGTERM to every process of its cgroup, then
//! `cgroup.kill`), end its whole process tree when it exits, and report
//! how it ended and what it used. One (reused) thread per command polls
//! its pipes and its pidfd: under TCG every thread created costs, and a
//! command used to take five.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::confine::Confinement;
use super::groups::Groups;
use super::spawn::{self, Prepared};
use super::Sender;
use crate::process::sys;
use crate::vm::protocol::{
    Bytes, ExecSpec, ExitReport, GroupReport, GuestMsg, GuestStatus, StreamKind, CHUNK,
};

/// How long output is still collected after the command's tree is gone
/// (every writer is dead then, so the pipes close at once).
const DRAIN: Duration = Duration::from_millis(500);
/// How long the end of a command's tree may take (processes blocked in
/// the kernel die when they return to user space).
const TREE_END: Duration = Duration::from_secs(5);

/// Run `spec` on a worker thread; everything is reported through `tx`.
pub(crate) fn spawn(
    spec: ExecSpec,
    confinement: Arc<Confinement>,
    groups: Arc<Groups>,
    tx: Sender,
) {
    let id = spec.id;
    let tx2 = tx.clone();
    let spawned = super::workers::run(Box::new(move || run(spec, &confinement, &groups, &tx2)));
    if let Err(e) = spawned {
        tx.send(&GuestMsg::Failed {
            id,
            error: format!("thread: {e}"),
            errno: None,
        });
    }
}

fn failed(tx: &Sender, id: u64, error: String, errno: Option<i32>) {
    tx.send(&GuestMsg::Failed { id, error, errno });
}

fn set_nonblocking(fd: &OwnedFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// One output stream being forwarded (up to the cap; the rest is counted).
struct Out {
    fd: Option<OwnedFd>,
    kind: StreamKind,
    total: u64,
}

impl Out {
    /// Read what is there; forward it. Closes the stream at end of file.
    fn pump(&mut self, id: u64, cap: u64, buf: &mut [u8], tx: &Sender) {
        let Some(fd) = &self.fd else { return };
        loop {
            // SAFETY: reading into a live buffer from our descriptor.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                match sys::errno() {
                    libc::EINTR => continue,
                    libc::EAGAIN => return,
                    _ => break,
                }
            }
            let n = usize::try_from(n).unwrap_or(0);
            if n == 0 {
                break;
            }
            let keep = cap.saturating_sub(self.total).min(n as u64) as usize;
            self.total += n as u64;
            if keep > 0 {
                tx.send(&GuestMsg::Output {
                    id,
                    stream: self.kind,
                    data: Bytes(buf[..keep].to_vec()),
                });
            }
        }
        self.fd = None;
    }
}

/// Send SIGTERM to every process of the command's cgroup (children in
/// other sessions and process groups included).
fn terminate_all(leaf: &crate::process::cgroup::LeafGroup) {
    for p in leaf.pids() {
        // SAFETY: signalling a process of the command's group.
        unsafe { libc::kill(p, libc::SIGTERM) };
    }
}

fn run(spec: ExecSpec, confinement: &Arc<Confinement>, groups: &Groups, tx: &Sender) {
    let id = spec.id;
    let prepared = match Prepared::new(&spec.argv, &spec.env, &spec.cwd, &spec.rlimits) {
        Ok(p) => p,
        Err(e) => return failed(tx, id, e, None),
    };
    let leaf = match groups.leaf(&spec.group) {
        Ok(l) => l,
        Err(e) => return failed(tx, id, e, None),
    };
    let procs = match leaf.procs_file() {
        Ok(f) => f,
        Err(e) => return failed(tx, id, format!("the command's cgroup: {e}"), None),
    };
    let pipes = (|| Ok::<_, std::io::Error>((sys::pipe()?, sys::pipe()?, sys::pipe()?)))();
    let ((in_r, in_w), (out_r, out_w), (err_r, err_w)) = match pipes {
        Ok(p) => p,
        Err(e) => return failed(tx, id, format!("pipes: {e}"), None),
    };
    let program = spec.argv.first().cloned().unwrap_or_default();
    let started = Instant::now();
    let stdio = [in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
    let pid = match spawn::spawn(&prepared, confinement, stdio, procs.as_raw_fd()) {
        Ok(pid) => pid,
        Err(errno) => {
            let e = std::io::Error::from_raw_os_error(errno);
            return failed(
                tx,
                id,
                format!("cannot execute {program:?}: {e}"),
                Some(errno),
            );
        }
    };
    drop((in_r, out_w, err_w, procs));
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            leaf.kill_and_wait(TREE_END);
            // SAFETY: reaping the child we just started (killed above).
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            return failed(tx, id, format!("pidfd: {e}"), None);
        }
    };
    // Processes the command left running when it exited (ended then).
    let mut leftover = 0u64;
    for fd in [&in_w, &out_r, &err_r] {
        set_nonblocking(fd);
    }
    let mut stdin = (!spec.stdin.0.is_empty()).then_some(in_w);
    let mut written = 0usize;
    let mut outs = [
        Out {
            fd: Some(out_r),
            kind: StreamKind::Stdout,
            total: 0,
        },
        Out {
            fd: Some(err_r),
            kind: StreamKind::Stderr,
            total: 0,
        },
    ];
    let cap = spec.output_bytes;
    let mut buf = vec![0u8; CHUNK];
    let deadline = started + Duration::from_millis(spec.wall_ms);
    let grace = Duration::from_millis(spec.kill_grace_ms);
    let mut timed_out = false;
    // After SIGTERM: when to send SIGKILL (None once sent).
    let mut kill_at: Option<Instant> = None;
    let mut exited: Option<(i32, libc::rusage, Duration)> = None;
    let mut drain_until = None;
    loop {
        let now = Instant::now();
        let wake = match (exited.is_some(), timed_out, kill_at) {
            (true, ..) => drain_until,
            (false, false, _) => Some(deadline),
            (false, true, at) => at,
        };
        let timeout_ms = wake.map_or(-1, |w| {
            i32::try_from(w.saturating_duration_since(now).as_millis()).unwrap_or(i32::MAX)
        });
        let mut fds = [libc::pollfd {
            fd: -1,
            events: 0,
            revents: 0,
        }; 4];
        for (slot, out) in fds.iter_mut().zip(&outs) {
            slot.fd = out.fd.as_ref().map_or(-1, |f| f.as_raw_fd());
            slot.events = libc::POLLIN;
        }
        fds[2].fd = stdin.as_ref().map_or(-1, |f| f.as_raw_fd());
        fds[2].events = libc::POLLOUT;
        fds[3].fd = if exited.is_none() {
            pidfd.as_raw_fd()
        } else {
            -1
        };
        fds[3].events = libc::POLLIN;
        // SAFETY: a live array of pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 4, timeout_ms) };
        if n < 0 && sys::errno() != libc::EINTR {
            break;
        }
        for (slot, out) in fds.iter().zip(outs.iter_mut()) {
            if slot.revents != 0 {
                out.pump(id, cap, &mut buf, tx);
            }
        }
        if fds[2].revents != 0 {
            if let Some(w) = &stdin {
                let rest = &spec.stdin.0[written..];
                // SAFETY: writing from a live slice to our descriptor.
                let r = unsafe { libc::write(w.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
                if r > 0 {
                    written += usize::try_from(r).unwrap_or(0);
                }
                if written >= spec.stdin.0.len() || (r < 0 && sys::errno() != libc::EAGAIN) {
                    stdin = None;
                }
            }
        }
        if fds[3].revents != 0 && exited.is_none() {
            // Whatever the command started ends with it, wherever it went
            // (other sessions, double forks): its whole cgroup, before the
            // result is reported, so nothing of it runs on into the next
            // command.
            leftover = leaf.pids().len() as u64;
            leaf.kill_and_wait(TREE_END);
            // SAFETY: reaping the command (a zombie now) into locals.
            unsafe {
                let mut st = 0;
                let mut ru: libc::rusage = std::mem::zeroed();
                if libc::wait4(pid, &mut st, 0, &mut ru) == pid {
                    exited = Some((st, ru, started.elapsed()));
                }
            }
            stdin = None;
            drain_until = Some(Instant::now() + DRAIN);
        }
        if exited.is_some() && outs.iter().all(|o| o.fd.is_none()) {
            break;
        }
        let now = Instant::now();
        if exited.is_some() {
            if drain_until.is_some_and(|d| now >= d) {
                break;
            }
        } else if !timed_out && now >= deadline {
            timed_out = true;
            terminate_all(&leaf);
            kill_at = Some(now + grace);
        } else if kill_at.is_some_and(|k| now >= k) {
            // Every process of the command at once.
            leaf.kill();
            kill_at = None;
        }
    }
    let Some((status, usage, duration)) = exited else {
        leaf.kill_and_wait(TREE_END);
        // SAFETY: the loop ended on a poll failure: reap (killed above).
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        return failed(tx, id, "lost track of the command".into(), None);
    };
    // Empty now (ended above); its figures, then it is removed.
    let group = GroupReport::from_usage(&leaf.finish(), leftover);
    let status = if timed_out {
        GuestStatus::TimedOut
    } else if libc::WIFEXITED(status) {
        GuestStatus::Exit(libc::WEXITSTATUS(status))
    } else {
        GuestStatus::Signal(libc::WTERMSIG(status))
    };
    let us = |tv: libc::timeval| {
        u64::try_from(tv.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(tv.tv_usec).unwrap_or(0)
    };
    tx.send(&GuestMsg::Exited(ExitReport {
        id,
        status,
        stdout_total: outs[0].total,
        stderr_total: outs[1].total,
        user_cpu_us: us(usage.ru_utime),
        system_cpu_us: us(usage.ru_stime),
        max_rss_bytes: u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
        duration_us: u64::try_from(duration.as_micros()).unwrap_or(u64::MAX),
        group: Some(group),
    }));
}
