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

/// What a host path (and everything beneath it) may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grant {
    /// Read, list and execute.
    ReadExec,
    /// Read a file (no execute, no write).
    ReadFile,
    /// Read, write, truncate and `ioctl` a device node.
    Device,
    /// Everything.
    All,
}

/// Which TCP operations the ruleset governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tcp {
    /// `connect` only to this port (ABI ≥ 4; `bind` is not governed).
    ConnectOnly(u16),
    /// Neither `connect` nor `bind` to any port (ABI ≥ 4).
    Nothing,
}

impl Grant {
    fn access(self, abi: ABI) -> BitFlags<AccessFs> {
        let all = AccessFs::from_all(abi);
        match self {
            Grant::ReadExec => AccessFs::from_read(abi),
            Grant::ReadFile => all & make_bitflags!(AccessFs::{ReadFile}),
            Grant::Device => {
                all & make_bitflags!(AccessFs::{ReadFile | WriteFile | Truncate | IoctlDev})
            }
            Grant::All => all,
        }
    }
}

/// A ruleset handling every file-system right of kernel ABI `abi_version`
/// (and TCP, and abstract-socket and signal scoping, where the ABI has
/// them) that allows `paths` only. Rules attach to the host inodes, so
/// they hold for the same files bind-mounted into a new root.
pub(crate) fn ruleset(
    abi_version: u8,
    paths: &[(&Path, Grant)],
    tcp: Tcp,
) -> Result<OwnedFd, SandboxError> {
    let abi = ABI::from(i32::from(abi_version));
    if abi == ABI::Unsupported {
        return Err(ll_err("Landlock is not supported by this kernel"));
    }
    let LandlockStatus {
        tcp: tcp_status,
        scoping,
        ..
    } = LandlockStatus::for_abi(abi_version);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))
        .map_err(ll_err)?;
    if tcp_status == Enforcement::Enforced {
        let handled = match tcp {
            Tcp::ConnectOnly(_) => BitFlags::from(AccessNet::ConnectTcp),
            Tcp::Nothing => AccessNet::ConnectTcp | AccessNet::BindTcp,
        };
        ruleset = ruleset.handle_access(handled).map_err(ll_err)?;
    }
    if scoping == Enforcement::Enforced {
        ruleset = ruleset
            .scope(Scope::AbstractUnixSocket | Scope::Signal)
            .map_err(ll_err)?;
    }
    let mut created = ruleset.create().map_err(ll_err)?;
    for (path, grant) in paths {
        let fd = PathFd::new(path).map_err(|e| ll_err(format!("{}: {e}", path.display())))?;
        // The kernel refuses directory rights on a file: a granted file
        // gets the file rights of its grant.
        let mut access = grant.access(abi);
        if !path.is_dir() {
            access &= AccessFs::from_file(abi);
        }
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(ll_err)?;
    }
    if let (Tcp::ConnectOnly(port), Enforcement::Enforced) = (tcp, tcp_status) {
        created = created
            .add_rule(NetPort::new(port, AccessNet::ConnectTcp))
            .map_err(ll_err)?;
    }
    let fd: Option<OwnedFd> = created.into();
    fd.ok_or_else(|| ll_err("ruleset was not created"))
}

/// A rule the child adds itself, for a path only it can see.
pub(crate) fn child_rule(
    abi_version: u8,
    path: &str,
    grant: Grant,
) -> Result<ChildRule, SandboxError> {
    let abi = ABI::from(i32::from(abi_version));
    Ok(ChildRule {
        path: CString::new(path).map_err(ll_err)?,
        access: grant.access(abi).bits(),
    })
}

/// Build the ruleset for kernel ABI `abi`.
pub(crate) fn prepare(
    abi_version: u8,
    system_dirs: &[&Path],
    devices: &[&Path],
) -> Result<Prepared, SandboxError> {
    let abi = ABI::from(i32::from(abi_version));
    let all = AccessFs::from_all(abi);
    let paths: Vec<(&Path, Grant)> = system_dirs
        .iter()
        .map(|d| (*d, Grant::ReadExec))
        .chain(devices.iter().map(|d| (*d, Grant::Device)))
        .collect();
    let fd = ruleset(abi_version, &paths, Tcp::ConnectOnly(PROXY_PORT))?;
    let mut child_rules = base_child_rules(abi_version)?;
    // Added by the child, on the mount it attached: the parent never
    // touches the mediated mount (a stat would wait on the file server).
    child_rules.push(ChildRule {
        path: CString::new("/workspace").map_err(ll_err)?,
        access: all.bits(),
    });
    Ok(Prepared { fd, child_rules })
}

/// The child's rules for the mounts only it can see, common to commands
/// and services: list `/` and `/dev`, read `/proc`, everything in the
/// private `/tmp` and `/dev/shm`.
pub(crate) fn base_child_rules(abi_version: u8) -> Result<Vec<ChildRule>, SandboxError> {
    let abi = ABI::from(i32::from(abi_version));
    let all = AccessFs::from_all(abi);
    let rule = |path: &str, access: BitFlags<AccessFs>| -> Result<ChildRule, SandboxError> {
        Ok(ChildRule {
            path: CString::new(path).map_err(ll_err)?,
            access: (access & all).bits(),
        })
    };
    Ok(vec![
        rule("/", make_bitflags!(AccessFs::{ReadDir}))?,
        rule("/proc", make_bitflags!(AccessFs::{ReadFile | ReadDir}))?,
        rule("/dev", make_bitflags!(AccessFs::{ReadDir}))?,
        rule("/dev/shm", all)?,
        rule("/tmp", all)?,
    ])
}
