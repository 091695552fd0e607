//! Which sandbox backend a session runs in. The sandbox is built (the VM
//! booted) *before* `session.start` is written, so that entry, the policy
//! facts and the attestation name the backend that actually runs; until
//! the session's gate exists the sandbox is mediated by a
//! [`DeferredMediator`] that refuses everything.
//!
//! A micro-VM that does not come up is an error. Only an explicit
//! `vm_fallback = "process"` (config or `--vm-fallback process`) lets the
//! session run in the process sandbox instead; the user is warned and the
//! log records what was asked for, what ran and why.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::Context as _;
use serde_json::json;
use stele_sandbox::exec::Sandbox;
use stele_sandbox::fs::WriteQuota;
use stele_sandbox::process::{NetworkMode, ProcessSandbox, ProcessSandboxConfig, SystemRoot};
use stele_sandbox::resources::ResourceLimits;
use stele_sandbox::{
    FileChangeReport, FileCloseReport, FileRefusal, FileRequest, Mediator, NetAttempt,
    NetCloseReport, NetRequest, NetVerdict, Refusal, Verdict,
};

/// Which sandbox backend runs the commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// Namespaces + Landlock + seccomp on the host kernel (the default).
    Process,
    /// A QEMU micro-VM with its own kernel (`stele vm check`).
    Vm,
}

impl BackendChoice {
    /// The name the log and policies use (`context.sandbox.backend`).
    pub fn recorded(self) -> &'static str {
        match self {
            BackendChoice::Process => "process",
            BackendChoice::Vm => "microvm",
        }
    }

    /// The backend a `session.start` entry names (`sandbox_backend`).
    pub fn from_recorded(name: &str) -> Option<BackendChoice> {
        match name {
            "process" => Some(BackendChoice::Process),
            "microvm" => Some(BackendChoice::Vm),
            _ => None,
        }
    }
}

/// Which system directories the process backend's commands see.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootChoice {
    /// The tool image's root tree (`stele vm image build`; the default):
    /// the same software in both backends, its digest in the log.
    #[default]
    Image,
    /// The host's `/usr`, `/bin`, `/lib*`, `/etc` (a fallback; recorded as such).
    Host,
}

/// The process backend's root: the managed value, else the user's
/// `sandbox_root`, else the image.
pub fn sandbox_root(layers: &crate::config::Layers) -> anyhow::Result<RootChoice> {
    Ok(layers
        .pick("sandbox_root", None, |c| c.sandbox_root)?
        .unwrap_or_default())
}

/// What to do when the micro-VM does not come up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmFallback {
    /// Refuse to run (the default).
    #[default]
    None,
    /// Run the session in the process sandbox instead (warned and recorded).
    Process,
}

/// A mediator that refuses everything until [`DeferredMediator::bind`]
/// gives it the session's: the sandbox exists before the gate does.
#[derive(Debug, Default)]
pub struct DeferredMediator {
    target: OnceLock<Arc<dyn Mediator>>,
}

impl DeferredMediator {
    /// Hand every later question to `target` (once; later calls are ignored).
    pub fn bind(&self, target: Arc<dyn Mediator>) {
        let _ = self.target.set(target);
    }

    fn refuse() -> Verdict {
        Verdict::Deny("the session has not started".into())
    }
}

impl Mediator for DeferredMediator {
    fn file_access(&self, req: &FileRequest) -> Verdict {
        self.target
            .get()
            .map_or_else(Self::refuse, |m| m.file_access(req))
    }
    fn file_closed(&self, report: &FileCloseReport) {
        // Nothing was allowed before binding, so nothing unbound can close.
        if let Some(m) = self.target.get() {
            m.file_closed(report);
        }
    }
    fn file_changed(&self, report: &FileChangeReport) {
        if let Some(m) = self.target.get() {
            m.file_changed(report);
        }
    }
    fn file_refused(&self, refusal: &FileRefusal) -> Refusal {
        match self.target.get() {
            Some(m) => m.file_refused(refusal),
            None => Refusal::new(refusal.reason()),
        }
    }
    fn net_connect(&self, req: &NetRequest) -> NetVerdict {
        self.target.get().map_or_else(
            || NetVerdict::Deny("the session has not started".into()),
            |m| m.net_connect(req),
        )
    }
    fn net_closed(&self, report: &NetCloseReport) {
        if let Some(m) = self.target.get() {
            m.net_closed(report);
        }
    }
    fn net_refused(&self, attempt: &NetAttempt) {
        // Before binding nothing runs, so nothing can be refused unseen.
        if let Some(m) = self.target.get() {
            m.net_refused(attempt);
        }
    }
}

/// Which backend a session asks for, and what may happen if it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    /// The backend asked for.
    pub requested: BackendChoice,
    /// What to do when the micro-VM does not come up.
    pub fallback: VmFallback,
    /// The micro-VM's boot timeout [default: the backend's, 60 s].
    pub vm_boot_timeout: Option<std::time::Duration>,
    /// What the session's commands may write into the workspace, together.
    pub workspace_quota: WriteQuota,
    /// Memory, process and CPU limits per command and for the session.
    pub resources: ResourceLimits,
    /// The process backend's system directories.
    pub root: RootChoice,
}

impl BackendSpec {
    /// The process backend, no fallback, the default quota.
    pub fn process() -> BackendSpec {
        BackendSpec {
            requested: BackendChoice::Process,
            fallback: VmFallback::None,
            vm_boot_timeout: None,
            workspace_quota: WriteQuota::default(),
            resources: ResourceLimits::default(),
            root: RootChoice::Image,
        }
    }
}

