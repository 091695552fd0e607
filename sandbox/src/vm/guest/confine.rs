//! Confinement of guest commands: an unprivileged uid, Landlock (the
//! guest's root read-only; `/workspace`, `/tmp` and a few devices
//! writable), applied between clone and exec with raw system calls only,
//! and the process backend's seccomp filters, which the agent enters
//! itself once it is set up, so that every command inherits them.
//!
//! Why the agent and not each command: a seccomp filter is compiled and
//! JIT-compiled when it is installed, and under TCG freshly generated code
//! has to be translated again the first time it runs — a filter installed
//! per command cost ~6 ms of each command's round trip. Inherited, all
//! commands share one compiled filter. The agent needs none of the denied
//! calls after set-up (it mounts the workspace before, and leaves powering
//! off to PID 1, which is not filtered).

use std::os::fd::{AsRawFd, OwnedFd};

use landlock::{
    make_bitflags, Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, ABI,
};
use seccompiler::BpfProgram;

use crate::process::seccomp;

/// The uid/gid guest commands run as.
pub(crate) const GUEST_USER: u32 = 1000;

/// Built once by the agent, applied in every command's child.
pub(crate) struct Confinement {
    abi: u8,
    /// Whether commands keep address space randomisation (see `qemu.rs`:
    /// off under TCG, where it makes every command retranslate its code).
    aslr: bool,
    ruleset: OwnedFd,
    filters: Vec<BpfProgram>,
}

impl Confinement {
    /// Build the Landlock ruleset for the guest kernel's ABI and the seccomp programs.
    pub fn prepare(aslr: bool) -> Result<Confinement, String> {
        let abi = crate::process::sys::landlock_abi().map_err(|e| format!("landlock: {e}"))?;
        let ll = ABI::from(i32::from(abi));
        let all = AccessFs::from_all(ll);
        let read = AccessFs::from_read(ll);
        let device = all & make_bitflags!(AccessFs::{ReadFile | WriteFile});
        let e = |e: landlock::RulesetError| format!("landlock: {e}");
        let mut created = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(all)
            .map_err(e)?
            .create()
            .map_err(e)?;
        let rules: [(&str, _); 6] = [
            ("/", read),
            (crate::exec::WORKSPACE_MOUNT, all),
            ("/tmp", all),
            ("/dev/null", device),
            ("/dev/zero", device),
            ("/dev/urandom", device),
        ];
        for (path, access) in rules {
            let fd = PathFd::new(path).map_err(|err| format!("landlock: {path}: {err}"))?;
            created = created.add_rule(PathBeneath::new(fd, access)).map_err(e)?;
        }
        let fd: Option<OwnedFd> = created.into();
        let ruleset = fd.ok_or("landlock: ruleset not created")?;
        let filters = vec![
            seccomp::build_filter().map_err(|e| e.to_string())?,
            seccomp::build_clone3_filter().map_err(|e| e.to_string())?,
        ];
        Ok(Confinement {
            abi,
            aslr,
            ruleset,
            filters,
        })
    }

    /// The Landlock ABI enforced.
    pub fn abi(&self) -> u8 {
        self.abi
    }

    /// Enter the commands' seccomp filters in the agent itself (every
    /// thread), and turn randomisation off for its children where asked.
    /// Call once, after everything that needs a denied call is done.
    pub fn enter(&self) -> Result<(), String> {
        if !self.aslr {
            // The agent's own layout was fixed when it was executed; the
            // persona is inherited by the commands (and must be set
            // before the filters, which deny `personality`).
            // SAFETY: an integer-only system call.
            if unsafe { libc::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong) } < 0 {
                return Err(format!("personality: {}", std::io::Error::last_os_error()));
            }
        }
        for prog in &self.filters {
            seccompiler::apply_filter_all_threads(prog).map_err(|e| format!("seccomp: {e}"))?;
        }
        Ok(())
    }

    /// Restrict the calling (cloned, not yet exec'd) process: no new
    /// privileges, Landlock (the seccomp filters are inherited from the
    /// agent). Allocation-free.
    pub fn apply_in_child(&self) -> std::io::Result<()> {
        let last = std::io::Error::last_os_error;
        // SAFETY (all): raw system calls on a descriptor owned by `self`,
        // which outlives the call.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(last());
            }
            if libc::syscall(
                libc::SYS_landlock_restrict_self,
                self.ruleset.as_raw_fd(),
                0,
            ) != 0
            {
                return Err(last());
            }
        }
        Ok(())
    }
}
