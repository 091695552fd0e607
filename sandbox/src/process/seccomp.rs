//! The seccomp filter of the process sandbox (built with `seccompiler`).
//!
//! A deny list over an allow-by-default policy: language runtimes use a wide
//! and changing set of system calls, while the calls that widen the attack
//! surface (kernel interfaces for tracing, BPF, mounts, keys, io_uring,
//! modules, namespaces) are few and stable. Denied calls fail with `EPERM`;
//! `clone3` fails with `ENOSYS` so libc falls back to `clone`, whose flags
//! the filter can inspect.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::error::SandboxError;

/// System calls denied outright.
const DENIED: &[(&str, libc::c_long)] = &[
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("bpf", libc::SYS_bpf),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("setns", libc::SYS_setns),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("reboot", libc::SYS_reboot),
    ("acct", libc::SYS_acct),
    ("quotactl", libc::SYS_quotactl),
    ("syslog", libc::SYS_syslog),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("fanotify_init", libc::SYS_fanotify_init),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("kcmp", libc::SYS_kcmp),
    ("personality", libc::SYS_personality),
    ("vhangup", libc::SYS_vhangup),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("adjtimex", libc::SYS_adjtimex),
    #[cfg(target_arch = "x86_64")]
    ("iopl", libc::SYS_iopl),
    #[cfg(target_arch = "x86_64")]
    ("ioperm", libc::SYS_ioperm),
    #[cfg(target_arch = "x86_64")]
    ("uselib", libc::SYS_uselib),
];

/// Namespace flags that `clone`/`unshare` may not carry.
const NS_FLAGS: [libc::c_int; 8] = [
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWNS,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWCGROUP,
    0x80, // CLONE_NEWTIME
];

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SandboxError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(seccomp_err)
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, SandboxError> {
    SeccompRule::new(conds).map_err(seccomp_err)
}

fn seccomp_err(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Prepare {
        what: "seccomp filter",
        source: std::io::Error::other(e.to_string()),
    }
}

/// Rules matching any namespace flag in argument `arg`.
fn ns_flag_rules(arg: u8) -> Result<Vec<SeccompRule>, SandboxError> {
    NS_FLAGS
        .iter()
        .map(|f| {
            let f = *f as u64;
            rule(vec![cond(arg, SeccompCmpOp::MaskedEq(f), f)?])
        })
        .collect()
}

/// `socket(domain, type, …)` rules that match what is *denied*: any family
/// other than unix/inet/inet6, and inet/inet6 sockets that are not streams
/// (no UDP, so no DNS except through the proxy; no raw sockets).
fn socket_rules() -> Result<Vec<SeccompRule>, SandboxError> {
    denied_socket_rules(&[])
}

/// [`socket_rules`] without the families in `except`.
fn denied_socket_rules(except: &[libc::c_int]) -> Result<Vec<SeccompRule>, SandboxError> {
    let (unix, inet, inet6) = (
        libc::AF_UNIX as u64,
        libc::AF_INET as u64,
        libc::AF_INET6 as u64,
    );
    let mut other = vec![
        cond(0, SeccompCmpOp::Ne, unix)?,
        cond(0, SeccompCmpOp::Ne, inet)?,
        cond(0, SeccompCmpOp::Ne, inet6)?,
    ];
    for f in except {
        other.push(cond(0, SeccompCmpOp::Ne, *f as u64)?);
    }
    let mut rules = vec![rule(other)?];
    let stream = libc::SOCK_STREAM as u64;
    for family in [inet, inet6] {
        // The low 4 bits of `type` are the socket type (the rest are flags).
        for ty in (0u64..16).filter(|t| *t != stream) {
            rules.push(rule(vec![
                cond(0, SeccompCmpOp::Eq, family)?,
                cond(1, SeccompCmpOp::MaskedEq(0xf), ty)?,
            ])?);
        }
    }
    Ok(rules)
}

/// `ioctl`s that inject input into the terminal.
// The request type differs between libc targets (c_ulong vs c_int).
#[allow(clippy::unnecessary_cast)]
fn ioctl_rules() -> Result<Vec<SeccompRule>, SandboxError> {
    [libc::TIOCSTI as u64, libc::TIOCLINUX as u64]
        .into_iter()
        .map(|req| rule(vec![cond(1, SeccompCmpOp::Eq, req)?]))
        .collect()
}

fn target_arch() -> Result<TargetArch, SandboxError> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(seccomp_err)
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    on_match: SeccompAction,
) -> Result<BpfProgram, SandboxError> {
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, on_match, target_arch()?)
        .map_err(seccomp_err)?;
    BpfProgram::try_from(filter).map_err(seccomp_err)
}

/// How the sandbox answers network attempts it never allows (sockets of
/// other kinds than unix and TCP, connections elsewhere than the proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkAttempts {
    /// `EPERM` from the filter itself, unrecorded (services, the guest).
    Deny,
    /// A user notification to stele, which records the attempt with the
    /// Mediator and answers `EACCES` (commands of the process backend;
    /// see `netnotify.rs`). The main filter then leaves those sockets to
    /// the notifying one: `EPERM` would take precedence over a notification.
    Notify,
}

/// Build the sandbox's main BPF program (denials answer `EPERM`).
pub(crate) fn build_filter() -> Result<BpfProgram, SandboxError> {
    build_main_filter(NetworkAttempts::Deny)
}

