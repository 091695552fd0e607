//! Starting one guest command with `clone(CLONE_VM | CLONE_VFORK)`, as
//! `posix_spawn` does, rather than `fork`: under TCG, copying the agent's
//! page tables and then taking copy-on-write faults in its threads is a
//! large part of a command's cost. The child shares the agent's memory
//! until it executes, so it runs on its own stack, with every signal
//! blocked, and makes only raw system calls on data prepared beforehand.

use std::ffi::CString;
use std::os::fd::RawFd;

use super::confine::{Confinement, GUEST_USER};
use crate::process::sys;

/// The child's stack (it runs a few system calls, no library code that
/// could need more).
const STACK_BYTES: usize = 64 << 10;

/// Everything the child needs, built before the clone.
pub(crate) struct Prepared {
    /// Candidate paths of the program (`PATH` searched beforehand).
    pub programs: Vec<CString>,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _env: Vec<CString>,
    env_ptrs: Vec<*const libc::c_char>,
    cwd: CString,
    rlimits: Vec<(libc::__rlimit_resource_t, libc::rlimit)>,
}

impl Prepared {
    /// Build the C strings and pointer arrays of a command.
    pub fn new(
        argv: &[String],
        env: &[(String, String)],
        cwd: &str,
        rlimits: &[crate::vm::protocol::Rlimit],
    ) -> Result<Prepared, String> {
        let c = |s: &str, what: &str| {
            CString::new(s).map_err(|_| format!("{what} contains a NUL byte"))
        };
        let program = argv.first().ok_or("empty argv")?;
        let programs = crate::process::spawn::programs(program, env).map_err(|e| e.to_string())?;
        let argv = argv
            .iter()
            .map(|a| c(a, "argument"))
            .collect::<Result<Vec<_>, _>>()?;
        let env = env
            .iter()
            .map(|(k, v)| c(&format!("{k}={v}"), "environment"))
            .collect::<Result<Vec<_>, _>>()?;
        let ptrs = |v: &[CString]| {
            let mut p: Vec<*const libc::c_char> = v.iter().map(|s| s.as_ptr()).collect();
            p.push(std::ptr::null());
            p
        };
        Ok(Prepared {
            programs,
            argv_ptrs: ptrs(&argv),
            _argv: argv,
            env_ptrs: ptrs(&env),
            _env: env,
            cwd: c(cwd, "cwd")?,
            rlimits: rlimits
                .iter()
                .map(|r| {
                    (
                        r.resource,
                        libc::rlimit {
                            rlim_cur: r.soft,
                            rlim_max: r.hard,
                        },
                    )
                })
                .collect(),
        })
    }
}

/// What the child reads; lives on the parent's stack while the parent is
/// suspended (`CLONE_VFORK`).
struct Ctx<'a> {
    prepared: &'a Prepared,
    confinement: &'a Confinement,
    stdio: [RawFd; 3],
    /// The command's `cgroup.procs`, open for writing.
    cgroup_procs: RawFd,
    report: RawFd,
}

/// Start the command with `stdio` as its standard streams, in the cgroup
/// whose `cgroup.procs` is open as `cgroup_procs` (it moves itself there
/// before anything else, so everything it starts is in it). Returns its
/// pid once it has executed, or the errno of the step that failed.
pub(crate) fn spawn(
    prepared: &Prepared,
    confinement: &Confinement,
    stdio: [RawFd; 3],
    cgroup_procs: RawFd,
) -> Result<libc::pid_t, i32> {
    let (report_r, report_w) = sys::pipe().map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    use std::os::fd::AsRawFd;
    let ctx = Ctx {
        prepared,
        confinement,
        stdio,
        cgroup_procs,
        report: report_w.as_raw_fd(),
    };
    let mut stack = vec![0u8; STACK_BYTES];
    // The stack grows down from its (16-byte aligned) end.
    let top = (stack.as_mut_ptr() as usize + STACK_BYTES) & !15;
    // SAFETY: sigset_t is plain data; the calls fill and install it.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        // No signal handler may run in the child: it shares our memory.
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        // SAFETY: the child runs `child_main` on its own stack until it
        // executes or exits, making only raw system calls; we are
        // suspended until then, so `ctx` and `stack` outlive its use.
        let pid = libc::clone(
            child_main,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &ctx as *const Ctx<'_> as *mut libc::c_void,
        );
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        pid
    };
    if pid < 0 {
        return Err(sys::errno());
    }
    drop(report_w);
    drop(stack);
    // End of stream: the pipe closed on a successful execve.
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reading into a local buffer from our pipe.
        let n = unsafe {
            libc::read(
                report_r.as_raw_fd(),
                buf[got..].as_mut_ptr().cast(),
                buf.len() - got,
            )
        };
        if n < 0 && sys::errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            break;
        }
        got += usize::try_from(n).unwrap_or(0);
    }
    if got == 0 {
        return Ok(pid);
    }
    let mut st = 0;
    // SAFETY: reaping the child that failed before executing.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    Err(i32::from_ne_bytes(buf))
}

extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `Ctx`, alive while the parent waits.
    let ctx = unsafe { &*(arg as *const Ctx<'_>) };
    let errno = child(ctx);
    // SAFETY: writing the errno to our pipe, then leaving without running
    // anything of the parent's.
    unsafe {
        sys::write_all_raw(ctx.report, &errno.to_ne_bytes());
        libc::_exit(127)
    }
}

/// The child's steps; returns the errno of the one that failed (`execve`
/// does not return when it succeeds).
fn child(ctx: &Ctx<'_>) -> i32 {
    let p = ctx.prepared;
    // SAFETY (all): raw system calls on descriptors and C strings prepared
    // by the parent; nothing allocates or takes a lock.
    unsafe {
        // Into the command's cgroup first ("0": the calling process),
        // while still root, before it can start anything.
        if libc::write(ctx.cgroup_procs, b"0".as_ptr().cast(), 1) != 1 {
            return sys::errno();
        }
        if libc::setsid() < 0 {
            return sys::errno();
        }
        for (to, &from) in ctx.stdio.iter().enumerate() {
            if libc::dup2(from, to as libc::c_int) < 0 {
                return sys::errno();
            }
        }
        // The agent ignores SIGPIPE; the command starts with the default.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        // As root, so the host-computed limits apply exactly.
        for (res, lim) in &p.rlimits {
            if libc::setrlimit(*res, lim) != 0 {
                return sys::errno();
            }
        }
        // Raw set*id calls: glibc's wrappers would signal the agent's
        // threads, whose memory this child shares.
        let id = libc::c_long::from(GUEST_USER);
        if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) < 0
            || libc::syscall(libc::SYS_setresgid, id, id, id) < 0
            || libc::syscall(libc::SYS_setresuid, id, id, id) < 0
        {
            return sys::errno();
        }
        if libc::chdir(p.cwd.as_ptr()) < 0 {
            return sys::errno();
        }
        if let Err(e) = ctx.confinement.apply_in_child() {
            return e.raw_os_error().unwrap_or(libc::EPERM);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        let mut last = libc::ENOENT;
        for prog in &p.programs {
            libc::execve(prog.as_ptr(), p.argv_ptrs.as_ptr(), p.env_ptrs.as_ptr());
            last = sys::errno();
            if !matches!(last, libc::ENOENT | libc::ENOTDIR | libc::EACCES) {
                break;
            }
        }
        last
    }
}
