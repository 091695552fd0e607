//! Running one command in the guest: spawn under the confinement, stream
//! its output, enforce the deadline (SIGTERM, then SIGKILL to the whole
//! process group), report how it ended and what it used.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::confine::{Confinement, GUEST_USER};
use super::Sender;
use crate::vm::protocol::{Bytes, ExecSpec, ExitReport, GuestMsg, GuestStatus, StreamKind, CHUNK};

/// Run `spec` on a thread of its own; everything is reported through `tx`.
pub(crate) fn spawn(spec: ExecSpec, confinement: Arc<Confinement>, tx: Sender) {
    let id = spec.id;
    let tx2 = tx.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("exec-{id}"))
        .spawn(move || run(spec, &confinement, &tx2));
    if let Err(e) = spawned {
        tx.send(&GuestMsg::Failed {
            id,
            error: format!("thread: {e}"),
            errno: None,
        });
    }
}

fn run(spec: ExecSpec, confinement: &Arc<Confinement>, tx: &Sender) {
    let Some((program, args)) = spec.argv.split_first() else {
        tx.send(&GuestMsg::Failed {
            id: spec.id,
            error: "empty argv".into(),
            errno: None,
        });
        return;
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .uid(GUEST_USER)
        // std drops supplementary groups when root sets a uid.
        .gid(GUEST_USER);
    let rlimits = spec.rlimits.clone();
    let conf = confinement.clone();
    // SAFETY: the closure runs between fork and exec and only makes raw
    // system calls (setsid, setrlimit, prctl, landlock, seccomp).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            for r in &rlimits {
                let lim = libc::rlimit {
                    rlim_cur: r.soft,
                    rlim_max: r.hard,
                };
                if libc::setrlimit(r.resource, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            conf.apply_in_child()
        });
    }
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tx.send(&GuestMsg::Failed {
                id: spec.id,
                error: format!("cannot execute {program:?}: {e}"),
                errno: e.raw_os_error(),
            });
            return;
        }
    };
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    let stdin = child.stdin.take();
    let input = spec.stdin.0;
    let feeder = std::thread::spawn(move || {
        if let Some(mut s) = stdin {
            let _ = s.write_all(&input);
        }
    });
    let cap = spec.output_bytes;
    let readers: Vec<_> = [
        (
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            StreamKind::Stdout,
        ),
        (
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            StreamKind::Stderr,
        ),
    ]
    .into_iter()
    .filter_map(|(r, kind)| r.map(|r| (r, kind)))
    .map(|(r, kind)| {
        let tx = tx.clone();
        let id = spec.id;
        std::thread::spawn(move || pump(r, kind, id, cap, &tx))
    })
    .collect();
    // Nothing above waited on the child; `child` keeps ownership of the
    // pid so wait4 below reaps it exactly once.
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut status = 0;
        // SAFETY: rusage is plain data written by the kernel.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait for our own child with valid out-pointers.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        let _ = done_tx.send((rc, status, usage));
        drop(child);
    });
    let wall = Duration::from_millis(spec.wall_ms);
    let mut timed_out = false;
    let waited = match done_rx.recv_timeout(wall) {
        Ok(w) => Some(w),
        Err(_) => {
            timed_out = true;
            // SAFETY: signalling the command's process group.
            unsafe { libc::kill(-pid, libc::SIGTERM) };
            match done_rx.recv_timeout(Duration::from_millis(spec.kill_grace_ms)) {
                Ok(w) => Some(w),
                Err(_) => {
                    // SAFETY: as above.
                    unsafe { libc::kill(-pid, libc::SIGKILL) };
                    done_rx.recv().ok()
                }
            }
        }
    };
    // Leftovers of the command (background jobs) would keep the output
    // pipes open: the command is over, so is its process group.
    // SAFETY: as above.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let duration = started.elapsed();
    let _ = feeder.join();
    let totals: Vec<u64> = readers.into_iter().map(|r| r.join().unwrap_or(0)).collect();
    let (status, usage) = match waited {
        Some((rc, status, usage)) if rc == pid => {
            let s = if timed_out {
                GuestStatus::TimedOut
            } else if libc::WIFEXITED(status) {
                GuestStatus::Exit(libc::WEXITSTATUS(status))
            } else {
                GuestStatus::Signal(libc::WTERMSIG(status))
            };
            (s, usage)
        }
        _ => {
            tx.send(&GuestMsg::Failed {
                id: spec.id,
                error: "lost track of the command".into(),
                errno: None,
            });
            return;
        }
    };
    let us = |tv: libc::timeval| {
        u64::try_from(tv.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(tv.tv_usec).unwrap_or(0)
    };
    tx.send(&GuestMsg::Exited(ExitReport {
        id: spec.id,
        status,
        stdout_total: totals.first().copied().unwrap_or(0),
        stderr_total: totals.get(1).copied().unwrap_or(0),
        user_cpu_us: us(usage.ru_utime),
        system_cpu_us: us(usage.ru_stime),
        max_rss_bytes: u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
        duration_us: u64::try_from(duration.as_micros()).unwrap_or(u64::MAX),
    }));
}

/// Forward a stream in chunks up to `cap` bytes; count the rest. Returns the total.
fn pump(mut r: Box<dyn Read + Send>, kind: StreamKind, id: u64, cap: u64, tx: &Sender) -> u64 {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) | Err(_) => return total,
            Ok(n) => n,
        };
        let keep = cap.saturating_sub(total).min(n as u64) as usize;
        total += n as u64;
        if keep > 0 {
            tx.send(&GuestMsg::Output {
                id,
                stream: kind,
                data: Bytes(buf[..keep].to_vec()),
            });
        }
    }
}
