//! The process backend: Linux namespaces, a minimal root, Landlock, seccomp,
//! no-new-privs, rlimits and a wall-clock deadline, with the workspace served
//! by the mediated file system and the network reachable only through the
//! egress proxy.
//!
//! See `docs/sandbox.md` for the layer-by-layer description.

mod capture;
pub mod cgroup;
pub(crate) mod child;
pub mod landlock;
pub(crate) mod loopback;
mod netnotify;
mod netpool;
pub(crate) mod plan;
pub(crate) mod rlimits;
pub(crate) mod rootfs;
pub mod seccomp;
pub mod service;
pub(crate) mod spawn;
pub(crate) mod sys;
pub mod system_root;
mod workspace;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::check::{FuseRequirement, LayerReport, Requirements};
use crate::error::SandboxError;
use crate::exec::{BackendKind, ExecOutcome, ExecRequest, Sandbox};
use crate::resources::{CgroupRequirement, GroupUsage, ResourceLimits};
use crate::Mediator;

pub use self::landlock::{Enforcement, LandlockStatus};
pub use self::system_root::{SystemRoot, ToolImage};

/// The host uid/gid sandboxed processes (and the jailed QEMU) run as when
/// stele runs as root. Not `nobody` (65534): other host services run as
/// `nobody`, and a process of the same uid can `ptrace` a dumpable one. This
/// id lies in 1879048192–2147483647, a range no distribution, login service
/// or container manager allocates from (systemd's UID/GID conventions call
/// it unused), so no other host process shares it.
pub const UNPRIVILEGED_ID: u32 = 0x7800_0000;

/// How the workspace is presented at `/workspace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkspaceMount {
    /// Served by stele's mediated FUSE file system: every access asks the
    /// Mediator. The default, and the only mode for real use.
    Mediated,
    /// A plain read-write bind mount of the host directory, with no
    /// mediation. **For tests of other layers only**; the directory must be
    /// accessible to the sandbox's host uid (65534 when stele is root).
    PlainBindForTestsOnly,
}

/// The sandbox's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// Loopback plus the egress proxy on 127.0.0.1:3128 (the default).
    EgressProxy,
    /// Loopback only, no proxy: no way out at all.
    LoopbackOnly,
}

/// Where a sandbox's commands run relative to its workspace's file server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuPlacement {
    /// The file server and every command of the sandbox on one CPU (the
    /// CPUs stele may use are handed out in turn, one per sandbox). Every
    /// workspace access is a synchronous FUSE round trip; kept on one CPU it
    /// costs a fraction of a cross-CPU one (`docs/mediated-workspace.md`,
    /// Performance). The price: a command's own parallel work shares that
    /// CPU. The default.
    WithFileServer,
    /// No placement: the scheduler decides (for commands that compute in
    /// parallel and touch few files).
    Scheduler,
}

/// Configuration of a [`ProcessSandbox`].
#[derive(Debug, Clone)]
pub struct ProcessSandboxConfig {
    /// The granted workspace folder on the host.
    pub workspace: PathBuf,
    /// How the workspace is mounted.
    pub workspace_mount: WorkspaceMount,
    /// The network.
    pub network: NetworkMode,
    /// Asked before every workspace access and outbound connection.
    pub mediator: Arc<dyn Mediator>,
    /// Lowest acceptable Landlock ABI.
    pub landlock_min_abi: u8,
    /// Where commands run (with a mediated workspace).
    pub cpu: CpuPlacement,
    /// Bytes the sandbox's commands may write into the workspace, together.
    pub workspace_quota: crate::fs::WriteQuota,
    /// Memory, process and CPU limits per command and for the whole
    /// session (cgroups), and whether the sandbox may run without them.
    pub resources: ResourceLimits,
    /// The read-only system directories commands see. [`ProcessSandboxConfig::new`]
    /// leaves the host's; stele's sessions set the tool image
    /// ([`SystemRoot::image`]) unless configured otherwise, and record which.
    pub root: SystemRoot,
}

