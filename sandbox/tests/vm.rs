//! End-to-end tests of the micro-VM backend under whatever accelerator the
//! host offers (TCG on our machines). They need QEMU and the guest image
//! that `scripts/setup-vm` builds; without them they fail, never skip.
//!
//! One VM is booted for the whole binary (booting is the slow part) and
//! each test works in its own folder of the shared workspace.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use stele_sandbox::exec::{ExecRequest, ExitStatus, Sandbox};
use stele_sandbox::resources::{GroupLimits, LimitHit};
use stele_sandbox::vm::protocol::{FsErrorKind, FsKind, Links, Listing, Parents, RemoveWhat};
use stele_sandbox::vm::{GuestFsError, ImageStore, VmSandbox, VmSandboxConfig, WriteOptions};
use stele_sandbox::{
    FileCloseReport, FileRequest, Mediator, NetCloseReport, NetRequest, NetVerdict, Ticket, Verdict,
};

/// Allows everything except workspace paths containing `denied` and
/// hosts other than 127.0.0.1; records every question.
#[derive(Debug, Default)]
struct Recorder {
    files: Mutex<Vec<(FileRequest, bool)>>,
    nets: Mutex<Vec<(NetRequest, bool)>>,
}

impl Mediator for Recorder {
    fn file_access(&self, req: &FileRequest) -> Verdict {
        let allow = !req.path.contains("denied");
        self.files.lock().unwrap().push((req.clone(), allow));
        if allow {
            Verdict::Allow(Ticket(1))
        } else {
            Verdict::Deny("test rule".into())
        }
    }
    fn file_closed(&self, _: &FileCloseReport) {}
    fn net_connect(&self, req: &NetRequest) -> NetVerdict {
        let allow = req.host == "127.0.0.1";
        self.nets.lock().unwrap().push((req.clone(), allow));
        if allow {
            NetVerdict::Allow {
                ticket: Ticket(2),
                address: std::net::Ipv4Addr::LOCALHOST.into(),
            }
        } else {
            NetVerdict::Deny("test rule".into())
        }
    }
    fn net_closed(&self, _: &NetCloseReport) {}
}

struct Vm {
    sandbox: VmSandbox,
    recorder: Arc<Recorder>,
    workspace: PathBuf,
}

/// Where `stele vm image build` put the image (see runtime/src/cli/vm.rs).
fn image_store() -> ImageStore {
    if let Some(p) = std::env::var_os("STELE_VM_IMAGES") {
        return ImageStore::at(PathBuf::from(p));
    }
    let state = if let Some(p) = std::env::var_os("STELE_STATE_DIR") {
        PathBuf::from(p)
    } else if let Some(p) = std::env::var_os("XDG_STATE_HOME") {
        PathBuf::from(p).join("stele")
    } else {
        PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".local/state/stele")
    };
    ImageStore::at(state.join("vm/images"))
}

fn vm() -> &'static Vm {
    static VM: OnceLock<Vm> = OnceLock::new();
    VM.get_or_init(|| {
        let image = image_store()
            .current()
            .expect("the guest image must be built by scripts/setup-vm (stele vm image build)");
        let workspace = std::env::temp_dir().join(format!("stele-vm-test-{}", std::process::id()));
        std::fs::create_dir_all(&workspace).unwrap();
        let recorder = Arc::new(Recorder::default());
        let mut config = VmSandboxConfig::new(
            &workspace,
            recorder.clone(),
            image,
            env!("CARGO_BIN_EXE_stele-guest"),
        );
        // Small enough for the guest's 512 MiB to show them binding.
        config.resources.command = GroupLimits {
            memory_bytes: Some(COMMAND_MEMORY),
            processes: Some(COMMAND_PROCESSES),
            cpu: None,
        };
        let sandbox = VmSandbox::new(config).expect("the VM must boot");
        eprintln!("vm: {:?}", sandbox.info());
        Vm {
            sandbox,
            recorder,
            workspace,
        }
    })
}

/// The guest commands' group limits in this binary's VM.
const COMMAND_MEMORY: u64 = 192 << 20;
const COMMAND_PROCESSES: u64 = 96;

