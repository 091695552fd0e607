//! Probing which sandbox layers this host really provides (`stele sandbox check`).
//!
//! Every probe exercises the facility (creates the namespaces, asks the
//! kernel for its Landlock ABI, opens `/dev/fuse`, …) instead of reading a
//! configuration file, so the report says what will actually be enforced.

use std::fmt;

use crate::error::{Layer, SandboxError};
use crate::process::cgroup::CgroupReport;
use crate::process::sys;
use crate::resources::{CgroupRequirement, ResourceLimits};

/// Whether a layer is usable here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Probed and working.
    Available,
    /// Probed and not working, with what the probe saw.
    Unavailable(String),
}

impl Availability {
    fn from_result(r: std::io::Result<()>) -> Availability {
        match r {
            Ok(()) => Availability::Available,
            Err(e) => Availability::Unavailable(e.to_string()),
        }
    }

    /// True when available.
    pub fn is_available(&self) -> bool {
        matches!(self, Availability::Available)
    }
}

impl fmt::Display for Availability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Availability::Available => f.write_str("active"),
            Availability::Unavailable(why) => write!(f, "MISSING ({why})"),
        }
    }
}

/// What this host offers, layer by layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerReport {
    /// Namespaces, each probed by creating it.
    pub namespaces: Vec<(Layer, Availability)>,
    /// The Landlock ABI version the kernel reports (0 when unavailable).
    pub landlock_abi: u8,
    /// Why Landlock is unavailable, when it is.
    pub landlock_detail: Option<String>,
    /// seccomp filters (`SECCOMP_RET_ERRNO` supported).
    pub seccomp: Availability,
    /// `/dev/fuse` can be opened.
    pub fuse: Availability,
    /// `mount_setattr(2)` exists.
    pub mount_setattr: Availability,
    /// `pidfd_open(2)` exists.
    pub pidfd: Availability,
    /// The cgroup layer: where the controllers are, and whether stele can
    /// create a session group and a command's group (probed by doing).
    pub cgroup: CgroupReport,
    /// Whether stele runs as host root (sandboxed processes are then mapped to
    /// [`crate::process::UNPRIVILEGED_ID`]).
    pub running_as_root: bool,
}

/// What a refusal for want of cgroups adds.
pub const CGROUP_HINT: &str = "stele limits memory, processes and CPU per command and per \
     session with cgroups; `cgroups = \"optional\"` in the [resources] configuration runs \
     with per-process rlimits only, and records that it did";

/// Which layers a sandbox must have before it agrees to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirements {
    /// Lowest acceptable Landlock ABI (1 = file rules).
    pub landlock_min_abi: u8,
    /// Whether `/dev/fuse` is needed (the mediated workspace).
    pub fuse: FuseRequirement,
    /// Whether cgroups are needed (the default) or may be missing.
    pub cgroups: CgroupRequirement,
}

/// Whether the mediated workspace (and so FUSE) is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FuseRequirement {
    /// The workspace is served over FUSE.
    Required,
    /// The workspace is a plain bind mount (tests only).
    NotRequired,
}

impl Default for Requirements {
    fn default() -> Self {
        Requirements {
            landlock_min_abi: 1,
            fuse: FuseRequirement::Required,
            cgroups: CgroupRequirement::Required,
        }
    }
}

/// What each Landlock ABI adds, for the report.
pub fn landlock_features(abi: u8) -> Vec<&'static str> {
    let table: [(u8, &str); 7] = [
        (1, "file-system access rules"),
        (2, "cross-directory rename/link (REFER)"),
        (3, "truncate"),
        (4, "TCP bind/connect rules (connect only to the proxy port)"),
        (5, "device ioctl"),
        (6, "scoping: abstract unix sockets, signals"),
        (7, "denial logging to the kernel audit"),
    ];
    table
        .iter()
        .filter(|(v, _)| *v <= abi)
        .map(|(_, s)| *s)
        .collect()
}

impl LayerReport {
    /// Probe this host (cgroups with the default limits and place).
    pub fn probe() -> LayerReport {
        Self::probe_with(&ResourceLimits::default())
    }

    /// Probe this host; the cgroup probe creates (and removes) a session
    /// group with `limits` where they say.
    pub fn probe_with(limits: &ResourceLimits) -> LayerReport {
        let namespaces = probe_namespaces();
        let (landlock_abi, landlock_detail) = match sys::landlock_abi() {
            Ok(v) => (v, None),
            Err(e) => (0, Some(e.to_string())),
        };
        LayerReport {
            namespaces,
            landlock_abi,
            landlock_detail,
            seccomp: Availability::from_result(sys::probe_seccomp()),
            fuse: Availability::from_result(sys::probe_fuse()),
            mount_setattr: Availability::from_result(sys::probe_mount_setattr()),
            pidfd: Availability::from_result(sys::probe_pidfd()),
            cgroup: CgroupReport::probe(limits),
            running_as_root: sys::geteuid() == 0,
        }
    }

