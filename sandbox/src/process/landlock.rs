//! The Landlock ruleset of the process sandbox.
//!
//! Built in the parent with the `landlock` crate for everything visible on
//! the host (system directories, device nodes, the workspace mount), then
//! handed to the child as a descriptor; the child adds rules for the mounts
//! only it can see (`/proc`, `/tmp`, `/dev`, `/workspace`) with raw system calls and
//! restricts itself. The ABI is the kernel's own, so nothing is silently
//! dropped: a rule the kernel cannot enforce is an error.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::Path;

use landlock::{
    make_bitflags, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort,
    PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, Scope, ABI,
};

use super::plan::ChildRule;
use crate::error::{Layer, SandboxError};
use crate::exec::PROXY_PORT;

/// What the Landlock layer enforces for one sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LandlockStatus {
    /// The ABI the ruleset was built for (the kernel's).
    pub abi: u8,
    /// TCP connect restricted to the proxy port (ABI ≥ 4).
    pub tcp: Enforcement,
    /// Abstract unix socket and signal scoping (ABI ≥ 6).
    pub scoping: Enforcement,
}

/// Whether an optional Landlock feature is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcement {
    /// Enforced.
    Enforced,
    /// The kernel's ABI is too old for it.
    NotSupportedByKernel,
}

/// The parent's half of the ruleset.
pub(crate) struct Prepared {
    /// The ruleset descriptor (inherited by the child).
    pub fd: OwnedFd,
    /// Rules the child adds after `pivot_root`.
    pub child_rules: Vec<ChildRule>,
}

impl LandlockStatus {
    /// What a ruleset built for kernel ABI `abi` enforces.
    pub fn for_abi(abi: u8) -> LandlockStatus {
        let at_least = |v: u8| {
            if abi >= v {
                Enforcement::Enforced
            } else {
                Enforcement::NotSupportedByKernel
            }
        };
        LandlockStatus {
            abi,
            tcp: at_least(4),
            scoping: at_least(6),
        }
    }
}

fn ll_err(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::LayerUnavailable {
        layer: Layer::Landlock,
        detail: e.to_string(),
    }
}

/// Build the ruleset for kernel ABI `abi`.
pub(crate) fn prepare(
    abi_version: u8,
    system_dirs: &[&Path],
    devices: &[&Path],
) -> Result<Prepared, SandboxError> {
    let abi = ABI::from(i32::from(abi_version));
    if abi == ABI::Unsupported {
        return Err(ll_err("Landlock is not supported by this kernel"));
    }
    let all = AccessFs::from_all(abi);
    let read_exec = AccessFs::from_read(abi);
    let device = all & make_bitflags!(AccessFs::{ReadFile | WriteFile | Truncate | IoctlDev});
    let LandlockStatus { tcp, scoping, .. } = LandlockStatus::for_abi(abi_version);

    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(all)
        .map_err(ll_err)?;
    if tcp == Enforcement::Enforced {
        ruleset = ruleset
            .handle_access(AccessNet::ConnectTcp)
            .map_err(ll_err)?;
    }
    if scoping == Enforcement::Enforced {
        ruleset = ruleset
            .scope(Scope::AbstractUnixSocket | Scope::Signal)
            .map_err(ll_err)?;
    }
    let mut created = ruleset.create().map_err(ll_err)?;
    for dir in system_dirs {
        created = created
            .add_rule(PathBeneath::new(
                PathFd::new(dir).map_err(ll_err)?,
                read_exec,
            ))
            .map_err(ll_err)?;
    }
    for dev in devices {
        created = created
            .add_rule(PathBeneath::new(PathFd::new(dev).map_err(ll_err)?, device))
            .map_err(ll_err)?;
    }
    if tcp == Enforcement::Enforced {
        created = created
            .add_rule(NetPort::new(PROXY_PORT, AccessNet::ConnectTcp))
            .map_err(ll_err)?;
    }
    let fd: Option<OwnedFd> = created.into();
    let fd = fd.ok_or_else(|| ll_err("ruleset was not created"))?;

    let bits = |b: BitFlags<AccessFs>| b.bits();
    let rule = |path: &str, access: BitFlags<AccessFs>| -> Result<ChildRule, SandboxError> {
        Ok(ChildRule {
            path: CString::new(path).map_err(ll_err)?,
            access: bits(access & all),
        })
    };
    let child_rules = vec![
        rule("/", make_bitflags!(AccessFs::{ReadDir}))?,
        rule("/proc", make_bitflags!(AccessFs::{ReadFile | ReadDir}))?,
        rule("/dev", make_bitflags!(AccessFs::{ReadDir}))?,
        rule("/dev/shm", all)?,
        rule("/tmp", all)?,
        // Added by the child, on the mount it attached: the parent never
        // touches the mediated mount (a stat would wait on the file server).
        rule("/workspace", all)?,
    ];
    Ok(Prepared { fd, child_rules })
}