fn sh(script: &str) -> ExecRequest {
    ExecRequest::new("t", vec!["/bin/sh".into(), "-c".into(), script.into()])
}

#[test]
fn exec_runs_in_the_guest_kernel_as_an_unprivileged_user() {
    let vm = vm();
    let out = vm
        .sandbox
        .exec(sh("uname -r; id -u; echo err >&2; exit 3"))
        .unwrap();
    assert_eq!(out.status, ExitStatus::Exit(3));
    let stdout = String::from_utf8_lossy(&out.stdout.bytes);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some(vm.sandbox.info().kernel.as_str()));
    assert_eq!(lines.next(), Some("1000"));
    assert_eq!(out.stderr.bytes, b"err\n");
    // The root file system is read-only to commands.
    let out = vm.sandbox.exec(sh("touch /usr/x")).unwrap();
    assert_ne!(out.status, ExitStatus::Exit(0));
    // A missing program is a spawn error, as in the process backend.
    let err = vm
        .sandbox
        .exec(ExecRequest::new("t", vec!["/no/such/program".into()]))
        .unwrap_err();
    assert!(err.to_string().contains("/no/such/program"), "{err}");
}

#[test]
fn workspace_goes_through_the_mediator() {
    let vm = vm();
    let dir = vm.workspace.join("files");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("in.txt"), "from the host\n").unwrap();
    std::fs::write(dir.join("denied.txt"), "secret\n").unwrap();
    let out = vm
        .sandbox
        .exec(sh("cat files/in.txt && echo from-guest > files/out.txt"))
        .unwrap();
    assert_eq!(out.status, ExitStatus::Exit(0), "{out:?}");
    assert_eq!(out.stdout.bytes, b"from the host\n");
    assert_eq!(
        std::fs::read_to_string(dir.join("out.txt")).unwrap(),
        "from-guest\n"
    );
    let out = vm.sandbox.exec(sh("cat files/denied.txt")).unwrap();
    assert_ne!(out.status, ExitStatus::Exit(0));
    assert!(
        String::from_utf8_lossy(&out.stderr.bytes).contains("Permission denied"),
        "{out:?}"
    );
    let files = vm.recorder.files.lock().unwrap();
    assert!(files
        .iter()
        .any(|(r, allow)| r.path == "files/denied.txt" && !allow));
    assert!(files.iter().any(|(r, allow)| r.path == "files/out.txt"
        && *allow
        && r.access.action() == "file.write"));
}

/// A one-shot HTTP server on the host's loopback.
fn http_server() -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).unwrap();
        s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 8\r\n\r\nvia-host")
            .unwrap();
    });
    (port, t)
}

#[test]
fn network_only_through_the_proxy() {
    let vm = vm();
    let (port, server) = http_server();
    let fetch = |url: &str| {
        sh(&format!(
            "python3 -c 'import urllib.request,sys\ntry:\n print(urllib.request.urlopen(\"{url}\", timeout=20).read().decode())\nexcept Exception as e:\n print(\"ERR\", e)'"
        ))
    };
    let out = vm
        .sandbox
        .exec(fetch(&format!("http://127.0.0.1:{port}/")))
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout.bytes).trim(),
        "via-host",
        "{out:?}"
    );
    server.join().unwrap();
    let out = vm.sandbox.exec(fetch("http://denied.example/")).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout.bytes).contains("403"),
        "{out:?}"
    );
    let nets = vm.recorder.nets.lock().unwrap().clone();
    assert!(nets
        .iter()
        .any(|(r, a)| r.host == "127.0.0.1" && r.port == port && *a));
    assert!(nets.iter().any(|(r, a)| r.host == "denied.example" && !a));
    // Around the proxy there is nothing: the guest has no interface but lo.
    let out = vm
        .sandbox
        .exec(sh(
            "python3 -c 'import socket\ntry:\n socket.create_connection((\"1.1.1.1\", 80), timeout=5); print(\"CONNECTED\")\nexcept OSError as e:\n print(\"ERR\", e)'",
        ))
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout.bytes);
    assert!(text.starts_with("ERR"), "{out:?}");
}