impl ProcessSandboxConfig {
    /// The default, fully mediated configuration for `workspace`.
    pub fn new(workspace: impl Into<PathBuf>, mediator: Arc<dyn Mediator>) -> Self {
        ProcessSandboxConfig {
            workspace: workspace.into(),
            workspace_mount: WorkspaceMount::Mediated,
            network: NetworkMode::EgressProxy,
            mediator,
            landlock_min_abi: 1,
            cpu: CpuPlacement::WithFileServer,
            workspace_quota: crate::fs::WriteQuota::default(),
            resources: ResourceLimits::default(),
            root: SystemRoot::Host,
        }
    }
}

/// The process sandbox. Build once, run many commands.
#[derive(Debug)]
pub struct ProcessSandbox {
    config: ProcessSandboxConfig,
    workspace: PathBuf,
    report: LayerReport,
    entries: Vec<rootfs::SystemEntry>,
    newroot: PathBuf,
    cap_last: u32,
    host_id: u32,
    seccomp: Vec<seccompiler::BpfProgram>,
    /// The program handing network attempts to stele (installed by each
    /// command's init with a listener; see `netnotify.rs`).
    notify_filter: seccompiler::BpfProgram,
    netns: netpool::NetnsPool,
    /// The mediated workspace's server, shared by all commands.
    shared_workspace: Option<workspace::SharedWorkspace>,
    /// The session's cgroup (each command gets a leaf under it); `None`
    /// only when cgroups are unusable and the configuration allows that.
    cgroups: Option<cgroup::SessionGroup>,
    /// Why the sandbox runs without cgroups, when it does.
    without_cgroups: Option<String>,
}

impl ProcessSandbox {
    /// Probe the host, refuse if a required layer is missing, and prepare
    /// what does not change between commands.
    pub fn new(config: ProcessSandboxConfig) -> Result<ProcessSandbox, SandboxError> {
        let report = LayerReport::probe_with(&config.resources);
        let req = Requirements {
            landlock_min_abi: config.landlock_min_abi.max(1),
            fuse: match config.workspace_mount {
                WorkspaceMount::Mediated => FuseRequirement::Required,
                WorkspaceMount::PlainBindForTestsOnly => FuseRequirement::NotRequired,
            },
            cgroups: config.resources.requirement,
        };
        report.require(&req)?;
        let workspace =
            std::fs::canonicalize(&config.workspace).map_err(|e| SandboxError::Prepare {
                what: "workspace directory",
                source: e,
            })?;
        if !workspace.is_dir() {
            return Err(SandboxError::InvalidRequest(format!(
                "workspace {} is not a directory",
                workspace.display()
            )));
        }
        let cap_last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(63);
        let euid = sys::geteuid();
        let host_id = if euid == 0 { UNPRIVILEGED_ID } else { euid };
        let shared_workspace = match config.workspace_mount {
            WorkspaceMount::Mediated => Some(workspace::SharedWorkspace::start(
                &workspace,
                config.mediator.clone(),
                host_id,
                config.workspace_quota,
                match config.cpu {
                    CpuPlacement::WithFileServer => crate::fs::next_cpu(),
                    CpuPlacement::Scheduler => None,
                },
            )?),
            WorkspaceMount::PlainBindForTestsOnly => None,
        };
        let (cgroups, without_cgroups) = session_group(&config.resources)?;
        let proxy_mediator = match config.network {
            NetworkMode::EgressProxy => Some(config.mediator.clone()),
            NetworkMode::LoopbackOnly => None,
        };
        Ok(ProcessSandbox {
            workspace,
            report,
            entries: rootfs::system_entries(config.root.base()),
            newroot: prepare_newroot(euid)?,
            cap_last,
            host_id,
            seccomp: seccomp::sandbox_filters_for(seccomp::NetworkAttempts::Notify)?,
            notify_filter: seccomp::build_notify_filter()?,
            netns: netpool::NetnsPool::new(proxy_mediator),
            shared_workspace,
            cgroups,
            without_cgroups,
            config,
        })
    }

    /// What the session's commands used so far, as its cgroup accounted
    /// it (`None` without cgroups).
    pub fn session_usage(&self) -> Option<GroupUsage> {
        self.cgroups.as_ref().map(cgroup::SessionGroup::usage)
    }

