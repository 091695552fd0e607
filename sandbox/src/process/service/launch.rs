//! Starting a service: everything prepared in the parent (the child may not
//! allocate), then a raw `clone` into new namespaces, the id maps, and the
//! hand-shake that ends when the program has been executed.
//!
//! Runs on the service's keeper thread: the child's `PDEATHSIG` is tied to
//! the thread that cloned it.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::grants::{self, Resolved};
use super::{ServiceInfo, ServiceIo, ServiceNetwork, ServiceSpec};
use crate::check::{FuseRequirement, LayerReport, Requirements};
use crate::error::SandboxError;
use crate::exec::PROXY_PORT;
use crate::process::landlock::{self, Grant, Tcp};
use crate::process::plan::{tag, ChildFds, MountFds, Plan};
use crate::process::rootfs::{self, SystemEntry, DEVICES};
use crate::process::spawn::{
    self, cstring, read_record, record_value, setup_error, write_byte, write_id_maps, InitGuard,
    RlimitSet,
};
use crate::process::{child, netpool, prepare_newroot, seccomp, sys, UNPRIVILEGED_ID};
use crate::proxy::EgressProxy;
use crate::Requester;

/// Namespaces a service gets (the network one is made beforehand and
/// inherited).
const NAMESPACES: [&str; 7] = ["user", "mount", "pid", "net", "ipc", "uts", "cgroup"];

/// A started service, as the keeper holds it.
pub(super) struct Launched {
    /// Host pid (PID 1 of the service's pid namespace); killed and reaped
    /// by the guard if the keeper leaves without reaping it.
    pub guard: InitGuard,
    /// Becomes readable when the service exits.
    pub pidfd: OwnedFd,
    /// The caller's ends of the standard streams.
    pub io: ServiceIo,
    /// How it is confined.
    pub info: ServiceInfo,
    /// The service's egress proxy, stopped after the service is gone.
    pub proxy: Option<EgressProxy>,
}

fn prep(what: &'static str) -> impl Fn(std::io::Error) -> SandboxError {
    move |source| SandboxError::Prepare { what, source }
}

/// The layers every service needs (FUSE is not one: no mediated workspace).
fn probe() -> Result<u8, SandboxError> {
    let report = LayerReport::probe();
    report.require(&Requirements {
        landlock_min_abi: 1,
        fuse: FuseRequirement::NotRequired,
        // Services are bounded by their rlimits (`ServiceLimits`), not
        // (yet) by a cgroup of their own.
        cgroups: crate::resources::CgroupRequirement::AllowWithout,
    })?;
    Ok(report.landlock_abi)
}

fn system_dirs(entries: &[SystemEntry]) -> Vec<PathBuf> {
    entries
        .iter()
        .filter_map(|e| match e {
            SystemEntry::Dir(d) => Some(Path::new("/").join(d)),
            SystemEntry::Symlink(..) => None,
        })
        .collect()
}

/// Check that `cwd` is absolute and plain (the child `chdir`s into it).
fn check_cwd(cwd: &Path) -> Result<String, SandboxError> {
    let s = cwd.to_string_lossy().into_owned();
    let plain = cwd.is_absolute()
        && cwd
            .components()
            .all(|c| !matches!(c, std::path::Component::ParentDir));
    if !plain {
        return Err(SandboxError::InvalidRequest(format!(
            "service cwd {s:?} must be an absolute path without `..`"
        )));
    }
    Ok(s)
}

