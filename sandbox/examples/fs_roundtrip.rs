//! What one FUSE round trip costs through the mediated workspace, with the
//! file server and the caller on the same CPU and left to the scheduler.
//!
//! Loops (N times each) on one small file of a mounted `MediatedFs`:
//! `statx(AT_STATX_FORCE_SYNC)` (one GETATTR), open+close (OPEN, RELEASE),
//! open+read+close (+ READ), open+fstat+read+close (+ GETATTR, the pattern
//! of Python's `open().read()`); the same loops on the plain directory for
//! reference. Needs root and /dev/fuse.
//!
//! Run: `cargo run --release -p stele-sandbox --example fs_roundtrip [-- N]`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fs_support;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use fs_support::{fuse_available, Mounted, Recorder};

/// Microseconds per iteration of `f`, run `n` times.
fn per_op(n: usize, mut f: impl FnMut()) -> f64 {
    let t0 = Instant::now();
    for _ in 0..n {
        f();
    }
    t0.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// The four loops on `path`.
fn loops(path: &Path, n: usize) -> [f64; 4] {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut buf = [0u8; 8192];
    // SAFETY (all blocks): plain system calls on a NUL-terminated path, a
    // live buffer and zeroed stat structs of the right types.
    let statx = per_op(n, || unsafe {
        let mut sx: libc::statx = std::mem::zeroed();
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_STATX_FORCE_SYNC,
            libc::STATX_BASIC_STATS,
            &mut sx,
        );
    });
    let open_close = per_op(n, || unsafe {
        let fd = libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        libc::close(fd);
    });
    let open_read = per_op(n, || unsafe {
        let fd = libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
    });
    let open_stat_read = per_op(n, || unsafe {
        let fd = libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut st);
        libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
    });
    [statx, open_close, open_read, open_stat_read]
}

fn main() {
    if !fuse_available() {
        return;
    }
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("f.txt"), "line of receipt data\n".repeat(20)).unwrap();
    let names = [
        "statx FORCE_SYNC (GETATTR)",
        "open+close (OPEN, RELEASE)",
        "open+read+close (+READ)",
        "open+fstat+read+close (+GETATTR)",
    ];
    let cpu = stele_sandbox::fs::current_cpu().unwrap_or(0);
    stele_sandbox::fs::pin_current_thread(cpu).unwrap();
    let plain = loops(&ws.path().join("f.txt"), n);
    let rec = Arc::new(Recorder::with_recording(false));
    let same = {
        let m = Mounted::with(ws.path(), rec.clone(), |fs| fs.with_cpu(cpu));
        loops(&m.path("f.txt"), n)
    };
    // Unpinned: the caller may run anywhere, and so may the server.
    let all: Vec<usize> = (0..64).collect();
    unpin(&all);
    let free = {
        let m = Mounted::new(ws.path(), rec);
        loops(&m.path("f.txt"), n)
    };
    println!("µs per iteration ({n} iterations; plain / same CPU / not pinned):");
    for (i, name) in names.iter().enumerate() {
        println!(
            "  {name:<34} {:>6.2} / {:>6.2} / {:>6.2}",
            plain[i], same[i], free[i]
        );
    }
}

/// Allow the calling thread on every CPU in `cpus` (those that exist).
fn unpin(cpus: &[usize]) {
    // SAFETY: cpu_set_t is plain data; CPU_SET indexes below CPU_SETSIZE;
    // sched_setaffinity reads the set we pass.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
