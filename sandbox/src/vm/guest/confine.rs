//! Confinement of guest commands: an unprivileged uid, Landlock (the
//! guest's root read-only; `/workspace`, `/tmp` and a few devices
//! writable) and the process backend's seccomp filters, applied between
//! fork and exec with raw system calls only.

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
    ruleset: OwnedFd,
    filters: Vec<BpfProgram>,
}

impl Confinement {
    /// Build the Landlock ruleset for the guest kernel's ABI and the seccomp programs.
    pub fn prepare() -> Result<Confinement, String> {
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
            ruleset,
            filters,
        })
    }

    /// The Landlock ABI enforced.
    pub fn abi(&self) -> u8 {
        self.abi
    }

    /// Restrict the calling (forked, not yet exec'd) process: no new
    /// privileges, Landlock, seccomp. Allocation-free.
    pub fn apply_in_child(&self) -> std::io::Result<()> {
        let last = std::io::Error::last_os_error;
        // SAFETY (all): raw system calls on descriptors and buffers owned by
        // `self`, which outlives the call.
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
            for prog in &self.filters {
                let fprog = libc::sock_fprog {
                    len: u16::try_from(prog.len()).unwrap_or(u16::MAX),
                    filter: prog.as_ptr() as *mut libc::sock_filter,
                };
                if libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &fprog as *const libc::sock_fprog,
                ) != 0
                {
                    return Err(last());
                }
            }
        }
        Ok(())
    }
}
