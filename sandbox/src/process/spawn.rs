//! Running one command: prepare, clone, hand-shake, wait, collect.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::capture::{self, Io};
use super::plan::{tag, ChildFds, MountFds, Plan, RECORD_LEN};
use super::rootfs::{self, RootSpec, SystemSource, WorkspaceSource, DEVICES};
use super::sys;
use super::sys::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};
use super::SystemRoot;
use super::{child, landlock, ProcessSandbox};
use crate::error::{SandboxError, SetupStep};
use crate::exec::{
    ExecOutcome, ExecRequest, ExitStatus, ResourceUsage, PROXY_ENV, PROXY_URL, WORKSPACE_MOUNT,
};
use crate::Requester;

pub(crate) use super::rlimits::{rlimit_table, rlimits, RlimitSet};

const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

pub(crate) fn cstring(s: &str, what: &str) -> Result<CString, SandboxError> {
    CString::new(s).map_err(|_| SandboxError::InvalidRequest(format!("{what} contains a NUL byte")))
}

/// `/workspace/<cwd>` after checking `cwd` stays inside the workspace.
pub(crate) fn sandbox_cwd(rel: &str) -> Result<String, SandboxError> {
    let mut out = String::from(WORKSPACE_MOUNT);
    if rel.starts_with('/') {
        return Err(SandboxError::InvalidRequest(
            "cwd must be relative to the workspace".into(),
        ));
    }
    for part in rel.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            return Err(SandboxError::InvalidRequest(
                "cwd may not contain `..`".into(),
            ));
        }
        out.push('/');
        out.push_str(part);
    }
    Ok(out)
}

/// The scrubbed environment: defaults, the request's variables, the proxy.
pub(crate) fn environment(
    req: &ExecRequest,
    cwd: &str,
) -> Result<Vec<(String, String)>, SandboxError> {
    scrubbed_env(&req.env, cwd)
}

/// The scrubbed environment of any sandboxed program: defaults, `extra`
/// (which may replace a default but never the proxy variables), the proxy.
pub(crate) fn scrubbed_env(
    extra: &[(String, String)],
    cwd: &str,
) -> Result<Vec<(String, String)>, SandboxError> {
    let mut env: Vec<(String, String)> = [
        ("PATH", DEFAULT_PATH),
        ("HOME", "/tmp"),
        ("TMPDIR", "/tmp"),
        ("LANG", "C.UTF-8"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.push(("PWD".into(), cwd.to_string()));
    for (k, v) in extra {
        if k.is_empty() || k.contains('=') {
            return Err(SandboxError::InvalidRequest(format!(
                "bad environment variable name {k:?}"
            )));
        }
        if PROXY_ENV.contains(&k.as_str()) {
            return Err(SandboxError::InvalidRequest(format!(
                "{k} is set by the sandbox and cannot be overridden"
            )));
        }
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    for k in PROXY_ENV {
        env.push((k.to_string(), PROXY_URL.to_string()));
    }
    Ok(env)
}

/// Candidate paths for argv\[0\] (PATH search done here, not after fork).
pub(crate) fn programs(
    argv0: &str,
    env: &[(String, String)],
) -> Result<Vec<CString>, SandboxError> {
    if argv0.is_empty() {
        return Err(SandboxError::InvalidRequest("empty program name".into()));
    }
    if argv0.contains('/') {
        return Ok(vec![cstring(argv0, "program")?]);
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| cstring(&format!("{}/{argv0}", d.trim_end_matches('/')), "PATH"))
        .collect()
}

/// Kills and reaps the sandbox init if we leave early.
pub(crate) struct InitGuard {
    pub(crate) pid: libc::pid_t,
    pub(crate) reaped: bool,
}

impl Drop for InitGuard {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: pid is our unreaped child; killing and reaping it is
            // the only way to leave nothing behind.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                let mut st = 0;
                libc::waitpid(self.pid, &mut st, libc::__WALL);
            }
        }
    }
}

pub(crate) fn write_byte(f: &mut File) -> Result<(), SandboxError> {
    f.write_all(b"G").map_err(|e| SandboxError::Setup {
        step: SetupStep::Handshake,
        source: e,
    })
}

