//! The sandbox's init (pid 1 of the new pid namespace) and the command it
//! forks; and the same set-up for a program jailed on its own (QEMU).
//!
//! Runs after a raw `clone` from a multithreaded parent: only
//! async-signal-safe system calls here, no allocation, no locks, no glibc
//! wrappers that consult thread state (set*id go through raw syscalls).

use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use super::plan::{record, tag, Op, Plan};
use super::sys::{self, LandlockPathBeneathAttr, MountAttr, MOVE_MOUNT_F_EMPTY_PATH};
use crate::error::SetupStep;

/// Set by init's SIGTERM handler: the parent's deadline passed.
static TERM_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigterm(_sig: libc::c_int) {
    TERM_REQUESTED.store(true, Ordering::SeqCst);
}

/// Report `step` failing with the current errno and exit.
fn fail(plan: &Plan, step: SetupStep) -> ! {
    let errno = sys::errno();
    let rec = record(tag::SETUP_ERROR, step as u8, errno);
    // SAFETY: report is our pipe's write end; _exit never returns.
    unsafe {
        sys::write_all_raw(plan.fds.report, &rec);
        libc::_exit(126)
    }
}

fn check(plan: &Plan, rc: libc::c_long, step: SetupStep) {
    if rc < 0 {
        fail(plan, step);
    }
}

fn opt_ptr(s: &Option<std::ffi::CString>) -> *const libc::c_char {
    s.as_ref().map_or(ptr::null(), |c| c.as_ptr())
}

/// Run one root-building operation.
fn run_op(plan: &Plan, op: &Op) {
    // SAFETY (all arms): every pointer comes from a CString owned by the
    // plan, which outlives the call; the calls are plain system calls.
    let rc: libc::c_long = unsafe {
        match op {
            Op::Mkdir { path, mode } => libc::c_long::from(libc::mkdir(path.as_ptr(), *mode)),
            Op::Touch { path, mode } => {
                let fd = libc::open(
                    path.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                    *mode,
                );
                if fd >= 0 {
                    libc::close(fd);
                }
                libc::c_long::from(fd)
            }
            Op::Symlink { target, link } => {
                libc::c_long::from(libc::symlink(target.as_ptr(), link.as_ptr()))
            }
            Op::Mount {
                src,
                dst,
                fstype,
                flags,
                data,
            } => libc::c_long::from(libc::mount(
                opt_ptr(src),
                dst.as_ptr(),
                opt_ptr(fstype),
                *flags,
                opt_ptr(data).cast(),
            )),
            Op::SetAttr {
                path,
                set,
                recursive,
            } => {
                let attr = MountAttr {
                    attr_set: *set,
                    ..MountAttr::default()
                };
                let flags = if *recursive { libc::AT_RECURSIVE } else { 0 };
                libc::syscall(
                    libc::SYS_mount_setattr,
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    flags | libc::AT_SYMLINK_NOFOLLOW,
                    &attr as *const MountAttr,
                    std::mem::size_of::<MountAttr>(),
                )
            }
            Op::MoveMount { fd, dst } => libc::syscall(
                libc::SYS_move_mount,
                *fd,
                c"".as_ptr(),
                libc::AT_FDCWD,
                dst.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            ),
            Op::Unlink { path } => libc::c_long::from(libc::unlink(path.as_ptr())),
        }
    };
    check(plan, rc, op.step());
}

/// Close every inherited descriptor except the plan's (the parent is
/// multithreaded: other threads' descriptors leak into a fork).
fn close_others(plan: &Plan) {
    let (keep, n) = plan.fds.sorted();
    let mut from: libc::c_uint = 3;
    for &fd in &keep[..n] {
        let fd = fd as libc::c_uint;
        if fd > from {
            // SAFETY: closing a range of descriptors we do not use.
            let rc = unsafe { libc::syscall(libc::SYS_close_range, from, fd - 1, 0) };
            check(plan, rc, SetupStep::CloseFds);
        }
        from = from.max(fd + 1);
    }
    // SAFETY: as above, up to the largest possible descriptor.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, from, libc::c_uint::MAX, 0) };
    check(plan, rc, SetupStep::CloseFds);
}

/// Read one handshake byte; the parent closing the pipe means it is gone.
fn await_parent(plan: &Plan) {
    let mut b = [0u8; 1];
    loop {
        // SAFETY: reading one byte into a local buffer.
        let n = unsafe { libc::read(plan.fds.go, b.as_mut_ptr().cast(), 1) };
        if n == 1 {
            return;
        }
        if n < 0 && sys::errno() == libc::EINTR {
            continue;
        }
        // SAFETY: the parent is gone; nothing to report to.
        unsafe { libc::_exit(125) };
    }
}

