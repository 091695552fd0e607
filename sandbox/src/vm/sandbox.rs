//! [`VmSandbox`]: the `Sandbox` trait over one warm micro-VM, booted when
//! the sandbox is built and reused for every command.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::boot::{boot, stop, RunningVm};
use super::channel::{Channel, ExecEvent};
use super::error::VmError;
use super::image::GuestImage;
use super::jail::JailInfo;
use super::protocol::{Bytes, ExecSpec, GroupSpec, GuestStatus, HostMsg, Rlimit, StreamKind};
use super::qemu::{self, Accel, AccelChoice, KvmProbe};
use crate::check::LayerReport;
use crate::error::SandboxError;
use crate::exec::{
    BackendKind, Captured, ExecOutcome, ExecRequest, ExitStatus, ResourceUsage, Sandbox, Truncation,
};
use crate::process::cgroup::SessionGroup;
use crate::process::spawn::{environment, rlimits, sandbox_cwd};
use crate::process::NetworkMode;
use crate::resources::{GroupLimits, GroupUsage, ResourceLimits};
use crate::Mediator;

/// Configuration of a [`VmSandbox`].
#[derive(Debug, Clone)]
pub struct VmSandboxConfig {
    /// The granted workspace folder on the host (served over virtio-fs).
    pub workspace: PathBuf,
    /// Asked before every workspace access and outbound connection.
    pub mediator: Arc<dyn Mediator>,
    /// The network: the egress proxy through the channel, or nothing.
    pub network: NetworkMode,
    /// The guest image.
    pub image: GuestImage,
    /// The `stele-guest` binary to run in the guest.
    pub agent: PathBuf,
    /// Accelerator.
    pub accel: AccelChoice,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// Time from QEMU's start to the agent's ready message; longer is an error.
    pub boot_timeout: Duration,
    /// Bytes the VM's commands may write into the workspace, together.
    pub workspace_quota: crate::fs::WriteQuota,
    /// The session's limits (QEMU's cgroup) and each command's (a cgroup in
    /// the guest).
    pub resources: crate::resources::ResourceLimits,
}

impl VmSandboxConfig {
    /// Defaults: egress proxy, accelerator probed, 512 MiB, 60 s boot timeout.
    pub fn new(
        workspace: impl Into<PathBuf>,
        mediator: Arc<dyn Mediator>,
        image: GuestImage,
        agent: impl Into<PathBuf>,
    ) -> Self {
        VmSandboxConfig {
            workspace: workspace.into(),
            mediator,
            network: NetworkMode::EgressProxy,
            image,
            agent: agent.into(),
            accel: AccelChoice::Auto,
            memory_mib: 512,
            boot_timeout: Duration::from_secs(60),
            workspace_quota: crate::fs::WriteQuota::default(),
            resources: crate::resources::ResourceLimits::default(),
        }
    }
}

/// What ran, for the log and attestations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmInfo {
    /// The accelerator the VM runs on.
    pub accel: Accel,
    /// The guest image digest.
    pub image_digest: String,
    /// SHA-256 of the agent binary.
    pub agent_sha256: String,
    /// Guest kernel release.
    pub kernel: String,
    /// Landlock ABI inside the guest.
    pub guest_landlock_abi: u8,
    /// Time from starting QEMU to the agent's ready message.
    pub boot_time: Duration,
    /// How QEMU itself is confined.
    pub jail: JailInfo,
    /// Whether guest commands get address space randomisation (not under
    /// TCG, where it makes every run translate its code again).
    pub guest_aslr: bool,
}

/// The micro-VM sandbox (one warm VM).
pub struct VmSandbox {
    report: LayerReport,
    info: VmInfo,
    vm: Mutex<Option<RunningVm>>,
    pub(super) channel: Arc<Channel>,
    next_id: AtomicU64,
    /// The sandbox's mediator, told of file requests refused before they
    /// reach the workspace (`files.rs`).
    pub(super) mediator: Arc<dyn Mediator>,
    resources: ResourceLimits,
    /// The session's host cgroup, holding QEMU (declared after `vm`: it
    /// goes once QEMU is gone).
    cgroups: Option<SessionGroup>,
    without_cgroups: Option<String>,
}