/// Read one report record; `None` at end of stream.
pub(crate) fn read_record(f: &mut File) -> Result<Option<[u8; RECORD_LEN]>, SandboxError> {
    let mut rec = [0u8; RECORD_LEN];
    let mut got = 0;
    while got < RECORD_LEN {
        match f.read(&mut rec[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(SandboxError::Lost("truncated report record".into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(SandboxError::Lost(format!("report pipe: {e}"))),
        }
    }
    Ok(Some(rec))
}

pub(crate) fn record_value(rec: &[u8; RECORD_LEN]) -> i32 {
    i32::from_le_bytes([rec[2], rec[3], rec[4], rec[5]])
}

pub(crate) fn setup_error(rec: &[u8; RECORD_LEN]) -> SandboxError {
    SandboxError::Setup {
        step: SetupStep::from_code(rec[1]).unwrap_or(SetupStep::Handshake),
        source: std::io::Error::from_raw_os_error(record_value(rec)),
    }
}

/// Map uid and gid 0 of the child's new user namespace to the host's
/// `uid` and `gid` (the only ids it has).
pub(crate) fn write_id_maps(
    pid: libc::pid_t,
    uid: u32,
    gid: u32,
    root: bool,
) -> Result<(), SandboxError> {
    let w = |file: &str, data: String| {
        std::fs::write(format!("/proc/{pid}/{file}"), data).map_err(|e| SandboxError::Prepare {
            what: "user namespace id maps",
            source: e,
        })
    };
    if !root {
        // Without CAP_SETGID outside, the kernel requires setgroups to be off.
        w("setgroups", "deny".into())?;
    }
    w("uid_map", format!("0 {uid} 1\n"))?;
    w("gid_map", format!("0 {gid} 1\n"))
}

fn tv(t: libc::timeval) -> Duration {
    Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
        + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
}

/// Run one command in the sandbox.
pub(crate) fn run(sb: &ProcessSandbox, req: ExecRequest) -> Result<ExecOutcome, SandboxError> {
    let started = Instant::now();
    if req.argv.is_empty() {
        return Err(SandboxError::InvalidRequest("empty argv".into()));
    }
    let cwd = sandbox_cwd(&req.cwd)?;
    let env = environment(&req, &cwd)?;
    let programs = programs(&req.argv[0], &env)?;
    let argv = req
        .argv
        .iter()
        .map(|a| cstring(a, "argument"))
        .collect::<Result<Vec<_>, _>>()?;
    let envs = env
        .iter()
        .map(|(k, v)| cstring(&format!("{k}={v}"), "environment"))
        .collect::<Result<Vec<_>, _>>()?;
    let requester = Requester {
        pid: None,
        exec_id: Some(req.id.clone()),
    };
    let root = sys::geteuid() == 0;

    // The workspace: a detached copy of the sandbox's mediated mount (whose
    // server is already running). The parent never touches it (a stat would
    // wait on the server); the child attaches it and adds its Landlock rule
    // from inside.
    let ws_mount: Option<OwnedFd> = sb
        .shared_workspace
        .as_ref()
        .map(|w| w.mount_for_command())
        .transpose()?;

    let base = sb.config.root.base();
    let system_dirs: Vec<std::path::PathBuf> = sb
        .entries
        .iter()
        .filter_map(|e| match e {
            rootfs::SystemEntry::Dir(n) => Some(base.join(n)),
            rootfs::SystemEntry::Symlink(..) => None,
        })
        .collect();
    // The image's directories: detached read-only binds made here (the
    // child, unprivileged, may not be able to reach the image store).
    let image_mounts: Vec<(String, OwnedFd)> = match &sb.config.root {
        SystemRoot::Image(_) => sb
            .entries
            .iter()
            .filter_map(|e| match e {
                rootfs::SystemEntry::Dir(n) => Some(n),
                rootfs::SystemEntry::Symlink(..) => None,
            })
            .map(|n| {
                sys::detached_bind(
                    &base.join(n),
                    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                )
                .map(|fd| (n.clone(), fd))
                .map_err(|e| SandboxError::Prepare {
                    what: "image system directory",
                    source: e,
                })
            })
            .collect::<Result<_, _>>()?,
        SystemRoot::Host => Vec::new(),
    };
    let image_fds: Vec<(String, RawFd)> = image_mounts
        .iter()
        .map(|(n, fd)| (n.clone(), fd.as_raw_fd()))
        .collect();
    let system_refs: Vec<&std::path::Path> = system_dirs.iter().map(|p| p.as_path()).collect();
    let devices: Vec<std::path::PathBuf> = DEVICES
        .iter()
        .map(|d| std::path::Path::new("/dev").join(d))
        .collect();
    let device_refs: Vec<&std::path::Path> = devices.iter().map(|p| p.as_path()).collect();
    let ll = landlock::prepare(sb.report.landlock_abi, &system_refs, &device_refs)?;

    let (before, after) = rootfs::build(&RootSpec {
        newroot: &sb.newroot,
        entries: &sb.entries,
        source: match &sb.config.root {
            SystemRoot::Image(img) => SystemSource::Image {
                tree: &img.tree,
                mounts: &image_fds,
            },
            SystemRoot::Host => SystemSource::Host,
        },
        tmp_bytes: req.limits.tmp_bytes,
        workspace: match &ws_mount {
            Some(fd) => WorkspaceSource::Mount(fd.as_raw_fd()),
            None => WorkspaceSource::Bind(&sb.workspace),
        },
    })?;

    let pipe = |what| sys::pipe().map_err(|e| SandboxError::Prepare { what, source: e });
    let (go_r, go_w) = pipe("handshake pipe")?;
    let (rep_r, rep_w) = pipe("report pipe")?;
    let (in_r, in_w) = pipe("stdin pipe")?;
    let (out_r, out_w) = pipe("stdout pipe")?;
    let (err_r, err_w) = pipe("stderr pipe")?;
    let (notify_r, notify_w) =
        super::netnotify::socketpair().map_err(|e| SandboxError::Prepare {
            what: "seccomp listener socket",
            source: e,
        })?;

    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = envs.iter().map(|c| c.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    let put_old = sb.newroot.join(".oldroot");
    let plan = Plan {
        newroot: cstring(&sb.newroot.to_string_lossy(), "root")?,
        put_old: cstring(&put_old.to_string_lossy(), "root")?,
        before_pivot: before,
        after_pivot: after,
        rules: ll.child_rules,
        clear_groups: root,
        hostname: cstring("stele-sandbox", "hostname")?,
        fds: ChildFds {
            go: go_r.as_raw_fd(),
            report: rep_w.as_raw_fd(),
            stdin: in_r.as_raw_fd(),
            stdout: out_w.as_raw_fd(),
            stderr: err_w.as_raw_fd(),
            mounts: MountFds::of(
                &ws_mount
                    .iter()
                    .map(|fd| fd.as_raw_fd())
                    .chain(image_fds.iter().map(|(_, fd)| *fd))
                    .collect::<Vec<_>>(),
            )?,
            ruleset: ll.fd.as_raw_fd(),
            notify: notify_w.as_raw_fd(),
        },
        _argv: argv,
        argv_ptrs,
        _env: envs,
        env_ptrs,
        programs,
        cwd: cstring(&cwd, "cwd")?,
        rlimits: rlimits(&req),
        seccomp: sb.seccomp.clone(),
        notify_filter: Some(sb.notify_filter.clone()),
        cap_last: sb.cap_last,
    };

    // No CLONE_NEWNET: the child inherits the leased, prepared network
    // namespace the spawning thread joins just around the clone.
    let flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS;
    // The command's cgroup: its init is cloned into it, so every process
    // of the command is in it from its first instruction.
    let leaf = sb
        .cgroups
        .as_ref()
        .map(|s| s.command_leaf())
        .transpose()
        .map_err(|e| SandboxError::Prepare {
            what: "the command's cgroup",
            source: e,
        })?;
    let mut lease = sb.netns.lease()?;
    let pid = lease.enter(|| {
        let clone_err = |e| SandboxError::Prepare {
            what: "clone into new namespaces",
            source: e,
        };
        let pid = match &leaf {
            Some(leaf) => {
                let _in_leaf = leaf.enter_thread().map_err(|e| SandboxError::Prepare {
                    what: "the command's v1 cgroups",
                    source: e,
                })?;
                // SAFETY: the child runs only `child::run_init`, which is
                // async-signal-safe and never returns (so the guard
                // moving this thread back is dropped in the parent only).
                let pid =
                    unsafe { sys::raw_clone_into(flags, leaf.clone_fd()) }.map_err(clone_err)?;
                if pid == 0 {
                    child::run_init(&plan);
                }
                pid
            }
            None => {
                // SAFETY: as above.
                let pid = unsafe { sys::raw_clone(flags) }.map_err(clone_err)?;
                if pid == 0 {
                    child::run_init(&plan);
                }
                pid
            }
        };
        Ok(pid)
    })?;
    let mut guard = InitGuard { pid, reaped: false };
    // The child's ends and the mount/ruleset live on in the child only.
    drop((go_r, rep_w, in_r, out_w, err_w, ws_mount, ll.fd, notify_w));
    let plan_notify = plan.notify_filter.is_some();
    drop(plan);

    let pidfd = sys::pidfd_open(pid).map_err(|e| SandboxError::Prepare {
        what: "pidfd of the sandbox",
        source: e,
    })?;
    write_id_maps(pid, sb.host_id, sb.host_id, root)?;
    // From here on, workspace requests from the command's pid namespace are
    // the command's.
    let registration = sb
        .shared_workspace
        .as_ref()
        .map(|w| w.register(pid, &req.id))
        .transpose()?;
    // On the file server's CPU (`CpuPlacement`): set on init while it waits
    // for `go`, so the command it forks inherits it. Only a placement: a
    // command that cannot be placed still runs correctly anywhere.
    if let Some(cpu) = sb.shared_workspace.as_ref().and_then(|w| w.cpu()) {
        let _ = crate::fs::pin_task(pid, cpu);
    }
    let mut go = File::from(go_w);
    let mut report = File::from(rep_r);
    write_byte(&mut go)?;
    match read_record(&mut report)? {
        Some(rec) if rec[0] == tag::READY => {}
        Some(rec) if rec[0] == tag::SETUP_ERROR => return Err(setup_error(&rec)),
        Some(_) => return Err(SandboxError::Lost("unexpected report".into())),
        None => return Err(SandboxError::Lost("sandbox init died during set-up".into())),
    }
    // Sent before READY: there now (or never, if the init failed first).
    let listener = if plan_notify {
        super::netnotify::receive(&notify_r)
    } else {
        None
    };
    drop(notify_r);
    lease.begin(requester);
    write_byte(&mut go)?;
    let streams = capture::run(Io {
        pid,
        pidfd: &pidfd,
        stdin: in_w,
        stdin_data: &req.stdin,
        stdout: out_r,
        stderr: err_r,
        cap: req.limits.output_bytes,
        deadline: started + req.limits.wall_time,
        grace: req.limits.kill_grace,
        group_kill: leaf.as_ref().map(|l| l.killer()),
        net: listener.map(|l| {
            super::netnotify::NetNotify::new(l, Some(sb.config.mediator.clone()), &req.id)
        }),
    });
    let timed_out = streams.timed_out;
    let mut status = 0;
    // SAFETY: rusage is plain old data; zeroed is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child into locals.
    let rc = unsafe { libc::wait4(pid, &mut status, libc::__WALL, &mut ru) };
    if rc == pid {
        guard.reaped = true;
    }
    let mut cmd_status = None;
    let mut failure = None;
    while let Some(rec) = read_record(&mut report)? {
        match rec[0] {
            tag::STATUS => cmd_status = Some(record_value(&rec)),
            tag::EXEC_ERROR => {
                failure = Some(SandboxError::Spawn {
                    program: req.argv[0].clone(),
                    source: std::io::Error::from_raw_os_error(record_value(&rec)),
                })
            }
            tag::SETUP_ERROR => failure = Some(setup_error(&rec)),
            _ => {}
        }
    }
    // The init is reaped, so every process of its namespace is gone; the
    // leaf is empty (`finish` kills and waits should anything remain).
    let group = leaf.map(|l| l.finish());
    let session = sb.cgroups.as_ref().map(|s| s.usage());
    // Every process of the command is gone: close what it left open.
    if let (Some(w), Some(r)) = (sb.shared_workspace.as_ref(), registration) {
        w.settle(r);
    }
    lease.finish()?;
    if let Some(f) = failure.filter(|_| !timed_out) {
        return Err(f);
    }
    let status = if timed_out {
        ExitStatus::TimedOut
    } else {
        match cmd_status {
            Some(st) if libc::WIFEXITED(st) => ExitStatus::Exit(libc::WEXITSTATUS(st)),
            Some(st) if libc::WIFSIGNALED(st) => ExitStatus::Signal(libc::WTERMSIG(st)),
            // The OOM killer may pick the init itself (it is in the
            // command's group): the whole command was killed for memory.
            None if libc::WIFSIGNALED(status)
                && libc::WTERMSIG(status) == libc::SIGKILL
                && group.is_some_and(|g| g.oom_kills > 0) =>
            {
                ExitStatus::Signal(libc::SIGKILL)
            }
            _ => {
                return Err(SandboxError::Lost(format!(
                    "sandbox init ended without a command status (wait status {status:#x})"
                )))
            }
        }
    };
    Ok(ExecOutcome {
        id: req.id,
        status,
        stdout: streams.stdout,
        stderr: streams.stderr,
        usage: ResourceUsage {
            user_cpu: tv(ru.ru_utime),
            system_cpu: tv(ru.ru_stime),
            max_rss_bytes: u64::try_from(ru.ru_maxrss).unwrap_or(0) * 1024,
            group,
            session,
        },
        duration: started.elapsed(),
        network_refusals: streams.network_refusals,
    })
}