fn become_root_inside(plan: &Plan) {
    // Raw syscalls: glibc's set*id would try to signal threads that do not
    // exist in this child.
    // SAFETY (all): integer-only system calls.
    unsafe {
        if plan.clear_groups {
            let rc = libc::syscall(libc::SYS_setgroups, 0, ptr::null::<libc::gid_t>());
            check(plan, rc, SetupStep::Identity);
        }
        check(
            plan,
            libc::syscall(libc::SYS_setresgid, 0, 0, 0),
            SetupStep::Identity,
        );
        check(
            plan,
            libc::syscall(libc::SYS_setresuid, 0, 0, 0),
            SetupStep::Identity,
        );
        // After the identity change (which clears them): die with the
        // parent, and keep our memory (stele's environment!) unreadable.
        check(
            plan,
            libc::c_long::from(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL)),
            SetupStep::Identity,
        );
        check(
            plan,
            libc::c_long::from(libc::prctl(libc::PR_SET_DUMPABLE, 0)),
            SetupStep::Identity,
        );
    }
}

fn pivot(plan: &Plan) {
    // SAFETY (all): pointers are CStrings owned by the plan.
    unsafe {
        let rc = libc::syscall(
            libc::SYS_pivot_root,
            plan.newroot.as_ptr(),
            plan.put_old.as_ptr(),
        );
        check(plan, rc, SetupStep::PivotRoot);
        check(
            plan,
            libc::c_long::from(libc::chdir(c"/".as_ptr())),
            SetupStep::PivotRoot,
        );
        check(
            plan,
            libc::c_long::from(libc::umount2(c"/.oldroot".as_ptr(), libc::MNT_DETACH)),
            SetupStep::PivotRoot,
        );
        check(
            plan,
            libc::c_long::from(libc::rmdir(c"/.oldroot".as_ptr())),
            SetupStep::PivotRoot,
        );
    }
}

fn apply_landlock(plan: &Plan) {
    for rule in &plan.rules {
        // SAFETY: path is a CString owned by the plan.
        let fd = unsafe { libc::open(rule.path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        check(plan, libc::c_long::from(fd), SetupStep::Landlock);
        let attr = LandlockPathBeneathAttr {
            allowed_access: rule.access,
            parent_fd: fd,
        };
        // SAFETY: attr is a live local of the kernel's packed layout.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                plan.fds.ruleset,
                sys::LANDLOCK_RULE_PATH_BENEATH,
                &attr as *const LandlockPathBeneathAttr,
                0,
            )
        };
        // SAFETY: fd was opened above.
        unsafe { libc::close(fd) };
        check(plan, rc, SetupStep::Landlock);
    }
    // SAFETY: integer-only prctl and syscall.
    unsafe {
        check(
            plan,
            libc::c_long::from(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)),
            SetupStep::Privileges,
        );
        let rc = libc::syscall(libc::SYS_landlock_restrict_self, plan.fds.ruleset, 0);
        check(plan, rc, SetupStep::Landlock);
        libc::close(plan.fds.ruleset);
    }
}

/// Drop every capability for good (we are uid 0 inside the user namespace).
fn drop_capabilities(plan: &Plan) {
    let bits = libc::SECBIT_NOROOT
        | libc::SECBIT_NOROOT_LOCKED
        | libc::SECBIT_NO_SETUID_FIXUP
        | libc::SECBIT_NO_SETUID_FIXUP_LOCKED
        | libc::SECBIT_KEEP_CAPS_LOCKED
        | libc::SECBIT_NO_CAP_AMBIENT_RAISE
        | libc::SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    // SAFETY (all): integer-only prctls; capset gets pointers to locals.
    unsafe {
        check(
            plan,
            libc::c_long::from(libc::prctl(libc::PR_SET_SECUREBITS, bits)),
            SetupStep::Privileges,
        );
        let mut cap = 0;
        while cap <= plan.cap_last {
            check(
                plan,
                libc::c_long::from(libc::prctl(libc::PR_CAPBSET_DROP, cap)),
                SetupStep::Privileges,
            );
            cap += 1;
        }
        check(
            plan,
            libc::c_long::from(libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            )),
            SetupStep::Privileges,
        );
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let header = Header {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let data = [Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        let rc = libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr());
        check(plan, rc, SetupStep::Privileges);
    }
}

fn install_seccomp(plan: &Plan) {
    for prog in &plan.seccomp {
        // apply_filter only builds a struct on the stack and makes two
        // system calls (no-new-privs, seccomp): safe after fork.
        if seccompiler::apply_filter(prog).is_err() {
            fail(plan, SetupStep::Seccomp);
        }
    }
}

