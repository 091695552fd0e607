//! Security battery, part 1: the host stays out of reach (secrets, home,
//! other processes, kernel interfaces, network). Every attempt must fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "process_support/mod.rs"]
mod support;

use std::path::Path;

use stele_sandbox::exec::ExitStatus;
use support::*;

fn python_ok() -> bool {
    if Path::new("/usr/bin/python3").exists() {
        true
    } else {
        eprintln!("SKIPPED: needs /usr/bin/python3");
        false
    }
}

fn py(sb: &stele_sandbox::process::ProcessSandbox, code: &str) -> stele_sandbox::exec::ExecOutcome {
    let mut req = stele_sandbox::exec::ExecRequest::new(
        "py",
        vec!["/usr/bin/python3".into(), "-c".into(), code.into()],
    );
    req.limits = test_limits();
    stele_sandbox::exec::Sandbox::exec(sb, req).unwrap()
}

#[test]
fn etc_shadow_is_unreadable() {
    if !facilities_ok(false) {
        return;
    }
    let host = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
    let ws = workspace();
    let sb = plain(ws.path(), Recorder::new(Rule::AllowFiles));
    for f in ["/etc/shadow", "/etc/gshadow"] {
        let o = sh(&sb, &format!("cat {f}"));
        assert_ne!(
            o.status,
            ExitStatus::Exit(0),
            "{f} was readable: {}",
            out(&o)
        );
        assert!(!out(&o).contains("root:"), "{f} content leaked");
    }
    // Not even through another path to the same inode.
    let o = sh(&sb, "cat /etc/../etc/shadow /proc/self/root/etc/shadow");
    assert_ne!(o.status, ExitStatus::Exit(0));
    if !host.is_empty() {
        assert!(!out(&o).contains(host.lines().next().unwrap_or("root:")));
    }
}

#[test]
fn home_and_host_dirs_are_absent() {
    if !facilities_ok(false) {
        return;
    }
    let ws = workspace();
    let sb = plain(ws.path(), Recorder::new(Rule::AllowFiles));
    let o = sh(
        &sb,
        "for d in /root /home /run /var /mnt /srv /opt /boot /sys; do ls -d $d 2>/dev/null && echo VISIBLE $d; done; ls /tmp | wc -l",
    );
    let s = out(&o);
    assert!(!s.contains("VISIBLE"), "host dirs visible: {s}");
    assert_eq!(s.lines().last(), Some("0"), "host /tmp leaked: {s}");
}

#[test]
fn proc_1_environ_and_other_processes() {
    if !facilities_ok(false) {
        return;
    }
    std::env::set_var("STELE_TEST_SECRET_ENV", "s3cr3t-in-host-env");
    let mut host_child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let host_pid = host_child.id();
    let ws = workspace();
    let sb = plain(ws.path(), Recorder::new(Rule::AllowFiles));
    let o = sh(
        &sb,
        &format!(
            "cat /proc/1/environ; echo; ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' '; echo; \
             ls /proc/{host_pid} 2>&1 | head -1; kill -0 {host_pid} && echo KILLABLE; \
             cat /proc/1/mem 2>&1 | head -c 10; ls -l /proc/1/root/ 2>&1 | head -2"
        ),
    );
    let _ = host_child.kill();
    let _ = host_child.wait();
    let s = out(&o);
    let e = err(&o);
    assert!(
        !s.contains("s3cr3t-in-host-env"),
        "stele's environment leaked: {s}"
    );
    assert!(!s.contains("KILLABLE"), "host process reachable: {s}");
    let pids: Vec<u32> = s
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert!(
        !pids.is_empty() && pids.iter().all(|p| *p < 50),
        "pids: {pids:?}"
    );
    assert!(!pids.contains(&host_pid) || host_pid < 50);
    assert!(
        e.contains("Permission denied") || e.contains("Operation not permitted"),
        "{e}"
    );
}

#[test]
fn writes_outside_workspace_fail() {
    if !facilities_ok(false) {
        return;
    }
    let ws = workspace();
    let sb = plain(ws.path(), Recorder::new(Rule::AllowFiles));
    let o = sh(
        &sb,
        "for f in /x /etc/x /usr/x /bin/x /dev/x /proc/x /etc/passwd; do \
           (echo pwned > $f) 2>/dev/null && echo WROTE $f; done; \
         echo ok > /tmp/private && cat /tmp/private",
    );
    let s = out(&o);
    assert!(!s.contains("WROTE"), "{s}");
    assert!(s.contains("ok"), "private /tmp must work: {s}");
    assert!(!Path::new("/tmp/private").exists());
    assert!(!std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .contains("pwned"));
}