/// The workspace write quota: the managed value, else `flag`, else the
/// user's `workspace_write_quota`, else the default (4 GiB).
pub fn workspace_quota(
    layers: &crate::config::Layers,
    flag: Option<WriteQuota>,
) -> anyhow::Result<WriteQuota> {
    Ok(layers
        .pick("workspace_write_quota", flag, |c| c.workspace_write_quota)?
        .unwrap_or_default())
}

/// A built sandbox and what the log says about it.
pub struct Built {
    /// The sandbox.
    pub sandbox: Arc<dyn Sandbox>,
    /// The backend that runs.
    pub ran: BackendChoice,
    /// Fields for `session.start` (or a resumption's `policy.load`).
    pub record: serde_json::Value,
    /// The attestation's sandbox settings (the network is added by the caller).
    pub attestation: serde_json::Value,
}

/// Build the sandbox `spec` asks for, falling back to the process backend
/// only when its `fallback` says so.
pub fn build(
    spec: &BackendSpec,
    workspace: &Path,
    mediator: Arc<dyn Mediator>,
    network: NetworkMode,
) -> anyhow::Result<Built> {
    if spec.requested == BackendChoice::Process {
        return process(workspace, mediator, network, spec);
    }
    let vm_error = match super::vm::vm_sandbox(
        workspace,
        mediator.clone(),
        network,
        spec.vm_boot_timeout,
        spec.workspace_quota,
        &spec.resources,
    ) {
        Ok(vm) => return Ok(vm_built(vm, spec.workspace_quota)),
        Err(e) => e,
    };
    if spec.fallback != VmFallback::Process {
        return Err(vm_error.context(
            "the micro-VM did not come up (stele never runs unsandboxed; \
             `vm_fallback = \"process\"` would allow the process sandbox instead)",
        ));
    }
    // The outermost message already includes its causes.
    let reason = format!("{vm_error}");
    crate::errln!(
        "stele: WARNING: the micro-VM did not come up ({}); running in the process \
         sandbox as the configuration allows (vm_fallback = \"process\"); the log records it",
        crate::terminal_safe::line(&reason)
    );
    let mut built = process(workspace, mediator, network, spec)
        .context("the micro-VM did not come up, and neither did the process sandbox")?;
    let fallback = json!({
        "from": BackendChoice::Vm.recorded(),
        "to": BackendChoice::Process.recorded(),
        "reason": reason,
        "allowed_by": "vm_fallback = \"process\"",
    });
    for v in [&mut built.record, &mut built.attestation] {
        v["sandbox_backend_requested"] = json!(BackendChoice::Vm.recorded());
        v["sandbox_fallback"] = fallback.clone();
    }
    Ok(built)
}

fn process(
    workspace: &Path,
    mediator: Arc<dyn Mediator>,
    network: NetworkMode,
    spec: &BackendSpec,
) -> anyhow::Result<Built> {
    let quota = spec.workspace_quota;
    let mut cfg = ProcessSandboxConfig::new(workspace, mediator);
    cfg.network = network;
    cfg.workspace_quota = quota;
    cfg.resources = spec.resources.clone();
    cfg.root = match spec.root {
        RootChoice::Image => {
            SystemRoot::image(&super::vm::default_store()).map_err(super::exit::sandbox_refusal)?
        }
        RootChoice::Host => {
            crate::errln!(
                "stele: WARNING: the process sandbox runs on the host's system directories \
                 (sandbox_root = \"host\"); the log records it"
            );
            SystemRoot::Host
        }
    };
    let root = cfg.root.json();
    let sandbox = ProcessSandbox::new(cfg).map_err(super::exit::sandbox_refusal)?;
    let resources = sandbox.resources_json();
    if let Some(why) = resources["without_cgroups"].as_str() {
        crate::errln!(
            "stele: WARNING: running without cgroup limits ({why}); the configuration allows it \
             (resources.cgroups = \"optional\"); the log records it"
        );
    }
    Ok(Built {
        sandbox: Arc::new(sandbox),
        ran: BackendChoice::Process,
        record: json!({
            "workspace_write_quota": quota.limit(),
            "sandbox_resources": resources,
            "sandbox_root": root,
        }),
        attestation: json!({
            "backend": "process",
            "layers": "namespaces, landlock, seccomp, cgroups, mediated FUSE workspace",
            "workspace_write_quota": quota.limit(),
            "resources": resources,
            "sandbox_root": root,
        }),
    })
}

fn vm_built(vm: stele_sandbox::vm::VmSandbox, quota: WriteQuota) -> Built {
    let info = vm.info().clone();
    let record = json!({
        "vm_image_digest": info.image_digest,
        "vm_kernel": info.kernel,
        "vm_accel": info.accel.name(),
        "vm_kvm": info.accel == stele_sandbox::vm::Accel::Kvm,
        "vm_agent_sha256": info.agent_sha256,
        "vm_guest_landlock_abi": info.guest_landlock_abi,
        "vm_guest_aslr": info.guest_aslr,
        "vm_boot_ms": u64::try_from(info.boot_time.as_millis()).unwrap_or(u64::MAX),
        "vm_jail": info.jail.to_json(),
        "sandbox_root": { "root": "image", "image_digest": info.image_digest },
        "workspace_write_quota": quota.limit(),
        "sandbox_resources": vm.resources_json(),
    });
    let mut attestation = record.clone();
    attestation["backend"] = json!("microvm");
    attestation["layers"] = json!(
        "QEMU microvm (own kernel) jailed by stele (namespaces, unprivileged uid, minimal root, \
         landlock, seccomp), in-guest landlock + seccomp, mediated virtio-fs workspace, \
         proxy-only network"
    );
    Built {
        sandbox: Arc::new(vm),
        ran: BackendChoice::Vm,
        record,
        attestation,
    }
}