/// The command process: stdio, cwd, limits, exec.
fn run_command(plan: &Plan) -> ! {
    // SAFETY (all): plain system calls on descriptors and CStrings of the plan.
    unsafe {
        if libc::setsid() < 0 {
            fail(plan, SetupStep::Stdio);
        }
        for (from, to) in [
            (plan.fds.stdin, 0),
            (plan.fds.stdout, 1),
            (plan.fds.stderr, 2),
        ] {
            if libc::dup2(from, to) < 0 {
                fail(plan, SetupStep::Stdio);
            }
        }
        // An explicit umask: the file server may have set stele's to 0.
        libc::umask(0o022);
        if libc::chdir(plan.cwd.as_ptr()) < 0 {
            fail(plan, SetupStep::Chdir);
        }
        for (res, lim) in &plan.rlimits {
            if libc::setrlimit(*res, lim) < 0 {
                fail(plan, SetupStep::Rlimit);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, ptr::null_mut());
        let mut last = libc::ENOENT;
        for prog in &plan.programs {
            libc::execve(
                prog.as_ptr(),
                plan.argv_ptrs.as_ptr(),
                plan.env_ptrs.as_ptr(),
            );
            last = sys::errno();
            if !matches!(last, libc::ENOENT | libc::ENOTDIR | libc::EACCES) {
                break;
            }
        }
        sys::write_all_raw(plan.fds.report, &record(tag::EXEC_ERROR, 0, last));
        libc::_exit(127)
    }
}

/// Identity, private mounts, hostname, the new root and `pivot_root`: the
/// part of set-up shared by the sandbox init and the jailed VMM.
fn build_root(plan: &Plan) {
    close_others(plan);
    await_parent(plan); // uid/gid maps written
    become_root_inside(plan);
    // SAFETY: integer-only syscall and a CString owned by the plan.
    unsafe {
        let rc = libc::mount(
            ptr::null(),
            c"/".as_ptr(),
            ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            ptr::null(),
        );
        check(plan, libc::c_long::from(rc), SetupStep::MountPrivate);
        libc::sethostname(plan.hostname.as_ptr(), plan.hostname.as_bytes().len());
    }
    for op in &plan.before_pivot {
        run_op(plan, op);
    }
    for &fd in plan.fds.mounts.as_slice() {
        // SAFETY: the detached mount is attached now; our copy is not needed.
        unsafe { libc::close(fd) };
    }
    pivot(plan);
    for op in &plan.after_pivot {
        run_op(plan, op);
    }
}

/// Landlock, no capabilities, seccomp: after these the process can only
/// give up more.
fn confine(plan: &Plan) {
    apply_landlock(plan);
    drop_capabilities(plan);
    install_seccomp(plan);
}

/// Entry point of a cloned child that becomes one confined program itself
/// (the micro-VM's QEMU): the root is built, the process confined, and
/// the program executed directly, as PID 1 of its namespace. A successful
/// `execve` closes the report pipe (close-on-exec), which is how the
/// parent learns it happened. Never returns.
pub(crate) fn run_jailed(plan: &Plan) -> ! {
    build_root(plan);
    confine(plan);
    run_command(plan)
}

/// Entry point of the cloned child. Never returns.
pub(crate) fn run_init(plan: &Plan) -> ! {
    build_root(plan);
    if let Some(prog) = &plan.notify_filter {
        let rc = super::netnotify::install_and_send(prog, plan.fds.notify);
        check(plan, rc, SetupStep::Seccomp);
    }
    // SAFETY: report is our pipe's write end.
    unsafe { sys::write_all_raw(plan.fds.report, &record(tag::READY, 0, 0)) };
    await_parent(plan); // proxy listening, workspace served
    confine(plan);

    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigterm as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        sa.sa_flags = 0; // no SA_RESTART: waitpid must return EINTR
        libc::sigaction(libc::SIGTERM, &sa, ptr::null_mut());
    }
    // SAFETY: fork-like clone; the command child runs only async-signal-safe code.
    let pid = match unsafe { sys::raw_clone(0) } {
        Ok(p) => p,
        Err(_) => fail(plan, SetupStep::Fork),
    };
    if pid == 0 {
        run_command(plan);
    }
    // SAFETY: init no longer needs the command's stdio.
    unsafe {
        libc::close(plan.fds.stdin);
        libc::close(plan.fds.stdout);
        libc::close(plan.fds.stderr);
    }
    let status = reap(pid);
    // SAFETY: report is our pipe's write end.
    unsafe {
        sys::write_all_raw(plan.fds.report, &record(tag::STATUS, 0, status));
        libc::_exit(0)
    }
}

/// Wait for the command; forward a SIGTERM from the parent to every process
/// of the namespace; once the command is gone, kill and reap the rest.
fn reap(cmd: libc::pid_t) -> i32 {
    let mut cmd_status = None;
    let mut forwarded = false;
    loop {
        let mut st = 0;
        // SAFETY: waiting for any child into a local.
        let r = unsafe { libc::waitpid(-1, &mut st, libc::__WALL) };
        if r == cmd {
            cmd_status = Some(st);
            // Whatever the command left behind dies with it.
            // SAFETY: kill(-1) from a pid-namespace init reaches only the namespace.
            unsafe { libc::kill(-1, libc::SIGKILL) };
            continue;
        }
        if r < 0 {
            match sys::errno() {
                libc::EINTR => {
                    if TERM_REQUESTED.load(Ordering::SeqCst) && !forwarded {
                        forwarded = true;
                        // SAFETY: as above.
                        unsafe { libc::kill(-1, libc::SIGTERM) };
                    }
                }
                _ => break,
            }
        }
    }
    cmd_status.unwrap_or(0)
}
