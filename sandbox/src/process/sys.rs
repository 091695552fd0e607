//! Thin wrappers over the raw system calls the process backend needs and
//! that `libc` does not wrap (or wraps in ways unsafe after a raw clone).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// `LANDLOCK_CREATE_RULESET_VERSION`.
const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
/// `LANDLOCK_RULE_PATH_BENEATH`.
pub(crate) const LANDLOCK_RULE_PATH_BENEATH: libc::c_long = 1;

/// `struct landlock_path_beneath_attr` (packed in the kernel ABI).
#[repr(C, packed)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct LandlockPathBeneathAttr {
    /// Allowed access rights.
    pub allowed_access: u64,
    /// An `O_PATH` fd of the directory or file.
    pub parent_fd: i32,
}

/// `struct mount_attr` for `mount_setattr(2)`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;
pub(crate) const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x0000_0004;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;

fn cvt(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The Landlock ABI version of the running kernel.
pub(crate) fn landlock_abi() -> io::Result<u8> {
    // SAFETY: a NULL attribute with size 0 and the VERSION flag is the
    // documented way to query the ABI; no memory is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    cvt(rc).map(|v| u8::try_from(v).unwrap_or(u8::MAX))
}

/// seccomp filters with `SECCOMP_RET_ERRNO` are available.
pub(crate) fn probe_seccomp() -> io::Result<()> {
    let action: u32 = libc::SECCOMP_RET_ERRNO;
    // SAFETY: SECCOMP_GET_ACTION_AVAIL reads one u32 from the pointer, which
    // points at a live local.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0,
            &action as *const u32,
        )
    };
    cvt(rc).map(|_| ())
}

/// `/dev/fuse` can be opened read-write.
pub(crate) fn probe_fuse() -> io::Result<()> {
    open_fuse().map(drop)
}

/// Open `/dev/fuse` (close-on-exec).
pub(crate) fn open_fuse() -> io::Result<OwnedFd> {
    let path = c"/dev/fuse";
    // SAFETY: path is a valid NUL-terminated string.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `mount_setattr(2)` exists (EBADF on a bad fd means it does).
pub(crate) fn probe_mount_setattr() -> io::Result<()> {
    let attr = MountAttr::default();
    // SAFETY: the attr pointer and size describe a live local.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    match cvt(rc) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBADF) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `pidfd_open(2)` works.
pub(crate) fn probe_pidfd() -> io::Result<()> {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    pidfd_open(me).map(drop)
}

/// The effective uid.
pub(crate) fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// The effective gid.
pub(crate) fn getegid() -> u32 {
    // SAFETY: getegid has no preconditions.
    unsafe { libc::getegid() }
}

/// Open a pidfd for a child we have not yet reaped.
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this new descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Fork-like `clone(2)` with namespace flags: returns 0 in the child.
///
/// # Safety
/// In a multithreaded parent the child may only do async-signal-safe work
/// (no allocation, no locks) and must leave with `_exit` or `execve`.
pub(crate) unsafe fn raw_clone(flags: libc::c_int) -> io::Result<libc::pid_t> {
    let flags = libc::c_long::from(flags) | libc::c_long::from(libc::SIGCHLD);
    // SAFETY: a NULL stack makes clone behave like fork (the child runs on
    // a copy of the caller's stack); the caller upholds the child's contract.
    let rc = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    let pid = cvt(rc)?;
    libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ECHILD))
}

/// `CLONE_INTO_CGROUP` of `clone3(2)`.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` of `clone3(2)` (`CLONE_ARGS_SIZE_VER2`).
#[repr(C, align(8))]
#[derive(Debug, Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Fork-like `clone3(2)` with namespace `flags` that starts the child in
/// the cgroup v2 directory open as `cgroup` (`CLONE_INTO_CGROUP`): it never
/// runs a single instruction outside it. Returns 0 in the child.
///
/// # Safety
/// As [`raw_clone`].
pub(crate) unsafe fn raw_clone_into(flags: libc::c_int, cgroup: RawFd) -> io::Result<libc::pid_t> {
    let args = CloneArgs {
        // The flags are a bit set: reinterpret, do not sign-extend.
        flags: u64::from(flags as u32) | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: u64::try_from(cgroup).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?,
        ..CloneArgs::default()
    };
    // SAFETY: args is a live, correctly sized clone_args; no stack is
    // given, so the child runs on a copy of ours (like fork); the caller
    // upholds the child's contract.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    let pid = cvt(rc)?;
    libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ECHILD))
}

