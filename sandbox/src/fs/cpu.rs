//! CPU placement: keeping the file server on the same CPU as the programs it
//! serves.
//!
//! A FUSE request is a synchronous round trip: the program blocks, the
//! server wakes, answers, and wakes the program again. The kernel's FUSE
//! wake-ups carry no "synchronous" hint, so on a machine with an idle CPU the
//! scheduler places the woken side on that idle CPU, and every round trip
//! becomes two cross-CPU wake-ups. Measured on the 2-vCPU PVM development VM
//! (`docs/mediated-workspace.md`, Performance): a same-CPU wake-up costs
//! ~2 µs, a cross-CPU one ~12–15 µs (an inter-processor interrupt and a halt
//! exit through the hypervisor). Pinning the server thread and the program to
//! the same CPU keeps every wake-up local.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Restrict the calling thread to `cpu`.
///
/// Only a system call on data prepared on the stack, so it may also be used
/// between `fork` and `exec` (e.g. in `pre_exec`).
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    let set = cpu_set(cpu)?;
    // SAFETY: sched_setaffinity reads `set`, a fully initialised cpu_set_t of
    // the size passed; pid 0 means the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Restrict task `pid` (a process or thread; what it forks afterwards
/// inherits the restriction) to `cpu`.
pub fn pin_task(pid: libc::pid_t, cpu: usize) -> io::Result<()> {
    let set = cpu_set(cpu)?;
    // SAFETY: as in `pin_current_thread`, for another task.
    let rc = unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A CPU for the next workspace server: the CPUs this process may use, in
/// turn, so that several sandboxes spread over the machine.
pub fn next_cpu() -> Option<usize> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills the set of
    // the size passed, for the calling thread (pid 0).
    let allowed = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        set
    };
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: every index is below CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &allowed) })
        .collect();
    let turn = NEXT.fetch_add(1, Ordering::Relaxed);
    cpus.get(turn % cpus.len().max(1)).copied()
}

/// The CPU the calling thread is running on right now.
pub fn current_cpu() -> Option<usize> {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).ok()
}

/// A set holding only `cpu`; EINVAL beyond what a `cpu_set_t` can name.
fn cpu_set(cpu: usize) -> io::Result<libc::cpu_set_t> {
    // CPU_SET indexes a fixed-size bit array without checking.
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (checked above), so the bit is
    // inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    Ok(set)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn next_cpu_is_one_we_may_use() {
        let cpu = next_cpu().unwrap();
        std::thread::spawn(move || pin_current_thread(cpu).unwrap())
            .join()
            .unwrap();
    }

    #[test]
    fn pinning_moves_the_thread_there() {
        let cpu = current_cpu().unwrap();
        std::thread::spawn(move || {
            pin_current_thread(cpu).unwrap();
            assert_eq!(current_cpu(), Some(cpu));
            assert!(pin_current_thread(libc::CPU_SETSIZE as usize).is_err());
        })
        .join()
        .unwrap();
    }
}
