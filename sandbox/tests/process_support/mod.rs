//! Shared helpers for the sandbox integration tests: a recording Mediator,
//! facility checks that skip loudly, and sandbox builders.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use stele_sandbox::check::LayerReport;
use stele_sandbox::exec::{ExecOutcome, ExecRequest, Limits, Sandbox};
use stele_sandbox::process::{
    NetworkMode, ProcessSandbox, ProcessSandboxConfig, SystemRoot, WorkspaceMount,
};
use stele_sandbox::{
    FileAccess, FileChangeReport, FileCloseReport, FileRefusal, FileRequest, Mediator,
    NetCloseReport, NetRequest, NetVerdict, Refusal, RefusalRule, Ticket, Verdict,
};

/// What the recording mediator allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Allow every file access (network still denied).
    AllowFiles,
    /// Allow reads/lists, deny writes and deletes.
    ReadOnly,
    /// Deny everything.
    DenyAll,
}

/// A Mediator that records every question and answers by a simple rule.
#[derive(Debug)]
pub struct Recorder {
    pub rule: Rule,
    pub files: Mutex<Vec<FileRequest>>,
    pub closes: Mutex<Vec<FileCloseReport>>,
    pub changes: Mutex<Vec<FileChangeReport>>,
    pub refusals: Mutex<Vec<FileRefusal>>,
    pub nets: Mutex<Vec<NetRequest>>,
    /// Paths (and everything below them) every access to is denied.
    pub denied_paths: Mutex<Vec<String>>,
    /// Paths (and everything below them) writes and deletes to are denied.
    pub protected_paths: Mutex<Vec<String>>,
    /// Network attempts the sandbox refused by itself.
    pub refused: Mutex<Vec<stele_sandbox::NetAttempt>>,
    next: Mutex<u64>,
}

impl Recorder {
    pub fn new(rule: Rule) -> Arc<Recorder> {
        Arc::new(Recorder {
            rule,
            files: Mutex::new(Vec::new()),
            closes: Mutex::new(Vec::new()),
            changes: Mutex::new(Vec::new()),
            refusals: Mutex::new(Vec::new()),
            nets: Mutex::new(Vec::new()),
            denied_paths: Mutex::new(Vec::new()),
            protected_paths: Mutex::new(Vec::new()),
            refused: Mutex::new(Vec::new()),
            next: Mutex::new(1),
        })
    }

    /// Paths asked about with `access`.
    pub fn asked(&self, access: FileAccess) -> Vec<String> {
        self.files
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.access == access)
            .map(|r| r.path.clone())
            .collect()
    }

    /// Deny every access to `path` and below it, whatever the rule.
    pub fn deny_path(&self, path: &str) {
        self.denied_paths.lock().unwrap().push(path.to_string());
    }

    /// Deny writes and deletes under `path`, whatever the rule.
    pub fn protect(&self, path: &str) {
        self.protected_paths.lock().unwrap().push(path.to_string());
    }

    /// Refusals reported with `rule`, as (path, detail).
    pub fn refused(&self, rule: RefusalRule) -> Vec<(String, String)> {
        self.refusals
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.rule == rule)
            .map(|r| (r.path.clone(), r.detail.clone()))
            .collect()
    }

    fn ticket(&self) -> Ticket {
        let mut n = self.next.lock().unwrap();
        *n += 1;
        Ticket(*n)
    }
}

impl Mediator for Recorder {
    fn file_access(&self, req: &FileRequest) -> Verdict {
        self.files.lock().unwrap().push(req.clone());
        let under = |p: &String| req.path == *p || req.path.starts_with(&format!("{p}/"));
        if self.denied_paths.lock().unwrap().iter().any(under) {
            return Verdict::Deny("test path rule".into());
        }
        let changes = matches!(req.access, FileAccess::Write | FileAccess::Delete);
        if changes && self.protected_paths.lock().unwrap().iter().any(under) {
            return Verdict::Deny("test protected path".into());
        }
        let allow = match self.rule {
            Rule::AllowFiles => true,
            Rule::ReadOnly => matches!(req.access, FileAccess::Read | FileAccess::List),
            Rule::DenyAll => false,
        };
        if allow {
            Verdict::Allow(self.ticket())
        } else {
            Verdict::Deny("test rule".into())
        }
    }
    fn file_closed(&self, report: &FileCloseReport) {
        self.closes.lock().unwrap().push(report.clone());
    }
    fn file_changed(&self, report: &FileChangeReport) {
        self.changes.lock().unwrap().push(*report);
    }
    fn file_refused(&self, refusal: &FileRefusal) -> Refusal {
        self.refusals.lock().unwrap().push(refusal.clone());
        Refusal::new(refusal.reason())
    }
    fn net_connect(&self, req: &NetRequest) -> NetVerdict {
        self.nets.lock().unwrap().push(req.clone());
        NetVerdict::Deny("no network in tests".into())
    }
    fn net_closed(&self, _report: &NetCloseReport) {}
    fn net_refused(&self, attempt: &stele_sandbox::NetAttempt) {
        self.refused.lock().unwrap().push(attempt.clone());
    }
}