/// Create (and immediately end) a child in new namespaces `flags`.
pub(crate) fn probe_clone(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: the child only calls _exit, which is async-signal-safe.
    let pid = unsafe { raw_clone(flags)? };
    if pid == 0 {
        // SAFETY: _exit ends the child without running any parent state.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child; status points at a local.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A close-on-exec pipe: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just created both descriptors; we own them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Build a detached FUSE mount in the caller's (initial) user namespace from
/// a `mount(2)`-style options string; returns the mount fd.
///
/// Done in the parent because the kernel only accepts a FUSE mount from the
/// user namespace that opened `/dev/fuse`, and the sandbox cannot open the
/// host's root-only `/dev/fuse` itself.
pub(crate) fn fuse_fsmount(options: &str, attrs: u64) -> io::Result<OwnedFd> {
    // SAFETY: the name is a valid C string.
    let fs = cvt(unsafe { libc::syscall(libc::SYS_fsopen, c"fuse".as_ptr(), FSOPEN_CLOEXEC) })?;
    let fs = RawFd::try_from(fs).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: fsopen just returned this descriptor.
    let fs = unsafe { OwnedFd::from_raw_fd(fs) };
    use std::os::fd::AsRawFd;
    for opt in options.split(',').filter(|o| !o.is_empty()) {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        let key = std::ffi::CString::new(key)?;
        let rc = match value {
            Some(v) => {
                let v = std::ffi::CString::new(v)?;
                // SAFETY: key and value are valid C strings for the call.
                unsafe {
                    libc::syscall(
                        libc::SYS_fsconfig,
                        fs.as_raw_fd(),
                        FSCONFIG_SET_STRING,
                        key.as_ptr(),
                        v.as_ptr(),
                        0,
                    )
                }
            }
            // SAFETY: key is a valid C string; flags take no value.
            None => unsafe {
                libc::syscall(
                    libc::SYS_fsconfig,
                    fs.as_raw_fd(),
                    FSCONFIG_SET_FLAG,
                    key.as_ptr(),
                    std::ptr::null::<u8>(),
                    0,
                )
            },
        };
        cvt(rc)?;
    }
    // SAFETY: integer arguments only.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<u8>(),
            std::ptr::null::<u8>(),
            0,
        )
    })?;
    // SAFETY: integer arguments only.
    let m =
        cvt(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })?;
    let m = RawFd::try_from(m).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: fsmount just returned this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(m) })
}

/// Write all of `buf` to `fd` with raw `write(2)` (async-signal-safe).
///
/// # Safety
/// `fd` must be a valid descriptor.
pub(crate) unsafe fn write_all_raw(fd: RawFd, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: buf is a live slice; the caller guarantees fd.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            // SAFETY: reading errno is async-signal-safe.
            if unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            return false;
        }
        let n = usize::try_from(n).unwrap_or(0);
        if n == 0 {
            return false;
        }
        buf = &buf[n..];
    }
    true
}

/// Current errno (async-signal-safe).
pub(crate) fn errno() -> i32 {
    // SAFETY: __errno_location always returns a valid thread-local pointer.
    unsafe { *libc::__errno_location() }
}

/// `OPEN_TREE_CLONE` of `open_tree(2)`.
const OPEN_TREE_CLONE: libc::c_uint = 1;

/// A new detached copy of the (detached) mount `mount`, sharing its
/// superblock: `open_tree(mount, "", OPEN_TREE_CLONE | AT_EMPTY_PATH)`.
pub(crate) fn open_tree_clone(mount: RawFd) -> io::Result<OwnedFd> {
    let flags =
        OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint;
    // SAFETY: an fd, a valid empty C string and integer flags.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_open_tree, mount, c"".as_ptr(), flags) })?;
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: open_tree just returned this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A detached bind mount of `path` (a file or a directory, not recursive):
/// `open_tree(AT_FDCWD, path, OPEN_TREE_CLONE)`. Made by a privileged
/// parent for a child that could not reach `path` itself.
pub(crate) fn bind_tree(path: &std::ffi::CStr) -> io::Result<OwnedFd> {
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    // SAFETY: a valid C string and integer flags.
    let fd =
        cvt(unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) })?;
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: open_tree just returned this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Set `MOUNT_ATTR_*` flags `set` on the (detached) mount `mount`.
pub(crate) fn set_mount_attr(mount: RawFd, set: u64) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        ..MountAttr::default()
    };
    // SAFETY: an fd, a valid empty C string, and a pointer and size that
    // describe a live local.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    cvt(rc).map(|_| ())
}

/// A detached bind mount of `path` (see [`bind_tree`]) with `MOUNT_ATTR_*`
/// flags `set` applied, for a child to attach with `move_mount`.
pub(crate) fn detached_bind(path: &std::path::Path, set: u64) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let fd = bind_tree(&c)?;
    set_mount_attr(fd.as_raw_fd(), set)?;
    Ok(fd)
}
