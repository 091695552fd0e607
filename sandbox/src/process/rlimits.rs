//! Per-process resource limits (`setrlimit`) every sandboxed program gets,
//! prepared in the parent as plain arrays for the child.

use crate::exec::ExecRequest;

/// The `setrlimit` arguments for a command's request.
pub(crate) fn rlimits(req: &ExecRequest) -> Vec<(libc::__rlimit_resource_t, libc::rlimit)> {
    let l = &req.limits;
    rlimit_table(&RlimitSet {
        cpu_seconds: l.cpu_seconds,
        address_space_bytes: l.address_space_bytes,
        file_size_bytes: l.file_size_bytes,
        processes: l.processes,
        open_files: l.open_files,
    })
}

/// The per-process resource limits every sandboxed program gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RlimitSet {
    pub cpu_seconds: u64,
    pub address_space_bytes: u64,
    pub file_size_bytes: u64,
    pub processes: u64,
    pub open_files: u64,
}

/// `setrlimit` arguments for `l`, plus no core dumps.
pub(crate) fn rlimit_table(l: &RlimitSet) -> Vec<(libc::__rlimit_resource_t, libc::rlimit)> {
    let lim = |soft: u64, hard: u64| libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    vec![
        // The soft limit sends SIGXCPU, the hard one a second later SIGKILL.
        (
            libc::RLIMIT_CPU,
            lim(l.cpu_seconds, l.cpu_seconds.saturating_add(1)),
        ),
        (
            libc::RLIMIT_AS,
            lim(l.address_space_bytes, l.address_space_bytes),
        ),
        (
            libc::RLIMIT_FSIZE,
            lim(l.file_size_bytes, l.file_size_bytes),
        ),
        (libc::RLIMIT_NPROC, lim(l.processes, l.processes)),
        (libc::RLIMIT_NOFILE, lim(l.open_files, l.open_files)),
        (libc::RLIMIT_CORE, lim(0, 0)),
    ]
}
