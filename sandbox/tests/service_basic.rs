//! Long-lived services in the process sandbox (`process::service`): pipes,
//! exit status, kill on drop of the whole tree, the confinement (root,
//! identity, grants, limits, environment) and egress only through the
//! service's own proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "process_support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stele_sandbox::error::SandboxError;
use stele_sandbox::process::service::{
    GrantAccess, HostGrant, ServiceExit, ServiceLimits, ServiceNetwork, ServiceProcess, ServiceSpec,
};
use stele_sandbox::{
    FileCloseReport, FileRequest, Mediator, NetCloseReport, NetRequest, NetVerdict, Ticket, Verdict,
};
use support::facilities_ok;

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

fn start(spec: ServiceSpec) -> (ServiceProcess, std::fs::File, std::fs::File, std::fs::File) {
    let mut svc = ServiceProcess::start(spec).expect("service starts");
    let io = svc.take_io().unwrap();
    (
        svc,
        std::fs::File::from(io.stdin),
        std::fs::File::from(io.stdout),
        std::fs::File::from(io.stderr),
    )
}

fn read_all(mut f: std::fs::File) -> String {
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    s
}

#[test]
fn service_pipes_and_exit_status() {
    if !facilities_ok(false) {
        return;
    }
    let spec = ServiceSpec::new(
        "svc-cat",
        sh("echo started >&2; cat; exit 5"),
        ServiceNetwork::LoopbackOnly,
    );
    let (svc, mut stdin, stdout, stderr) = start(spec);
    assert!(svc.pid() > 1);
    let mut lines = BufReader::new(stdout);
    // A conversation: each line comes back while the service keeps running.
    for msg in ["one", "two", "three"] {
        writeln!(stdin, "{msg}").unwrap();
        let mut got = String::new();
        lines.read_line(&mut got).unwrap();
        assert_eq!(got, format!("{msg}\n"));
        assert_eq!(svc.try_wait(), None, "still running");
    }
    drop(stdin);
    assert_eq!(
        svc.wait_timeout(Duration::from_secs(10)),
        Some(ServiceExit::Exited(5))
    );
    assert_eq!(read_all(stderr), "started\n");
    assert_eq!(svc.stop(), Some(ServiceExit::Exited(5)));
}

/// Host pids of `pid` and all its descendants.
fn tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        for task in std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten()
        {
            let Ok(task) = task else { continue };
            let kids = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            out.extend(
                kids.split_whitespace()
                    .filter_map(|k| k.parse::<u32>().ok()),
            );
        }
        i += 1;
    }
    out
}

/// Gone, or a zombie waiting for its reaper.
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