#[test]
fn mount_ptrace_unshare_keyring_are_denied() {
    if !facilities_ok(false) || !python_ok() {
        return;
    }
    let ws = workspace();
    let sb = plain(ws.path(), Recorder::new(Rule::AllowFiles));
    let o = py(
        &sb,
        r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def res(name, r):
    print(name, r, ctypes.get_errno())
res("mount", libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
res("umount", libc.umount2(b"/proc", 2))
res("ptrace", libc.ptrace(0, 0, None, None))
res("ptrace_attach", libc.ptrace(16, 1, None, None))
res("unshare_user", libc.unshare(0x10000000))
res("unshare_net", libc.unshare(0x40000000))
res("add_key", libc.syscall(248, b"user", b"k", b"v", 1, ctypes.c_int(-2)))
res("keyctl", libc.syscall(250, 0, ctypes.c_int(-2), 0))
res("bpf", libc.syscall(321, 0, None, 0))
res("io_uring", libc.syscall(425, 1, None))
res("perf", libc.syscall(298, None, 0, -1, -1, 0))
res("setns", libc.setns(0, 0))
res("chroot", libc.chroot(b"/tmp"))
res("userfaultfd", libc.syscall(323, 0))
"#,
    );
    let s = out(&o);
    assert_eq!(o.status, ExitStatus::Exit(0), "{}", err(&o));
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines.len(), 14, "{s}");
    for l in lines {
        let parts: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(parts[1], "-1", "{l} succeeded");
        assert!(
            parts[2] == "1" || parts[2] == "13",
            "{l}: expected EPERM/EACCES"
        );
    }
    // A nested unshare via the util-linux tool fails too.
    let o = sh(&sb, "unshare -U -r true");
    assert_ne!(o.status, ExitStatus::Exit(0));
}

#[test]
fn setuid_binaries_do_not_elevate() {
    if !facilities_ok(false) {
        return;
    }
    let ws = workspace();
    let sb = plain(ws.path(), Recorder::new(Rule::AllowFiles));
    let o = sh(
        &sb,
        "grep -E ' /usr ' /proc/self/mountinfo; \
         su nobody -s /bin/sh -c 'echo BECAME-NOBODY'; echo su=$?; \
         grep NoNewPrivs /proc/self/status",
    );
    let s = out(&o);
    assert!(s.contains("nosuid"), "{s}");
    assert!(!s.contains("BECAME-NOBODY"), "{s}");
    assert!(!s.contains("su=0"), "{s}");
    assert!(s.contains("NoNewPrivs:\t1"), "{s}");
}

#[test]
fn raw_udp_and_netlink_sockets_are_denied() {
    if !facilities_ok(false) || !python_ok() {
        return;
    }
    let ws = workspace();
    let sb = plain(ws.path(), Recorder::new(Rule::AllowFiles));
    let o = py(
        &sb,
        r#"
import socket
tries = [
  ("raw", socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
  ("udp", socket.AF_INET, socket.SOCK_DGRAM, 0),
  ("udp6", socket.AF_INET6, socket.SOCK_DGRAM, 0),
  ("packet", socket.AF_PACKET, socket.SOCK_RAW, 0),
  ("netlink", socket.AF_NETLINK, socket.SOCK_RAW, 0),
  ("seqpacket_inet", socket.AF_INET, socket.SOCK_SEQPACKET, 0),
]
for name, fam, ty, proto in tries:
    try:
        socket.socket(fam, ty, proto)
        print(name, "ALLOWED")
    except OSError as e:
        print(name, "denied", e.errno)
socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
socket.socket(socket.AF_INET, socket.SOCK_STREAM)
print("stream-ok")
"#,
    );
    let s = out(&o);
    assert!(!s.contains("ALLOWED"), "{s}\n{}", err(&o));
    assert!(s.contains("stream-ok"), "{s}\n{}", err(&o));
    assert_eq!(s.matches("denied").count(), 6, "{s}");
    // DNS resolution has no way out.
    let o = sh(&sb, "getent hosts example.com; echo rc=$?");
    assert!(
        out(&o).contains("rc=2") || !out(&o).contains("rc=0"),
        "{}",
        out(&o)
    );
}

#[test]
fn host_loopback_services_are_unreachable() {
    if !facilities_ok(false) || !python_ok() {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let ws = workspace();
    let sb = plain(ws.path(), Recorder::new(Rule::AllowFiles));
    let o = py(
        &sb,
        &format!(
            r#"
import socket
for host in ["127.0.0.1", "localhost"]:
    try:
        s = socket.create_connection((host, {port}), timeout=2)
        print("CONNECTED", host)
    except OSError as e:
        print("blocked", host, e.errno)
"#
        ),
    );
    let s = out(&o);
    assert!(!s.contains("CONNECTED"), "{s}");
    assert!(s.contains("blocked 127.0.0.1"), "{s}\n{}", err(&o));
    assert!(listener.accept().is_err(), "host listener got a connection");
}