    /// Fail with the first missing layer, or `Ok` when every required layer is present.
    pub fn require(&self, req: &Requirements) -> Result<(), SandboxError> {
        for (layer, avail) in &self.namespaces {
            missing(*layer, avail)?;
        }
        if self.landlock_abi < req.landlock_min_abi {
            return Err(SandboxError::LayerUnavailable {
                layer: Layer::Landlock,
                detail: format!(
                    "ABI {} < required {} ({})",
                    self.landlock_abi,
                    req.landlock_min_abi,
                    self.landlock_detail.as_deref().unwrap_or("kernel too old")
                ),
            });
        }
        missing(Layer::Seccomp, &self.seccomp)?;
        missing(Layer::MountSetattr, &self.mount_setattr)?;
        missing(Layer::Pidfd, &self.pidfd)?;
        if req.fuse == FuseRequirement::Required {
            missing(Layer::Fuse, &self.fuse)?;
        }
        if let (CgroupRequirement::Required, Err(why)) = (req.cgroups, &self.cgroup.usable) {
            return Err(SandboxError::LayerUnavailable {
                layer: Layer::Cgroup,
                detail: format!("{why} ({CGROUP_HINT})"),
            });
        }
        Ok(())
    }

    /// A human-readable multi-line report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (layer, avail) in &self.namespaces {
            out.push_str(&format!("{:<22} {}\n", layer.to_string(), avail));
        }
        if self.landlock_abi > 0 {
            out.push_str(&format!(
                "{:<22} active, ABI {}: {}\n",
                "landlock",
                self.landlock_abi,
                landlock_features(self.landlock_abi).join("; ")
            ));
        } else {
            out.push_str(&format!(
                "{:<22} MISSING ({})\n",
                "landlock",
                self.landlock_detail.as_deref().unwrap_or("unknown")
            ));
        }
        let rows = [
            ("seccomp", &self.seccomp),
            ("fuse (/dev/fuse)", &self.fuse),
            ("mount_setattr", &self.mount_setattr),
            ("pidfd", &self.pidfd),
        ];
        for (name, avail) in rows {
            out.push_str(&format!("{name:<22} {avail}\n"));
        }
        out.push_str(&render_cgroup(&self.cgroup));
        let who = if self.running_as_root {
            format!(
                "stele runs as root: sandboxed processes run as host uid/gid {} (used by nothing else)",
                crate::process::UNPRIVILEGED_ID
            )
        } else {
            "stele runs unprivileged: sandboxed processes keep the invoking uid".to_string()
        };
        out.push_str(&format!("{:<22} {}\n", "identity", who));
        out
    }
}

fn missing(layer: Layer, avail: &Availability) -> Result<(), SandboxError> {
    match avail {
        Availability::Available => Ok(()),
        Availability::Unavailable(why) => Err(SandboxError::LayerUnavailable {
            layer,
            detail: why.clone(),
        }),
    }
}

fn probe_namespaces() -> Vec<(Layer, Availability)> {
    let all = [
        (Layer::UserNamespace, libc::CLONE_NEWUSER),
        (Layer::MountNamespace, libc::CLONE_NEWNS),
        (Layer::PidNamespace, libc::CLONE_NEWPID),
        (Layer::NetNamespace, libc::CLONE_NEWNET),
        (Layer::IpcNamespace, libc::CLONE_NEWIPC),
        (Layer::UtsNamespace, libc::CLONE_NEWUTS),
    ];
    let combined = all.iter().fold(0, |acc, (_, f)| acc | f);
    if sys::probe_clone(combined).is_ok() {
        return all
            .iter()
            .map(|(l, _)| (*l, Availability::Available))
            .collect();
    }
    // Name exactly which namespace is missing; each non-user namespace is
    // tried inside a new user namespace, as the sandbox creates them.
    all.iter()
        .map(|(layer, flag)| {
            let flags = if *flag == libc::CLONE_NEWUSER {
                *flag
            } else {
                *flag | libc::CLONE_NEWUSER
            };
            (*layer, Availability::from_result(sys::probe_clone(flags)))
        })
        .collect()
}

fn render_cgroup(c: &CgroupReport) -> String {
    let state = match &c.usable {
        Ok(()) => "active".to_string(),
        Err(why) => format!("MISSING ({why})"),
    };
    let mut out = format!("{:<22} {state}\n", "cgroup");
    if let Some(l) = &c.layout {
        let v2 = l
            .unified
            .as_ref()
            .map_or("none".to_string(), |u| u.mount.display().to_string());
        out.push_str(&format!(
            "{:<22} {} (v2 hierarchy: {v2}; membership, cgroup.kill, CPU time)\n",
            "  layout",
            l.kind()
        ));
    }
    for (name, at) in c.placements() {
        out.push_str(&format!("{:<22} {at}\n", format!("  {name}")));
    }
    if let Some(s) = &c.subtree {
        out.push_str(&format!("{:<22} {}\n", "  stele's subtree", s.display()));
    }
    out
}