/// The main program for `net`.
fn build_main_filter(net: NetworkAttempts) -> Result<BpfProgram, SandboxError> {
    let mut deny: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (_, nr) in DENIED {
        deny.insert(*nr, Vec::new());
    }
    deny.insert(libc::SYS_clone, ns_flag_rules(0)?);
    deny.insert(libc::SYS_unshare, ns_flag_rules(0)?);
    let sockets = match net {
        NetworkAttempts::Deny => socket_rules()?,
        // Only what is not a network attempt stays here: netlink (libc's
        // address-configuration queries make it constantly).
        NetworkAttempts::Notify => vec![rule(vec![cond(
            0,
            SeccompCmpOp::Eq,
            libc::AF_NETLINK as u64,
        )?])?],
    };
    deny.insert(libc::SYS_socket, sockets);
    deny.insert(libc::SYS_ioctl, ioctl_rules()?);
    // Fast Open sends over several messages at once: refused outright
    // (`sendto`/`sendmsg` with MSG_FASTOPEN go to the notifying filter).
    deny.insert(libc::SYS_sendmmsg, vec![fastopen_rule(3)?]);
    let main = compile(deny, SeccompAction::Errno(libc::EPERM as u32))?;
    Ok(main)
}

/// A rule matching `MSG_FASTOPEN` in argument `arg` (an implicit connect).
fn fastopen_rule(arg: u8) -> Result<SeccompRule, SandboxError> {
    let f = libc::MSG_FASTOPEN as u64;
    rule(vec![cond(arg, SeccompCmpOp::MaskedEq(f), f)?])
}

/// The `SECCOMP_RET_TRACE` data the notifying program is compiled with
/// and then rewritten from (`seccompiler` has no user-notification action).
const NOTIFY_PLACEHOLDER: u32 = 0x5e1e;

/// The program that hands network attempts to stele: `socket` of the kinds
/// [`socket_rules`] denies (but netlink), every `connect` (the address is
/// in the program's memory, which only stele can read), and `sendto` /
/// `sendmsg` with `MSG_FASTOPEN`. It must be installed with
/// `SECCOMP_FILTER_FLAG_NEW_LISTENER`.
pub(crate) fn build_notify_filter() -> Result<BpfProgram, SandboxError> {
    let mut m: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    m.insert(libc::SYS_socket, denied_socket_rules(&[libc::AF_NETLINK])?);
    m.insert(libc::SYS_connect, Vec::new());
    m.insert(libc::SYS_sendto, vec![fastopen_rule(3)?]);
    m.insert(libc::SYS_sendmsg, vec![fastopen_rule(2)?]);
    let mut prog = compile(m, SeccompAction::Trace(NOTIFY_PLACEHOLDER))?;
    let placeholder = libc::SECCOMP_RET_TRACE | NOTIFY_PLACEHOLDER;
    let ret_k = (libc::BPF_RET | libc::BPF_K) as u16;
    let mut rewritten = 0;
    for insn in prog.iter_mut() {
        if insn.code == ret_k && insn.k == placeholder {
            insn.k = libc::SECCOMP_RET_USER_NOTIF;
            rewritten += 1;
        }
    }
    if rewritten == 0 {
        return Err(seccomp_err("no notifying return in the compiled program"));
    }
    Ok(prog)
}

/// A second program making `clone3` fail with `ENOSYS`.
pub(crate) fn build_clone3_filter() -> Result<BpfProgram, SandboxError> {
    let mut m: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    m.insert(libc::SYS_clone3, Vec::new());
    compile(m, SeccompAction::Errno(libc::ENOSYS as u32))
}

/// A third program answering the terminal-query `ioctl`s (`TCGETS`, which
/// `isatty` and so every `open()` of a Python file makes, and `TIOCGWINSZ`)
/// with `ENOTTY` without entering the kernel's file code.
///
/// Nothing in the sandbox can be a terminal: stdio are pipes, the command
/// has no controlling terminal (`setsid`) so `/dev/tty` cannot be opened,
/// and there is no `/dev/pts` or `/dev/ptmx` (and no way to mount one). So
/// `ENOTTY` is what these calls would return anyway (except `EBADF` for a
/// closed descriptor) — but on a file of the mediated workspace the kernel
/// would first forward the `ioctl` to the file server: one FUSE round trip
/// per opened file, saved here.
// The request type differs between libc targets (c_ulong vs c_int).
#[allow(clippy::unnecessary_cast)]
pub(crate) fn build_tty_filter() -> Result<BpfProgram, SandboxError> {
    let rules = [libc::TCGETS as u64, libc::TIOCGWINSZ as u64]
        .into_iter()
        .map(|req| rule(vec![cond(1, SeccompCmpOp::Eq, req)?]))
        .collect::<Result<Vec<_>, _>>()?;
    let mut m: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    m.insert(libc::SYS_ioctl, rules);
    compile(m, SeccompAction::Errno(libc::ENOTTY as u32))
}

/// Every seccomp program a sandboxed program runs under, in installation
/// order (built once per sandbox; also for benchmarks that want to run a
/// program under exactly the sandbox's filters). With
/// [`NetworkAttempts::Notify`], the notifying program
/// ([`build_notify_filter`]) goes on top, installed by the init itself.
pub fn sandbox_filters_for(net: NetworkAttempts) -> Result<Vec<BpfProgram>, SandboxError> {
    Ok(vec![
        build_main_filter(net)?,
        build_clone3_filter()?,
        build_tty_filter()?,
    ])
}

/// [`sandbox_filters_for`] with network attempts denied by the filter.
pub fn sandbox_filters() -> Result<Vec<BpfProgram>, SandboxError> {
    sandbox_filters_for(NetworkAttempts::Deny)
}

/// Names of the system calls denied outright (for docs and `check`).
pub fn denied_syscalls() -> Vec<&'static str> {
    DENIED.iter().map(|(n, _)| *n).collect()
}