    /// The session's cgroup directory in the v2 hierarchy.
    pub fn session_cgroup(&self) -> Option<&Path> {
        self.cgroups.as_ref().map(cgroup::SessionGroup::dir)
    }

    /// The resource layer as set up, for `session.start` and attestations.
    pub fn resources_json(&self) -> serde_json::Value {
        resources_json(
            &self.config.resources,
            self.cgroups.as_ref(),
            self.without_cgroups.as_deref(),
        )
    }

    /// The configuration.
    pub fn config(&self) -> &ProcessSandboxConfig {
        &self.config
    }

    /// What the Landlock layer enforces for this sandbox's commands.
    pub fn landlock(&self) -> LandlockStatus {
        LandlockStatus::for_abi(self.report.landlock_abi)
    }

    /// The canonical host path of the workspace.
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// FUSE requests the mediated workspace's server has served so far, per
    /// opcode, busiest first (empty for a plain workspace).
    pub fn workspace_request_counts(&self) -> Vec<(String, u64)> {
        self.shared_workspace
            .as_ref()
            .map(|w| w.server().request_counts())
            .unwrap_or_default()
    }
}

impl Sandbox for ProcessSandbox {
    fn kind(&self) -> BackendKind {
        BackendKind::Process
    }

    fn layers(&self) -> &LayerReport {
        &self.report
    }

    fn exec(&self, req: ExecRequest) -> Result<ExecOutcome, SandboxError> {
        spawn::run(self, req)
    }

    fn workspace_usage(&self) -> Option<crate::fs::WriteUsage> {
        self.shared_workspace
            .as_ref()
            .map(|w| w.server().layer().write_usage())
    }
}

/// The session's cgroup, or — only when cgroups are unusable and
/// `resources.requirement` allows it — none and why.
pub(crate) fn session_group(
    limits: &ResourceLimits,
) -> Result<(Option<cgroup::SessionGroup>, Option<String>), SandboxError> {
    match cgroup::SessionGroup::create(limits) {
        Ok(g) => Ok((Some(g), None)),
        Err(e) => match limits.requirement {
            CgroupRequirement::Required => Err(SandboxError::LayerUnavailable {
                layer: crate::error::Layer::Cgroup,
                detail: format!("{e} ({})", crate::check::CGROUP_HINT),
            }),
            CgroupRequirement::AllowWithout => Ok((None, Some(e.to_string()))),
        },
    }
}

/// The resource layer as JSON (plain values) for the log.
pub(crate) fn resources_json(
    limits: &ResourceLimits,
    group: Option<&cgroup::SessionGroup>,
    without: Option<&str>,
) -> serde_json::Value {
    use crate::resources::{limits_json, without_nulls};
    without_nulls(serde_json::json!({
        "cgroups": group.map(|g| g.layout().kind()),
        "session_cgroup": group.map(|g| g.dir().display().to_string()),
        "command_limits": limits_json(&limits.command),
        "session_limits": limits_json(&limits.session),
        "without_cgroups": without,
        "allowed_by": without.map(|_| "resources.cgroups = \"optional\""),
    }))
}

/// The empty directory the new root is mounted on. Each sandbox mounts over
/// it inside its own mount namespace, so one directory serves all of them.
pub(crate) fn prepare_newroot(euid: u32) -> Result<PathBuf, SandboxError> {
    let dir = if euid == 0 {
        PathBuf::from("/run/stele/sandbox-root")
    } else {
        std::env::temp_dir().join(format!("stele-{euid}-sandbox-root"))
    };
    let err = |source| SandboxError::Prepare {
        what: "sandbox root mount point",
        source,
    };
    std::fs::create_dir_all(&dir).map_err(err)?;
    let meta = std::fs::symlink_metadata(&dir).map_err(err)?;
    // Refuse a directory someone else planted (or a symlink to elsewhere).
    if !meta.is_dir() || meta.uid() != euid {
        return Err(err(std::io::Error::other(format!(
            "{} is not a directory owned by uid {euid}",
            dir.display()
        ))));
    }
    // Sandboxed processes (host uid 65534) must be able to traverse it.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).map_err(err)?;
    if let Some(parent) = dir.parent() {
        if euid == 0 {
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))
                .map_err(err)?;
        }
    }
    Ok(dir)
}