/// Print a loud skip line and return false when this host lacks what the
/// sandbox needs (user namespaces, Landlock, seccomp, /dev/fuse).
pub fn facilities_ok(need_fuse: bool) -> bool {
    let r = LayerReport::probe();
    for (layer, avail) in &r.namespaces {
        if !avail.is_available() {
            eprintln!("SKIPPED: needs {layer} ({avail})");
            return false;
        }
    }
    if r.landlock_abi == 0 {
        eprintln!("SKIPPED: needs landlock");
        return false;
    }
    if !r.seccomp.is_available() {
        eprintln!("SKIPPED: needs seccomp");
        return false;
    }
    if need_fuse && !r.fuse.is_available() {
        eprintln!("SKIPPED: needs /dev/fuse");
        return false;
    }
    true
}

/// Where `stele vm image build` put the tool image (as runtime/src/paths.rs).
pub fn image_store() -> stele_sandbox::vm::ImageStore {
    use std::path::PathBuf;
    if let Some(p) = std::env::var_os("STELE_VM_IMAGES").filter(|p| !p.is_empty()) {
        return stele_sandbox::vm::ImageStore::at(PathBuf::from(p));
    }
    let state = if let Some(p) = std::env::var_os("STELE_STATE_DIR").filter(|p| !p.is_empty()) {
        PathBuf::from(p)
    } else if let Some(p) = std::env::var_os("XDG_STATE_HOME").filter(|p| !p.is_empty()) {
        PathBuf::from(p).join("stele")
    } else {
        PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".local/state/stele")
    };
    stele_sandbox::vm::ImageStore::at(state.join("vm/images"))
}

/// The tool image's root: every process-sandbox test runs on it, as
/// stele's sessions do. Built by scripts/setup-vm; missing, tests fail.
pub fn image_root() -> SystemRoot {
    SystemRoot::image(&image_store())
        .expect("the tool image must be built by scripts/setup-vm (stele vm image build)")
}

/// The default configuration over `ws`, on the tool image's root.
pub fn config(ws: &Path, m: Arc<Recorder>) -> ProcessSandboxConfig {
    let mut cfg = ProcessSandboxConfig::new(ws, m);
    cfg.root = image_root();
    cfg
}

/// A mediated sandbox over `ws` whose commands may write `quota` bytes.
pub fn mediated_with_quota(
    ws: &Path,
    m: Arc<Recorder>,
    quota: stele_sandbox::fs::WriteQuota,
) -> ProcessSandbox {
    let mut cfg = config(ws, m);
    cfg.workspace_quota = quota;
    ProcessSandbox::new(cfg).expect("sandbox")
}

/// A mediated sandbox (FUSE workspace, egress proxy) over `ws`.
/// The workspace keeps its host owner and modes (a 0700 directory of
/// stele's user): the sandbox's user sees it as its own.
pub fn mediated(ws: &Path, m: Arc<Recorder>) -> ProcessSandbox {
    ProcessSandbox::new(config(ws, m)).expect("sandbox")
}

/// A sandbox with a plain bind-mounted workspace and no proxy (for tests of
/// the other layers). The workspace is made accessible to the sandbox's host uid.
pub fn plain(ws: &Path, m: Arc<Recorder>) -> ProcessSandbox {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(ws, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut cfg = config(ws, m);
    cfg.workspace_mount = WorkspaceMount::PlainBindForTestsOnly;
    cfg.network = NetworkMode::LoopbackOnly;
    ProcessSandbox::new(cfg).expect("sandbox")
}

/// [`plain`] with the given group (cgroup) limits.
pub fn plain_with(
    ws: &Path,
    m: Arc<Recorder>,
    resources: stele_sandbox::resources::ResourceLimits,
) -> ProcessSandbox {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(ws, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut cfg = config(ws, m);
    cfg.workspace_mount = WorkspaceMount::PlainBindForTestsOnly;
    cfg.network = NetworkMode::LoopbackOnly;
    cfg.resources = resources;
    ProcessSandbox::new(cfg).expect("sandbox")
}

/// [`mediated`] with the given group (cgroup) limits.
pub fn mediated_with(
    ws: &Path,
    m: Arc<Recorder>,
    resources: stele_sandbox::resources::ResourceLimits,
) -> ProcessSandbox {
    let mut cfg = config(ws, m);
    cfg.resources = resources;
    ProcessSandbox::new(cfg).expect("sandbox")
}

/// Run `sh -c script` with small limits.
pub fn sh(sb: &ProcessSandbox, script: &str) -> ExecOutcome {
    sh_with(sb, script, test_limits())
}

/// Run `sh -c script` with the given limits.
pub fn sh_with(sb: &ProcessSandbox, script: &str, limits: Limits) -> ExecOutcome {
    let mut req = ExecRequest::new("test", vec!["/bin/sh".into(), "-c".into(), script.into()]);
    req.limits = limits;
    sb.exec(req).expect("exec")
}

/// Limits small enough for tests.
pub fn test_limits() -> Limits {
    Limits {
        wall_time: std::time::Duration::from_secs(20),
        kill_grace: std::time::Duration::from_millis(500),
        cpu_seconds: 20,
        address_space_bytes: 2 << 30,
        file_size_bytes: 8 << 20,
        processes: 64,
        open_files: 256,
        tmp_bytes: 16 << 20,
        output_bytes: 64 << 10,
    }
}

/// Stdout as text.
pub fn out(o: &ExecOutcome) -> String {
    String::from_utf8_lossy(&o.stdout.bytes).into_owned()
}

/// Stderr as text.
pub fn err(o: &ExecOutcome) -> String {
    String::from_utf8_lossy(&o.stderr.bytes).into_owned()
}

/// A temporary workspace directory.
pub fn workspace() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("stele-ws-")
        .tempdir()
        .unwrap()
}