#[test]
fn deadline_kills_the_command() {
    let vm = vm();
    let mut req = sh("sleep 60; echo not-reached");
    req.limits.wall_time = Duration::from_secs(2);
    req.limits.kill_grace = Duration::from_millis(500);
    let started = Instant::now();
    let out = vm.sandbox.exec(req).unwrap();
    assert_eq!(out.status, ExitStatus::TimedOut);
    assert!(out.stdout.bytes.is_empty());
    assert!(started.elapsed() < Duration::from_secs(30));
    // The VM is still usable afterwards.
    let out = vm.sandbox.exec(sh("echo alive")).unwrap();
    assert_eq!(out.stdout.bytes, b"alive\n");
}

#[test]
fn escape_battery_files_and_network() {
    let vm = vm();
    let dir = vm.workspace.join("escape");
    std::fs::create_dir_all(&dir).unwrap();
    // A host secret beside the workspace, and links to it planted by the host.
    let outside = vm.workspace.with_extension("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "OUTSIDE-SECRET").unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), dir.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../../../../../../etc/shadow", dir.join("rel-link")).unwrap();
    let o = vm
        .sandbox
        .exec(sh("cd escape; cat abs-link; cat rel-link; \
                  ln /etc/passwd hard 2>&1 || echo no-hardlink; \
                  touch /run/stele-guest 2>&1 || echo no-agent-write; \
                  touch /run/x /var/x /etc/x 2>&1 || echo no-root-write; \
                  cat /dev/vport* 2>&1 </dev/null || echo no-channel; \
                  kill -9 1 2>&1 || echo no-kill-init; \
                  echo done"))
        .unwrap();
    let s = String::from_utf8_lossy(&o.stdout.bytes);
    assert!(s.contains("done"), "{o:?}");
    assert!(!s.contains("OUTSIDE-SECRET"), "{s}");
    assert!(!s.contains("root:"), "{s}");
    for marker in [
        "no-hardlink",
        "no-agent-write",
        "no-root-write",
        "no-channel",
        "no-kill-init",
    ] {
        assert!(s.contains(marker), "{marker} missing: {s}");
    }
    assert!(!dir.join("hard").exists());
    // Network: no UDP (so no DNS of its own), no raw or vsock sockets, no route out.
    let o = vm
        .sandbox
        .exec(sh("python3 -c '
import socket
for fam, ty in ((socket.AF_INET, socket.SOCK_DGRAM), (socket.AF_INET, socket.SOCK_RAW), (socket.AF_VSOCK, socket.SOCK_STREAM), (socket.AF_PACKET, socket.SOCK_RAW)):
    try:
        socket.socket(fam, ty); print(\"OPENED\", fam, ty)
    except OSError as e:
        print(\"denied\", e.errno)
try:
    socket.create_connection((\"10.0.2.2\", 80), timeout=5); print(\"CONNECTED\")
except OSError as e:
    print(\"unreachable\", e)
'"))
        .unwrap();
    let s = String::from_utf8_lossy(&o.stdout.bytes);
    assert!(!s.contains("OPENED") && !s.contains("CONNECTED"), "{o:?}");
    assert_eq!(s.matches("denied").count(), 4, "{s}");
    // The VM survived all of it.
    let o = vm.sandbox.exec(sh("echo alive")).unwrap();
    assert_eq!(o.stdout.bytes, b"alive\n");
    let _ = std::fs::remove_dir_all(&outside);
}

/// A `/proc/<pid>/status` field of QEMU, split on whitespace.
fn status_field(status: &str, key: &str) -> Vec<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("{key} missing from QEMU's status"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn qemu_runs_jailed_unprivileged_in_a_minimal_root() {
    let vm = vm();
    let pid = vm.sandbox.vmm_pid().expect("QEMU runs");
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let status = std::fs::read_to_string(proc.join("status")).unwrap();
    // SAFETY: geteuid/getegid have no preconditions.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let want_uid = if euid == 0 {
        stele_sandbox::process::UNPRIVILEGED_ID
    } else {
        euid
    };
    for key in ["Uid:", "Gid:"] {
        let ids = status_field(&status, key);
        let want = if key == "Uid:" {
            want_uid
        } else if euid == 0 {
            vm.sandbox.info().jail.gid
        } else {
            egid
        };
        assert_eq!(ids, vec![want.to_string(); 4], "{key} {status}");
    }
    for key in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(
            status_field(&status, key),
            vec!["0000000000000000"],
            "{key}"
        );
    }
    assert_eq!(status_field(&status, "NoNewPrivs:"), vec!["1"]);
    assert_eq!(status_field(&status, "Seccomp:"), vec!["2"]);
    // Groups: none left over from stele (root's groups would open root-group files).
    if euid == 0 {
        assert!(status_field(&status, "Groups:").is_empty(), "{status}");
    }
    // Namespaces of its own.
    for ns in ["mnt", "net", "pid", "user", "ipc", "uts"] {
        let theirs = std::fs::read_link(proc.join("ns").join(ns)).unwrap();
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(theirs, ours, "QEMU shares the {ns} namespace");
    }
    // PID 1 of its own pid namespace.
    assert_eq!(
        status_field(&status, "NSpid:").last().map(String::as_str),
        Some("1")
    );
    // Its root: the system directories, the VM's files, its run
    // directory, a tiny /dev; nothing of the host's homes, secrets or /tmp.
    let root = proc.join("root");
    let mut top: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    for name in &top {
        assert!(
            ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "proc", "dev", "vm", "run"]
                .contains(&name.as_str()),
            "unexpected /{name} in QEMU's root: {top:?}"
        );
    }
    for hidden in ["root", "home", "etc", "etc/shadow", "tmp", "work", "var"] {
        assert!(!root.join(hidden).exists(), "QEMU sees /{hidden}");
    }
    let mut dev: Vec<String> = std::fs::read_dir(root.join("dev"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !["fd", "stdin", "stdout", "stderr"].contains(&n.as_str()))
        .collect();
    dev.sort();
    let kvm = vm.sandbox.info().accel == stele_sandbox::vm::Accel::Kvm;
    let want: Vec<&str> = if kvm {
        vec!["kvm", "null", "urandom"]
    } else {
        vec!["null", "urandom"]
    };
    assert_eq!(dev, want);
    let mut vmfiles: Vec<String> = std::fs::read_dir(root.join("vm"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    vmfiles.sort();
    assert_eq!(vmfiles, ["initrd", "kernel", "rootfs.ext4"]);
    assert!(root.join("run/vm/agent.sock").exists());
    // QEMU's environment is empty (stele's secrets stay outside).
    assert!(std::fs::read(proc.join("environ")).unwrap().is_empty());
    // And the settings are recorded.
    let jail = &vm.sandbox.info().jail;
    assert_eq!(jail.uid, want_uid);
    assert!(jail.namespaces.contains(&"mount") && jail.namespaces.contains(&"net"));
    assert!(jail.landlock_abi >= 1);
}

#[test]
fn stdin_output_cap_and_leftover_processes() {
    let vm = vm();
    // stdin reaches the command; output beyond the cap is counted, not kept.
    let mut req = sh("cat; head -c 300000 /dev/zero; echo tail >&2");
    req.stdin = b"from stdin\n".repeat(10_000);
    req.limits.output_bytes = 1000;
    let out = vm.sandbox.exec(req).unwrap();
    assert_eq!(out.status, ExitStatus::Exit(0), "{out:?}");
    assert_eq!(out.stdout.bytes.len(), 1000);
    assert!(out.stdout.bytes.starts_with(b"from stdin\n"));
    assert_eq!(
        out.stdout.truncation,
        stele_sandbox::exec::Truncation::Truncated {
            total_bytes: 110_000 + 300_000
        }
    );
    assert_eq!(out.stderr.bytes, b"tail\n");
    // A process that left the command's group and holds its stdout open
    // does not keep the command from ending.
    let started = Instant::now();
    let out = vm
        .sandbox
        .exec(sh("setsid sleep 30 & echo started"))
        .unwrap();
    assert_eq!(out.status, ExitStatus::Exit(0), "{out:?}");
    assert_eq!(out.stdout.bytes, b"started\n");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn commands_inherit_the_filters_and_lose_randomisation_only_under_tcg() {
    let vm = vm();
    let out = vm
        .sandbox
        .exec(sh(
            "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; cat /proc/self/personality",
        ))
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout.bytes);
    assert!(s.contains("Seccomp:\t2"), "{s}");
    assert!(s.contains("NoNewPrivs:\t1"), "{s}");
    let persona = u32::from_str_radix(s.lines().last().unwrap().trim(), 16).unwrap();
    let no_aslr = persona & 0x0040000 != 0; // ADDR_NO_RANDOMIZE
    let tcg = vm.sandbox.info().accel == stele_sandbox::vm::Accel::Tcg;
    assert_eq!(no_aslr, tcg, "persona {persona:#x}");
    assert_eq!(vm.sandbox.info().guest_aslr, !tcg);
}

/// The kind of a failed file request's typed error.
fn fs_kind(r: Result<impl std::fmt::Debug, GuestFsError>) -> FsErrorKind {
    match r {
        Ok(v) => panic!("succeeded: {v:?}"),
        Err(GuestFsError::Guest(e)) => e.kind,
        Err(e) => panic!("not a guest error: {e}"),
    }
}

#[test]
fn file_requests_go_through_cap_std_and_the_mediator() {
    let vm = vm();
    let files = vm.sandbox.files();
    let dir = vm.workspace.join("fileops");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("in.txt"), "host data\n").unwrap();
    std::fs::write(dir.join("denied.txt"), "secret\n").unwrap();
    let outside = vm.workspace.with_extension("fs-outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "OUTSIDE-SECRET").unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), dir.join("abs-link")).unwrap();
    let up = format!(
        "../../{}/secret.txt",
        outside.file_name().unwrap().to_string_lossy()
    );
    std::os::unix::fs::symlink(up, dir.join("rel-link")).unwrap();
    std::os::unix::fs::symlink("/etc", dir.join("etc-link")).unwrap();

    // Inside the workspace: read, write, mkdir, stat, list, rename, remove.
    let got = files.read("fileops/in.txt", 5, 100).unwrap();
    assert_eq!((got.data.0.as_slice(), got.size), (&b"data\n"[..], 10));
    files
        .mkdir("fileops/sub/deeper", Parents::Create, 0o750)
        .unwrap();
    let w = files
        .write(
            "fileops/sub/new.txt",
            b"from the agent",
            WriteOptions::default(),
        )
        .unwrap();
    assert_eq!((w.bytes, w.size), (14, 14));
    assert_eq!(
        std::fs::read_to_string(dir.join("sub/new.txt")).unwrap(),
        "from the agent"
    );
    let st = files.stat("fileops/sub/new.txt", Links::Follow).unwrap();
    assert_eq!((st.kind, st.size), (FsKind::File, 14));
    let st = files.stat("fileops/abs-link", Links::NoFollow).unwrap();
    assert_eq!(st.kind, FsKind::Symlink);
    files
        .rename("fileops/sub/new.txt", "fileops/sub/renamed.txt")
        .unwrap();
    assert!(dir.join("sub/renamed.txt").is_file() && !dir.join("sub/new.txt").exists());
    let listing = files.list("fileops", 100).unwrap();
    let names: Vec<(&str, FsKind)> = listing
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e.kind))
        .collect();
    assert_eq!(
        names,
        [
            ("abs-link", FsKind::Symlink),
            ("denied.txt", FsKind::File),
            ("etc-link", FsKind::Symlink),
            ("in.txt", FsKind::File),
            ("rel-link", FsKind::Symlink),
            ("sub", FsKind::Dir),
        ]
    );
    assert_eq!(listing.listing, Listing::Complete);
    files.remove("fileops/sub", RemoveWhat::Tree).unwrap();
    assert!(!dir.join("sub").exists());

    // Out of the workspace: refused by cap-std in the guest, before any
    // access, so the host's Mediator is never asked about them.
    let asked_before = vm.recorder.files.lock().unwrap().len();
    for path in [
        "../etc/passwd",
        "fileops/../../etc/passwd",
        "/etc/passwd",
        "fileops/abs-link",
        "fileops/rel-link",
        "fileops/etc-link/passwd",
    ] {
        assert_eq!(
            fs_kind(files.read(path, 0, 100)),
            FsErrorKind::Escape,
            "read {path}"
        );
        assert_eq!(
            fs_kind(files.write(path, b"x", WriteOptions::default())),
            FsErrorKind::Escape,
            "write {path}"
        );
    }
    assert_eq!(fs_kind(files.list("..", 10)), FsErrorKind::Escape);
    assert_eq!(fs_kind(files.list("/", 10)), FsErrorKind::Escape);
    assert_eq!(
        fs_kind(files.stat("fileops/rel-link", Links::Follow)),
        FsErrorKind::Escape
    );
    assert_eq!(
        fs_kind(files.mkdir("../made", Parents::No, 0o755)),
        FsErrorKind::Escape
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("secret.txt")).unwrap(),
        "OUTSIDE-SECRET"
    );
    {
        let files_asked = vm.recorder.files.lock().unwrap();
        let after: Vec<&str> = files_asked[asked_before..]
            .iter()
            .map(|(r, _)| r.path.as_str())
            .collect();
        assert!(
            after
                .iter()
                .all(|p| !p.contains("passwd") && !p.contains("secret") && !p.contains("made")),
            "{after:?}"
        );
    }

    // Inside but denied by the Mediator: fails in the guest, logged on the host.
    let e = match files.read("fileops/denied.txt", 0, 100) {
        Err(GuestFsError::Guest(e)) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(e.kind, FsErrorKind::PermissionDenied, "{e}");
    assert_eq!(e.errno, Some(libc::EACCES));
    assert_eq!(
        fs_kind(files.write("fileops/denied-new.txt", b"x", WriteOptions::default())),
        FsErrorKind::PermissionDenied
    );
    assert!(!dir.join("denied-new.txt").exists());
    let asked = vm.recorder.files.lock().unwrap();
    assert!(asked
        .iter()
        .any(|(r, allow)| r.path == "fileops/denied.txt" && !allow));
    assert!(asked
        .iter()
        .any(|(r, allow)| r.path == "fileops/denied-new.txt" && !allow));
    // And the allowed accesses were decided (and logged) there too.
    assert!(asked
        .iter()
        .any(|(r, allow)| r.path == "fileops/sub/new.txt"
            && *allow
            && r.access.action() == "file.write"));
    assert!(asked
        .iter()
        .any(|(r, allow)| r.path == "fileops/in.txt" && *allow));
    drop(asked);
    let _ = std::fs::remove_dir_all(&outside);
}

/// A guest file of the shared workspace, as the host sees it.
fn host_file(vm: &Vm, rel: &str) -> PathBuf {
    vm.workspace.join(rel)
}

#[test]
fn no_guest_process_outlives_its_command() {
    let vm = vm();
    let dir = vm.workspace.join("outlive");
    std::fs::create_dir_all(&dir).unwrap();
    // Escapes from the command's process group and session: a new
    // session, a double fork, nohup; each writes a second later.
    let out = vm
        .sandbox
        .exec(sh("cd outlive; \
                  (setsid sh -c 'sleep 1; echo late > late-setsid' &) ; \
                  (sh -c 'sleep 1; echo late > late-double' &) & \
                  nohup sh -c 'sleep 1; echo late > late-nohup' >/dev/null 2>&1 & \
                  echo started"))
        .unwrap();
    assert_eq!(out.stdout.bytes, b"started\n", "{out:?}");
    let g = out
        .usage
        .group
        .expect("the guest reports the command's group");
    assert!(g.processes_peak.is_none_or(|p| p >= 4), "{g:?}");
    // The next command runs while the escapees would be writing.
    let next = vm.sandbox.exec(sh("sleep 2; echo next")).unwrap();
    assert_eq!(next.stdout.bytes, b"next\n");
    for f in ["late-setsid", "late-double", "late-nohup"] {
        assert!(
            !host_file(vm, &format!("outlive/{f}")).exists(),
            "{f} was written after its command had ended"
        );
    }
    let asked: Vec<String> = vm
        .recorder
        .files
        .lock()
        .unwrap()
        .iter()
        .map(|(r, _)| r.path.clone())
        .filter(|p| p.contains("late-"))
        .collect();
    assert!(
        asked.is_empty(),
        "leftover processes reached the host: {asked:?}"
    );
}

#[test]
fn a_timed_out_guest_command_is_ended_as_a_whole() {
    let vm = vm();
    let dir = vm.workspace.join("ticks");
    std::fs::create_dir_all(&dir).unwrap();
    let mut req = sh("cd ticks; trap '' TERM; \
                      setsid sh -c \"trap '' TERM; while :; do echo x >> tick; sleep 0.2; done\" & \
                      while :; do sleep 0.2; done");
    req.limits.wall_time = Duration::from_secs(3);
    req.limits.kill_grace = Duration::from_millis(500);
    let out = vm.sandbox.exec(req).unwrap();
    assert_eq!(out.status, ExitStatus::TimedOut);
    let tick = host_file(vm, "ticks/tick");
    let size = std::fs::metadata(&tick).map(|m| m.len()).unwrap_or(0);
    assert!(size > 0, "the ticker never ran");
    std::thread::sleep(Duration::from_secs(2));
    let later = std::fs::metadata(&tick).map(|m| m.len()).unwrap_or(0);
    assert_eq!(
        size, later,
        "a process of the timed-out command kept writing"
    );
}

#[test]
fn guest_commands_are_limited_as_a_whole_tree() {
    let vm = vm();
    // Three processes of 80 MiB under a 192 MiB command limit.
    let out = vm
        .sandbox
        .exec(sh("for i in 1 2 3; do python3 -c 'import time; x = b\"x\" * (80 << 20); time.sleep(2)' & done; wait; echo done"))
        .unwrap();
    let g = out.usage.group.expect("group figures");
    assert!(g.oom_kills >= 1, "{g:?} {out:?}");
    assert!(g.limits_hit().contains(&LimitHit::Memory), "{g:?}");
    assert!(g.memory_peak_bytes.unwrap() <= COMMAND_MEMORY, "{g:?}");
    assert_eq!(g.limits.unwrap().memory_bytes, Some(COMMAND_MEMORY));
    // A fork bomb stops at the group's limit (the per-user rlimit is 256).
    let bomb = "import os, time\nn = 0\ntry:\n    while n < 400:\n        if os.fork() == 0:\n            time.sleep(20)\n            os._exit(0)\n        n += 1\nexcept OSError as e:\n    print('refused', e.errno)\nprint(n)";
    let out = vm
        .sandbox
        .exec(ExecRequest::new(
            "bomb",
            vec!["python3".into(), "-c".into(), bomb.into()],
        ))
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout.bytes).into_owned();
    assert!(text.contains("refused 11"), "{out:?}");
    let forked: u64 = text.lines().last().unwrap().trim().parse().unwrap();
    assert!(forked < COMMAND_PROCESSES, "{forked} forks");
    let g = out.usage.group.unwrap();
    assert!(g.process_limit_events >= 1, "{g:?}");
    // The whole VM is accounted to the session's host cgroup.
    let s = out.usage.session.expect("the session's host group");
    assert!(s.memory_peak_bytes.unwrap() > 100 << 20, "{s:?}");
    assert!(
        s.cpu_user + s.cpu_system > Duration::from_millis(100),
        "{s:?}"
    );
}

#[test]
fn qemu_runs_in_the_sessions_cgroup() {
    let vm = vm();
    let pid = vm.sandbox.vmm_pid().expect("QEMU runs");
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let dir = vm.sandbox.session_cgroup().expect("a session cgroup");
    let rel = dir
        .to_string_lossy()
        .split("stele.slice/")
        .nth(1)
        .unwrap()
        .to_string();
    let v2 = cg.lines().find(|l| l.starts_with("0::")).unwrap();
    assert!(v2.contains(&format!("stele.slice/{rel}/")), "{cg}");
    let j = vm.sandbox.resources_json();
    assert!(j["cgroups"].is_string(), "{j}");
}