impl std::fmt::Debug for VmSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmSandbox")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl VmSandbox {
    /// Boot the VM and wait for its agent. A VM that does not come up within
    /// the boot timeout is an error (never a silent fallback).
    pub fn new(config: VmSandboxConfig) -> Result<VmSandbox, SandboxError> {
        let report = LayerReport::probe_with(&config.resources);
        if let Some(limit) = config.resources.session.memory_bytes {
            let needed = (u64::from(config.memory_mib) << 20) + QEMU_OVERHEAD_BYTES;
            if limit < needed {
                return Err(SandboxError::InvalidRequest(format!(
                    "the session memory limit ({limit} bytes) is below what the VM needs: its \
                     {} MiB of RAM plus {} MiB for QEMU itself",
                    config.memory_mib,
                    QEMU_OVERHEAD_BYTES >> 20
                )));
            }
        }
        let (cgroups, without_cgroups) = crate::process::session_group(&config.resources)?;
        let accels: Vec<Accel> = match config.accel {
            AccelChoice::Kvm => vec![Accel::Kvm],
            AccelChoice::Tcg => vec![Accel::Tcg],
            AccelChoice::Auto => match qemu::probe_kvm() {
                KvmProbe::Usable => vec![Accel::Kvm, Accel::Tcg],
                KvmProbe::Unusable(_) => vec![Accel::Tcg],
            },
        };
        let mut last = None;
        for (i, accel) in accels.iter().enumerate() {
            // A KVM attempt that may fall back gets a short leash: on a
            // broken KVM the guest hangs rather than fails.
            let timeout = if i + 1 < accels.len() {
                config.boot_timeout.min(Duration::from_secs(10))
            } else {
                config.boot_timeout
            };
            match boot(&config, *accel, timeout, cgroups.as_ref()) {
                Ok((vm, channel, info)) => {
                    return Ok(VmSandbox {
                        report,
                        info,
                        vm: Mutex::new(Some(vm)),
                        channel,
                        next_id: AtomicU64::new(1),
                        mediator: config.mediator.clone(),
                        resources: config.resources.clone(),
                        cgroups,
                        without_cgroups,
                    })
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or_else(|| VmError::Qemu("no accelerator to try".into()))
            .into())
    }

    /// What is running.
    pub fn info(&self) -> &VmInfo {
        &self.info
    }

    /// What the VM (QEMU and everything in the guest) used so far, as its
    /// host cgroup accounted it.
    pub fn session_usage(&self) -> Option<GroupUsage> {
        self.cgroups.as_ref().map(SessionGroup::usage)
    }

    /// The session's host cgroup directory (QEMU is in a leaf below it).
    pub fn session_cgroup(&self) -> Option<&std::path::Path> {
        self.cgroups.as_ref().map(SessionGroup::dir)
    }

    /// The resource layer as set up, for `session.start` and attestations.
    pub fn resources_json(&self) -> serde_json::Value {
        crate::process::resources_json(
            &self.resources,
            self.cgroups.as_ref(),
            self.without_cgroups.as_deref(),
        )
    }

    /// The host pid of the VM's QEMU, while it runs.
    pub fn vmm_pid(&self) -> Option<u32> {
        self.vm
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|vm| vm.qemu.vmm.pid())
    }

    /// A fresh request id (commands, pings and file requests share them).
    pub(super) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// One round trip over the guest channel with no command: the
    /// channel's own latency, for benchmarks.
    pub fn ping(&self) -> Result<Duration, SandboxError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let rx = self.channel.register(id);
        let started = Instant::now();
        let sent = self.channel.send(&HostMsg::Ping { id });
        let answer =
            sent.map_err(SandboxError::from)
                .and_then(|()| match rx.recv_timeout(CHANNEL_SLACK) {
                    Ok(ExecEvent::Pong) => Ok(started.elapsed()),
                    Ok(other) => Err(VmError::Channel(format!("unexpected {other:?}")).into()),
                    Err(_) => Err(SandboxError::Lost("no answer to ping".into())),
                });
        self.channel.unregister(id);
        answer
    }

    /// Power the VM off and release everything (also done on drop).
    pub fn shutdown(&self) {
        let vm = self
            .vm
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(vm) = vm {
            stop(vm);
        }
    }
}

impl Drop for VmSandbox {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Slack on top of the command's own deadline before the VM counts as lost.
const CHANNEL_SLACK: Duration = Duration::from_secs(30);
/// QEMU's own memory on top of the guest's RAM (TCG's translation cache,
/// device state; measured ~220-230 MB under TCG).
const QEMU_OVERHEAD_BYTES: u64 = 256 << 20;

impl Sandbox for VmSandbox {
    fn kind(&self) -> BackendKind {
        BackendKind::MicroVm
    }

