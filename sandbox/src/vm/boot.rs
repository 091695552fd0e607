//! Booting one VM and stopping it: the run directory, the sockets handed
//! to QEMU's jail, the virtio-fs backend and egress proxy, QEMU itself, and
//! the wait for the agent's ready report.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::agent::initrd_with_agent;
use super::channel::Channel;
use super::error::VmError;
use super::jail;
use super::qemu::{self, Accel, QemuSpec, Qmp};
use super::sandbox::{VmInfo, VmSandboxConfig};
use super::virtiofs::VirtioFsServer;
use crate::fs::{IdMap, MediatedFs, MediatedLayer};
use crate::process::cgroup::{LeafGroup, SessionGroup};
use crate::process::NetworkMode;
use crate::proxy::EgressProxy;
use crate::resources::GroupLimits;
use crate::Requester;

/// A booted VM and what serves it.
pub(crate) struct RunningVm {
    pub qemu: qemu::Spawned,
    /// QEMU's cgroup (removed once QEMU is reaped).
    cgroup: Option<Arc<LeafGroup>>,
    layer: Arc<MediatedLayer>,
    qmp: Option<Qmp>,
    fs: VirtioFsServer,
    proxy: Option<EgressProxy>,
    run_dir: PathBuf,
}

impl RunningVm {
    /// The mediated workspace the VM's virtio-fs device is served from.
    pub(crate) fn layer(&self) -> &Arc<MediatedLayer> {
        &self.layer
    }
}

/// Boot one VM on `accel` and wait up to `timeout` for its agent.
pub(crate) fn boot(
    config: &VmSandboxConfig,
    accel: Accel,
    timeout: Duration,
    session: Option<&SessionGroup>,
) -> Result<(RunningVm, Arc<Channel>, VmInfo), VmError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let (initrd, agent_sha256) = initrd_with_agent(&config.image, &config.agent)?;
    let id = jail::identity(accel == Accel::Kvm)?;
    let run_dir = run_dir()?;
    let spec = QemuSpec {
        accel,
        memory_mib: config.memory_mib,
        kernel: config.image.kernel(),
        initrd,
        rootfs: config.image.rootfs(),
        run_dir: run_dir.clone(),
        virtiofs: true,
        id,
    };
    let prepared = prepare_run_dir(config, &spec);
    let (agent_listener, qmp_listener, fs_server, layer) = match prepared {
        Ok(p) => p,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&run_dir);
            return Err(e);
        }
    };
    let (proxy, proxy_addr) = match config.network {
        NetworkMode::EgressProxy => {
            let l = TcpListener::bind(("127.0.0.1", 0))
                .map_err(|e| VmError::Qemu(format!("proxy listener: {e}")))?;
            let addr: Option<SocketAddr> = l.local_addr().ok();
            let p = EgressProxy::serve(l, config.mediator.clone(), Requester::default())
                .map_err(|e| VmError::Qemu(format!("egress proxy: {e}")))?;
            (Some(p), addr)
        }
        NetworkMode::LoopbackOnly => (None, None),
    };
    // QEMU (and so the whole guest) under the session's limits.
    let cgroup = match session.map(|s| s.leaf(&GroupLimits::NONE)).transpose() {
        Ok(c) => c.map(Arc::new),
        Err(e) => {
            fs_server.join(Duration::from_millis(1));
            if let Some(p) = proxy {
                let _ = p.stop();
            }
            let _ = std::fs::remove_dir_all(&run_dir);
            return Err(VmError::Jail(format!("QEMU's cgroup: {e}")));
        }
    };
    let qemu = match qemu::spawn(&spec, cgroup.clone()) {
        Ok(q) => q,
        Err(e) => {
            fs_server.join(Duration::from_millis(1));
            if let Some(p) = proxy {
                let _ = p.stop();
            }
            let _ = std::fs::remove_dir_all(&run_dir);
            return Err(e);
        }
    };
    let mut vm = RunningVm {
        qemu,
        cgroup,
        layer,
        qmp: None,
        fs: fs_server,
        proxy,
        run_dir: run_dir.clone(),
    };
    let connected = (|| {
        let agent = qemu::accept(
            &agent_listener,
            &mut vm.qemu.vmm,
            deadline,
            "the agent channel",
        )?;
        let qmp = qemu::accept(&qmp_listener, &mut vm.qemu.vmm, deadline, "QMP")?;
        vm.qmp = Some(Qmp::negotiate(qmp, Duration::from_secs(5))?);
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        Channel::start(agent, left, proxy_addr)
    })();
    let (channel, ready) = match connected {
        Ok(c) => c,
        Err(e) => {
            let console = console_tail(&spec);
            // Whichever step ran out of time, the VM did not come up
            // within the boot timeout, and that is what the error says.
            let e = match e {
                VmError::BootTimeout { detail, .. } => VmError::BootTimeout {
                    timeout_ms: timeout.as_millis(),
                    detail: format!("{detail} ({} boot); console: {console}", accel.name()),
                },
                other if Instant::now() >= deadline => VmError::BootTimeout {
                    timeout_ms: timeout.as_millis(),
                    detail: format!("{other} ({} boot); console: {console}", accel.name()),
                },
                other => VmError::Qemu(format!("{other}; console: {console}")),
            };
            stop(vm);
            return Err(e);
        }
    };
    if !ready.errors.is_empty() || !ready.workspace {
        let detail = if ready.errors.is_empty() {
            "the workspace is not mounted".to_owned()
        } else {
            ready.errors.join("; ")
        };
        stop(vm);
        return Err(VmError::Guest(detail));
    }
    let info = VmInfo {
        accel,
        image_digest: config.image.manifest.digest.clone(),
        agent_sha256,
        kernel: ready.kernel,
        guest_landlock_abi: ready.landlock_abi,
        boot_time: started.elapsed(),
        jail: vm.qemu.jail.clone(),
        guest_aslr: spec.guest_aslr(),
    };
    Ok((vm, channel, info))
}