#[test]
fn service_drop_kills_the_whole_tree() {
    if !facilities_ok(false) {
        return;
    }
    let spec = ServiceSpec::new(
        "svc-tree",
        sh("sleep 300 & (sleep 301 &) ; sleep 302 & echo ready; wait"),
        ServiceNetwork::LoopbackOnly,
    );
    let (svc, _stdin, stdout, _stderr) = start(spec);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let pids = tree(svc.pid());
    // sh, two sleeps it waits for; the orphaned sleep is reparented to the
    // namespace's init (sh) too.
    assert!(pids.len() >= 4, "the service's tree: {pids:?}");
    drop(svc);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pids.iter().all(|p| dead(*p)) {
        assert!(
            Instant::now() < deadline,
            "still alive after drop: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn service_stop_kills_a_service_that_ignores_eof() {
    if !facilities_ok(false) {
        return;
    }
    let spec = ServiceSpec::new(
        "svc-stubborn",
        sh("trap '' TERM HUP; exec sleep 300"),
        ServiceNetwork::LoopbackOnly,
    );
    let (svc, stdin, _stdout, _stderr) = start(spec);
    drop(stdin);
    assert_eq!(svc.wait_timeout(Duration::from_millis(300)), None);
    let t = Instant::now();
    assert_eq!(svc.stop(), Some(ServiceExit::Killed));
    assert!(t.elapsed() < Duration::from_secs(5));
}

fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    // A root-only parent (0700), as tempfile makes it: the grants are bound
    // by stele, so the service reaches them without reaching the parent.
    let d = tempfile::Builder::new()
        .prefix("stele-svc-")
        .tempdir()
        .unwrap();
    let ro = d.path().join("ro");
    let rw = d.path().join("rw");
    let hidden = d.path().join("hidden");
    for p in [&ro, &rw, &hidden] {
        std::fs::create_dir(p).unwrap();
    }
    std::fs::write(ro.join("data.txt"), "read me\n").unwrap();
    std::fs::write(hidden.join("secret.txt"), "not granted\n").unwrap();
    // The service's host uid (UNPRIVILEGED_ID under root) must be able to write here.
    std::fs::set_permissions(&rw, std::fs::Permissions::from_mode(0o777)).unwrap();
    (d, ro, rw, hidden)
}

#[test]
fn service_confinement_grants_and_limits() {
    if !facilities_ok(false) {
        return;
    }
    let (_d, ro, rw, hidden) = dirs();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    std::env::set_var("STELE_TEST_SERVICE_HOST_SECRET", "host-secret-xyz");
    let script = format!(
        r#"
echo "pid=$$ uid=$(id -u) host=$(hostname)"
grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status
cat /etc/shadow >/dev/null 2>&1 && echo shadow=READ || echo shadow=denied
ls {home} >/dev/null 2>&1 && echo home=LISTED || echo home=absent
cat {hidden}/secret.txt >/dev/null 2>&1 && echo hidden=READ || echo hidden=absent
cat {ro}/data.txt
echo x > {ro}/new 2>/dev/null && echo ro_write=DONE || echo ro_write=denied
echo y > {rw}/made.txt && echo rw_write=ok
echo z > /etc/stele-test 2>/dev/null && echo etc_write=DONE || echo etc_write=denied
echo t > /tmp/t && echo tmp_write=ok
(dd if=/dev/zero of={rw}/big bs=1M count=16) 2>/dev/null; echo big_bytes=$(wc -c < {rw}/big)
grep -E '^Max (open files|processes|file size|address space|cpu time)' /proc/self/limits
env
ls /
"#,
        home = home,
        hidden = hidden.display(),
        ro = ro.display(),
        rw = rw.display(),
    );
    let mut spec = ServiceSpec::new("svc-conf", sh(&script), ServiceNetwork::LoopbackOnly);
    spec.env.push(("SERVICE_TOKEN".into(), "tok-123".into()));
    spec.grants = vec![
        HostGrant {
            path: ro.clone(),
            access: GrantAccess::ReadOnly,
        },
        HostGrant {
            path: rw.clone(),
            access: GrantAccess::ReadWrite,
        },
    ];
    spec.limits = ServiceLimits {
        file_size_bytes: 4 << 20,
        open_files: 200,
        processes: 50,
        ..ServiceLimits::default()
    };
    let (svc, _stdin, stdout, stderr) = start(spec);
    let info = svc.info().to_json().to_string();
    let out = read_all(stdout);
    eprintln!("{out}\n{}", read_all(stderr));
    assert!(out.contains("pid=1 uid=0 host=stele-service"), "{out}");
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(
        out.contains("NoNewPrivs:\t1") && out.contains("Seccomp:\t2"),
        "{out}"
    );
    for line in [
        "shadow=denied",
        "home=absent",
        "hidden=absent",
        "read me",
        "ro_write=denied",
        "rw_write=ok",
        "etc_write=denied",
        "tmp_write=ok",
        "big_bytes=4194304",
        "SERVICE_TOKEN=tok-123",
        "HTTPS_PROXY=http://127.0.0.1:3128",
        "HOME=/tmp",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(!out.contains("host-secret-xyz"), "host environment leaked");
    let limit = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .split_whitespace()
            .rev()
            .nth(2)
            .unwrap()
            .to_string()
    };
    assert_eq!(limit("Max open files"), "200");
    assert_eq!(limit("Max processes"), "50");
    assert_eq!(limit("Max file size"), (4u64 << 20).to_string());
    assert_eq!(
        svc.wait_timeout(Duration::from_secs(10)),
        Some(ServiceExit::Exited(0))
    );
    // The write went to the host, owned by the service's unprivileged uid.
    assert_eq!(std::fs::read_to_string(rw.join("made.txt")).unwrap(), "y\n");
    assert!(!ro.join("new").exists());
    assert!(
        info.contains("\"landlock_abi\"") && info.contains("(rw, granted)"),
        "{info}"
    );
    assert!(
        !info.contains("tok-123"),
        "a value in the log description: {info}"
    );
}

/// Allows exactly one destination, records every question.
#[derive(Debug)]
struct OneHost {
    port: u16,
    asked: Mutex<Vec<NetRequest>>,
    closed: Mutex<Vec<NetCloseReport>>,
}

impl Mediator for OneHost {
    fn file_access(&self, _req: &FileRequest) -> Verdict {
        Verdict::Deny("no workspace".into())
    }
    fn file_closed(&self, _report: &FileCloseReport) {}
    fn net_connect(&self, req: &NetRequest) -> NetVerdict {
        self.asked.lock().unwrap().push(req.clone());
        if req.host == "127.0.0.1" && req.port == self.port {
            NetVerdict::Allow {
                ticket: Ticket(7),
                address: std::net::Ipv4Addr::LOCALHOST.into(),
            }
        } else {
            NetVerdict::Deny("not the allowed host".into())
        }
    }
    fn net_closed(&self, report: &NetCloseReport) {
        self.closed.lock().unwrap().push(report.clone());
    }
}

/// A one-answer HTTP server on the host's loopback.
fn http_server() -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        for s in l.incoming().take(1) {
            let mut s = s.unwrap();
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhello-host",
            );
        }
    });
    (port, h)
}