/// Prepare, clone and hand-shake. On success the program runs.
pub(super) fn launch(spec: &ServiceSpec) -> Result<Launched, SandboxError> {
    let abi = probe()?;
    let program = spec
        .argv
        .first()
        .ok_or_else(|| SandboxError::InvalidRequest("empty argv".into()))?
        .clone();
    let cwd = check_cwd(&spec.cwd)?;
    let env = spawn::scrubbed_env(&spec.env, &cwd)?;
    let programs = spawn::programs(&program, &env)?;
    let argv = spec
        .argv
        .iter()
        .map(|a| cstring(a, "argument"))
        .collect::<Result<Vec<_>, _>>()?;
    let envs = env
        .iter()
        .map(|(k, v)| cstring(&format!("{k}={v}"), "environment"))
        .collect::<Result<Vec<_>, _>>()?;

    let euid = sys::geteuid();
    let root = euid == 0;
    let (uid, gid) = if root {
        (UNPRIVILEGED_ID, UNPRIVILEGED_ID)
    } else {
        (euid, sys::getegid())
    };
    let entries = rootfs::host_system_entries();
    let newroot = prepare_newroot(euid)?;
    let granted: Vec<Resolved> = grants::resolve(&spec.grants, &entries)?;

    // The root: system directories, /proc, /dev, a private /tmp, the grants.
    let nr = newroot.as_path();
    let mut ops = Vec::new();
    rootfs::root_tmpfs(&mut ops, nr)?;
    rootfs::system(&mut ops, nr, &entries, rootfs::SystemSource::Host)?;
    rootfs::proc(&mut ops, nr)?;
    rootfs::dev(&mut ops, nr, &DEVICES, Some(spec.limits.tmp_bytes))?;
    rootfs::tmp(&mut ops, nr, spec.limits.tmp_bytes)?;
    grants::root_ops(&mut ops, nr, &granted, &entries)?;
    let (before_pivot, after_pivot) = rootfs::finish(ops, nr)?;

    // Landlock: host inodes here, the child's own mounts in the child.
    let sys_dirs = system_dirs(&entries);
    let devices: Vec<PathBuf> = DEVICES.iter().map(|d| Path::new("/dev").join(d)).collect();
    let mut rules: Vec<(&Path, Grant)> = sys_dirs
        .iter()
        .map(|d| (d.as_path(), Grant::ReadExec))
        .collect();
    rules.extend(devices.iter().map(|d| (d.as_path(), Grant::Device)));
    rules.extend(grants::landlock_rules(&granted));
    let ruleset = landlock::ruleset(abi, &rules, Tcp::ConnectOnly(PROXY_PORT))?;
    let child_rules = landlock::base_child_rules(abi)?;

    let pipe = |what| sys::pipe().map_err(prep(what));
    let (go_r, go_w) = pipe("handshake pipe")?;
    let (rep_r, rep_w) = pipe("report pipe")?;
    let (in_r, in_w) = pipe("stdin pipe")?;
    let (out_r, out_w) = pipe("stdout pipe")?;
    let (err_r, err_w) = pipe("stderr pipe")?;
    let mount_fds: Vec<i32> = granted
        .iter()
        .filter_map(|g| g.mount.as_ref().map(AsRawFd::as_raw_fd))
        .collect();
    let limits = RlimitSet {
        cpu_seconds: spec.limits.cpu_seconds,
        address_space_bytes: spec.limits.address_space_bytes,
        file_size_bytes: spec.limits.file_size_bytes,
        processes: spec.limits.processes,
        open_files: spec.limits.open_files,
    };
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = envs.iter().map(|c| c.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    let plan = Plan {
        newroot: cstring(&nr.to_string_lossy(), "root")?,
        put_old: cstring(&nr.join(".oldroot").to_string_lossy(), "root")?,
        before_pivot,
        after_pivot,
        rules: child_rules,
        clear_groups: root,
        hostname: cstring("stele-service", "hostname")?,
        fds: ChildFds {
            go: go_r.as_raw_fd(),
            report: rep_w.as_raw_fd(),
            stdin: in_r.as_raw_fd(),
            stdout: out_w.as_raw_fd(),
            stderr: err_w.as_raw_fd(),
            mounts: MountFds::of(&mount_fds)?,
            ruleset: ruleset.as_raw_fd(),
            notify: -1,
        },
        _argv: argv,
        argv_ptrs,
        _env: envs,
        env_ptrs,
        programs,
        cwd: cstring(&cwd, "cwd")?,
        rlimits: spawn::rlimit_table(&limits),
        seccomp: seccomp::sandbox_filters()?,
        notify_filter: None,
        cap_last: std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(63),
    };

    // Its own network namespace, with the proxy listening inside when it
    // has one; the proxy serves from outside for the service's whole life.
    let with_proxy = matches!(spec.network, ServiceNetwork::EgressProxy(_));
    let (netns, listener) = netpool::fresh_namespace(with_proxy)?;
    let proxy = match (&spec.network, listener) {
        (ServiceNetwork::EgressProxy(m), Some(l)) => Some(EgressProxy::serve(
            l,
            m.clone(),
            Requester {
                pid: None,
                exec_id: Some(spec.id.clone()),
            },
        )?),
        _ => None,
    };

    let flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP;
    let pid = netpool::in_namespace(&netns, || {
        // SAFETY: the child runs only `child::run_jailed`, which makes
        // async-signal-safe raw system calls on the pre-built plan and
        // never returns.
        let pid = unsafe { sys::raw_clone(flags) }.map_err(prep("clone into new namespaces"))?;
        if pid == 0 {
            child::run_jailed(&plan);
        }
        Ok(pid)
    })?;
    let guard = InitGuard { pid, reaped: false };
    // The child's ends, the mounts, the ruleset and the namespace live on
    // in the child only.
    drop((go_r, rep_w, in_r, out_w, err_w, ruleset, netns));
    drop(plan);
    let granted_paths = grants::describe(&granted);
    drop(granted);
    let pidfd = sys::pidfd_open(pid).map_err(prep("pidfd of the service"))?;
    write_id_maps(pid, uid, gid, root)?;
    let mut go = File::from(go_w);
    let mut report = File::from(rep_r);
    write_byte(&mut go)?;
    // End of stream: the report pipe closed on a successful execve.
    match read_record(&mut report)? {
        None => {}
        Some(rec) if rec[0] == tag::SETUP_ERROR => return Err(setup_error(&rec)),
        Some(rec) if rec[0] == tag::EXEC_ERROR => {
            return Err(SandboxError::Spawn {
                program,
                source: std::io::Error::from_raw_os_error(record_value(&rec)),
            })
        }
        Some(_) => {
            return Err(SandboxError::Lost(
                "unexpected report from the service".into(),
            ))
        }
    }
    let mut paths: Vec<String> = sys_dirs
        .iter()
        .map(|d| format!("{} (ro, system)", d.display()))
        .collect();
    paths.extend(granted_paths);
    paths.push(format!(
        "/tmp (private tmpfs, {} MiB)",
        spec.limits.tmp_bytes >> 20
    ));
    paths.push("/proc (own pid namespace)".into());
    paths.extend(DEVICES.iter().map(|d| format!("/dev/{d}")));
    let info = ServiceInfo {
        uid,
        gid,
        namespaces: NAMESPACES.to_vec(),
        landlock_abi: abi,
        paths,
        rlimits: vec![
            ("cpu_seconds", limits.cpu_seconds),
            ("address_space_bytes", limits.address_space_bytes),
            ("file_size_bytes", limits.file_size_bytes),
            ("processes", limits.processes),
            ("open_files", limits.open_files),
            ("core", 0),
        ],
        network: if proxy.is_some() {
            "egress proxy"
        } else {
            "loopback only"
        },
        env_names: env.iter().map(|(k, _)| k.clone()).collect(),
    };
    Ok(Launched {
        guard,
        pidfd,
        io: ServiceIo {
            stdin: in_w,
            stdout: out_r,
            stderr: err_r,
        },
        info,
        proxy,
    })
}