    fn layers(&self) -> &LayerReport {
        &self.report
    }

    fn exec(&self, req: ExecRequest) -> Result<ExecOutcome, SandboxError> {
        if req.argv.is_empty() {
            return Err(SandboxError::InvalidRequest("empty argv".into()));
        }
        if req.argv.iter().any(|a| a.contains('\0')) {
            return Err(SandboxError::InvalidRequest(
                "argv contains a NUL byte".into(),
            ));
        }
        let cwd = sandbox_cwd(&req.cwd)?;
        let env = environment(&req, &cwd)?;
        let limits = rlimits(&req)
            .into_iter()
            .map(|(resource, l)| Rlimit {
                resource,
                soft: l.rlim_cur,
                hard: l.rlim_max,
            })
            .collect();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let cap = req.limits.output_bytes;
        let spec = ExecSpec {
            id,
            argv: req.argv.clone(),
            cwd,
            env,
            stdin: Bytes(req.stdin.clone()),
            wall_ms: u64::try_from(req.limits.wall_time.as_millis()).unwrap_or(u64::MAX),
            kill_grace_ms: u64::try_from(req.limits.kill_grace.as_millis()).unwrap_or(u64::MAX),
            output_bytes: cap as u64,
            rlimits: limits,
            group: GroupSpec::from(&self.resources.command),
        };
        let rx = self.channel.register(id);
        let result = self
            .channel
            .send(&HostMsg::Exec(spec))
            .map_err(SandboxError::from)
            .and_then(|()| collect(&rx, &req, cap, self.resources.command));
        self.channel.unregister(id);
        result.map(|mut out| {
            out.usage.session = self.session_usage();
            out
        })
    }

    fn workspace_usage(&self) -> Option<crate::fs::WriteUsage> {
        self.vm
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|vm| vm.layer().write_usage())
    }
}

fn collect(
    rx: &mpsc::Receiver<ExecEvent>,
    req: &ExecRequest,
    cap: usize,
    group_limits: GroupLimits,
) -> Result<ExecOutcome, SandboxError> {
    let deadline = Instant::now() + req.limits.wall_time + req.limits.kill_grace + CHANNEL_SLACK;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = match rx.recv_timeout(left) {
            Ok(ev) => ev,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(SandboxError::Lost("the VM did not answer in time".into()))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(SandboxError::Lost("the VM's agent went away".into()))
            }
        };
        match ev {
            ExecEvent::Output(kind, data) => {
                let buf = match kind {
                    StreamKind::Stdout => &mut out,
                    StreamKind::Stderr => &mut err,
                };
                let room = cap.saturating_sub(buf.len());
                buf.extend_from_slice(&data[..data.len().min(room)]);
            }
            ExecEvent::Pong | ExecEvent::Fs(_) => {}
            ExecEvent::Failed { error, errno } => {
                return Err(match errno {
                    Some(e) => SandboxError::Spawn {
                        program: req.argv.first().cloned().unwrap_or_default(),
                        source: std::io::Error::from_raw_os_error(e),
                    },
                    None => VmError::Guest(error).into(),
                })
            }
            ExecEvent::Exited(r) => {
                let captured = |bytes: Vec<u8>, total: u64| {
                    let truncation = if total > bytes.len() as u64 {
                        Truncation::Truncated { total_bytes: total }
                    } else {
                        Truncation::Complete
                    };
                    Captured { bytes, truncation }
                };
                return Ok(ExecOutcome {
                    id: req.id.clone(),
                    status: match r.status {
                        GuestStatus::Exit(c) => ExitStatus::Exit(c),
                        GuestStatus::Signal(s) => ExitStatus::Signal(s),
                        GuestStatus::TimedOut => ExitStatus::TimedOut,
                    },
                    stdout: captured(out, r.stdout_total),
                    stderr: captured(err, r.stderr_total),
                    usage: ResourceUsage {
                        user_cpu: Duration::from_micros(r.user_cpu_us),
                        system_cpu: Duration::from_micros(r.system_cpu_us),
                        max_rss_bytes: r.max_rss_bytes,
                        group: r.group.map(|g| g.usage(group_limits)),
                        session: None,
                    },
                    duration: Duration::from_micros(r.duration_us),
                    // The guest denies such sockets with its filter (EPERM,
                    // unrecorded); see docs/microvm.md.
                    network_refusals: 0,
                });
            }
        }
    }
}