/// Quit QEMU (QMP, then SIGKILL), stop the proxy and file server, remove
/// the run directory.
pub(crate) fn stop(mut vm: RunningVm) {
    if let Some(mut qmp) = vm.qmp.take() {
        let _ = qmp.command("quit");
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if vm.qemu.vmm.try_wait().is_some() {
            break;
        }
        if Instant::now() >= deadline {
            vm.qemu.vmm.kill();
            vm.qemu.vmm.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    vm.qemu.release();
    // QEMU is reaped: its cgroup is empty and goes.
    drop(vm.cgroup.take());
    if let Some(p) = vm.proxy.take() {
        let _ = p.stop();
    }
    vm.fs.join(Duration::from_secs(2));
    // Files the guest still had open when it stopped: report their closes,
    // so no allowed open is left without one.
    vm.layer.close_all();
    let _ = std::fs::remove_dir_all(&vm.run_dir);
}

fn console_tail(spec: &QemuSpec) -> String {
    let mut text = std::fs::read_to_string(spec.console_log()).unwrap_or_default();
    text.push_str(&std::fs::read_to_string(spec.stderr_log()).unwrap_or_default());
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(6);
    lines[start..].join(" | ")
}

/// The share directory QEMU sees (owned by QEMU's uid), the listening
/// sockets handed over to it, and the virtio-fs backend over the mediated
/// workspace.
#[allow(clippy::type_complexity)]
fn prepare_run_dir(
    config: &VmSandboxConfig,
    spec: &QemuSpec,
) -> Result<
    (
        UnixListener,
        UnixListener,
        VirtioFsServer,
        Arc<MediatedLayer>,
    ),
    VmError,
> {
    jail::prepare_share_dir(&spec.share_dir(), spec.id)?;
    let bind = |p: PathBuf| {
        let l = UnixListener::bind(&p).map_err(|source| VmError::File {
            what: "socket",
            path: p.clone(),
            source,
        })?;
        jail::hand_over(&p, spec.id)?;
        Ok::<_, VmError>(l)
    };
    let agent_listener = bind(spec.agent_socket())?;
    let qmp_listener = bind(spec.qmp_socket())?;
    let fs = MediatedFs::new(
        &config.workspace,
        config.mediator.clone(),
        Requester::default(),
    )
    .map_err(|e| VmError::VirtioFs(e.to_string()))?;
    let owner = std::fs::metadata(&config.workspace).map_err(|source| VmError::File {
        what: "workspace",
        path: config.workspace.clone(),
        source,
    })?;
    let guest_id = super::guest::GUEST_USER;
    let fs = fs.with_id_map(IdMap {
        host_uid: owner.uid(),
        host_gid: owner.gid(),
        sandbox_uid: guest_id,
        sandbox_gid: guest_id,
    });
    let layer = fs.layer().clone();
    layer.set_write_quota(config.workspace_quota);
    let fs_server = VirtioFsServer::start(&spec.fs_socket(), layer.clone())?;
    jail::hand_over(&spec.fs_socket(), spec.id)?;
    Ok((agent_listener, qmp_listener, fs_server, layer))
}

/// A private directory for the VM's sockets and logs.
fn run_dir() -> Result<PathBuf, VmError> {
    let base = std::env::temp_dir();
    for n in 0..100u32 {
        let dir = base.join(format!("stele-vm-{}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(VmError::File {
                    what: "VM run directory",
                    path: dir,
                    source,
                })
            }
        }
    }
    Err(VmError::Qemu("no free VM run directory".into()))
}