#[test]
fn service_network_only_through_its_proxy() {
    if !facilities_ok(false) || !Path::new("/usr/bin/curl").exists() {
        eprintln!("SKIPPED: needs the sandbox facilities and /usr/bin/curl");
        return;
    }
    let (port, server) = http_server();
    let m = Arc::new(OneHost {
        port,
        asked: Mutex::new(Vec::new()),
        closed: Mutex::new(Vec::new()),
    });
    let script = format!(
        r#"
curl -s --max-time 5 --noproxy '*' http://127.0.0.1:{port}/ && echo direct=REACHED || echo direct=failed
curl -s --max-time 5 -o /dev/null -w 'other=%{{http_connect}}\n' -p -x http://127.0.0.1:3128 https://example.com/
echo; curl -s --max-time 5 -x http://127.0.0.1:3128 http://127.0.0.1:{port}/; echo
"#
    );
    let spec = ServiceSpec::new(
        "svc-net",
        sh(&script),
        ServiceNetwork::EgressProxy(m.clone()),
    );
    let (svc, _stdin, stdout, _stderr) = start(spec);
    let out = read_all(stdout);
    assert_eq!(
        svc.wait_timeout(Duration::from_secs(20)),
        Some(ServiceExit::Exited(0))
    );
    drop(svc);
    server.join().unwrap();
    assert!(out.contains("direct=failed"), "{out}");
    assert!(out.contains("other=403"), "{out}");
    assert!(out.contains("hello-host"), "{out}");
    let asked = m.asked.lock().unwrap().clone();
    let hosts: Vec<(String, u16)> = asked.iter().map(|r| (r.host.clone(), r.port)).collect();
    assert_eq!(
        hosts,
        vec![("example.com".into(), 443), ("127.0.0.1".into(), port)],
        "the direct attempt never reached the proxy"
    );
    assert!(asked
        .iter()
        .all(|r| r.requester.exec_id.as_deref() == Some("svc-net")));
    // The allowed connection was reported closed by the time the handle went.
    assert_eq!(m.closed.lock().unwrap().len(), 1);
}

#[test]
fn service_set_up_failures_are_errors() {
    if !facilities_ok(false) {
        return;
    }
    let missing = ServiceSpec::new(
        "svc-missing",
        vec!["/no/such/program".into()],
        ServiceNetwork::LoopbackOnly,
    );
    match ServiceProcess::start(missing) {
        Err(SandboxError::Spawn { program, .. }) => assert_eq!(program, "/no/such/program"),
        other => panic!("expected a spawn error, got {other:?}"),
    }
    for (path, access, want) in [
        ("/no/such/dir", GrantAccess::ReadOnly, "cannot be resolved"),
        ("/usr/share", GrantAccess::ReadWrite, "system directory"),
        ("/usr", GrantAccess::ReadOnly, "whole system directory"),
        ("/proc/self", GrantAccess::ReadOnly, "/proc"),
        ("/tmp", GrantAccess::ReadWrite, "private tmpfs"),
        ("relative/path", GrantAccess::ReadOnly, "absolute"),
    ] {
        let mut spec = ServiceSpec::new("svc-bad", sh("true"), ServiceNetwork::LoopbackOnly);
        spec.grants.push(HostGrant {
            path: path.into(),
            access,
        });
        match ServiceProcess::start(spec) {
            Err(SandboxError::InvalidRequest(m)) => assert!(m.contains(want), "{path}: {m}"),
            other => panic!("{path}: expected a refusal, got {other:?}"),
        }
    }
}
