//! The handle of a running QEMU process: reaped exactly once, killed if
//! dropped while it still runs.

use crate::process::sys;

/// A running, jailed QEMU (PID 1 of its own pid namespace).
#[derive(Debug)]
pub(crate) struct Vmm {
    pid: libc::pid_t,
    exited: Option<i32>,
}

impl Vmm {
    /// Take charge of the child `pid` (not yet reaped).
    pub fn new(pid: libc::pid_t) -> Vmm {
        Vmm { pid, exited: None }
    }

    /// The host pid.
    pub fn pid(&self) -> u32 {
        u32::try_from(self.pid).unwrap_or(0)
    }

    /// How QEMU ended, if it has (it is reaped then).
    pub fn try_wait(&mut self) -> Option<String> {
        if self.exited.is_none() {
            let mut st = 0;
            // SAFETY: our own, not yet reaped child; status is a local.
            if unsafe { libc::waitpid(self.pid, &mut st, libc::WNOHANG) } == self.pid {
                self.exited = Some(st);
            }
        }
        self.exited.map(describe)
    }

    /// SIGKILL (QEMU is not yet reaped, so the pid is still ours).
    pub fn kill(&mut self) {
        if self.exited.is_none() {
            // SAFETY: signalling our unreaped child.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }

    /// Wait for QEMU to end.
    pub fn wait(&mut self) {
        while self.exited.is_none() {
            let mut st = 0;
            // SAFETY: as in try_wait, blocking.
            let r = unsafe { libc::waitpid(self.pid, &mut st, 0) };
            if r == self.pid || (r < 0 && sys::errno() != libc::EINTR) {
                self.exited = Some(st);
            }
        }
    }
}

impl Drop for Vmm {
    fn drop(&mut self) {
        self.kill();
        self.wait();
    }
}

fn describe(st: i32) -> String {
    if libc::WIFEXITED(st) {
        format!("exit status {}", libc::WEXITSTATUS(st))
    } else if libc::WIFSIGNALED(st) {
        format!("killed by signal {}", libc::WTERMSIG(st))
    } else {
        format!("wait status {st:#x}")
    }
}
