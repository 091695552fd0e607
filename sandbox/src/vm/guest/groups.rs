//! Each guest command in a cgroup of its own, so that its *whole* process
//! tree — children in new sessions or process groups, double forks,
//! daemons — is ended (`cgroup.kill`) before the command's result is
//! reported, and its memory, processes and CPU are limited and accounted
//! as in the process backend (`process::cgroup`, on the guest's v2-only
//! hierarchy).
//!
//! The agent mounts cgroup2 itself (before it enters its seccomp filters,
//! which deny `mount`), with `favordynmods`: commands are started with
//! `clone(CLONE_VM | CLONE_VFORK)` (see `spawn.rs`), which `clone3`'s
//! `CLONE_INTO_CGROUP` cannot be combined with here, so the child moves
//! itself by writing `0` to its leaf's `cgroup.procs` before it executes;
//! `favordynmods` makes that move cheap.

use std::sync::Mutex;

use crate::process::cgroup::{LeafGroup, SessionGroup};
use crate::resources::{CgroupRequirement, GroupLimits, ResourceLimits};
use crate::vm::protocol::GroupSpec;

/// Where the agent mounts the cgroup hierarchy.
const MOUNT_POINT: &str = "/sys/fs/cgroup";
/// The parent of the agent's command groups.
const PARENT: &str = "stele";

/// Mount cgroup2 at `/sys/fs/cgroup`.
pub(crate) fn mount() -> Result<(), String> {
    let c = |s: &str| std::ffi::CString::new(s).map_err(|e| e.to_string());
    let (src, dst, fstype) = (c("cgroup2")?, c(MOUNT_POINT)?, c("cgroup2")?);
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let mut last = String::new();
    // favordynmods is 6.0+; without it the moves are only slower.
    for opts in ["nsdelegate,favordynmods", "nsdelegate"] {
        let data = c(opts)?;
        // SAFETY: valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                fstype.as_ptr(),
                flags,
                data.as_ptr().cast(),
            )
        };
        if rc == 0 {
            return Ok(());
        }
        last = std::io::Error::last_os_error().to_string();
    }
    Err(format!("mount cgroup2 at {MOUNT_POINT}: {last}"))
}

/// The agent's group of command groups, made at the first command (with
/// its limits; the host sends the same ones with every command).
#[derive(Debug, Default)]
pub(crate) struct Groups {
    session: Mutex<Option<SessionGroup>>,
}

impl Groups {
    /// A leaf for a command with `spec`'s limits.
    pub fn leaf(&self, spec: &GroupSpec) -> Result<LeafGroup, String> {
        let limits = GroupLimits::from(*spec);
        let mut session = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if session.is_none() {
            let created = SessionGroup::create(&ResourceLimits {
                command: limits,
                // The VM as a whole is the session: QEMU's group on the host.
                session: GroupLimits::NONE,
                requirement: CgroupRequirement::Required,
                cgroup_parent: Some(PARENT.into()),
            })
            .map_err(|e| format!("guest cgroups: {e}"))?;
            *session = Some(created);
        }
        let Some(s) = session.as_ref() else {
            return Err("guest cgroups: no session group".into());
        };
        let leaf = if s.limits().command == limits {
            s.command_leaf()
        } else {
            s.leaf(&limits)
        };
        leaf.map_err(|e| format!("the command's cgroup: {e}"))
    }
}
