//! Network attempts the process sandbox refuses by itself (issue 14 item 3):
//! sockets of other kinds than unix and TCP, and connections to anything
//! but the egress proxy, are answered `EACCES` and reported to the
//! Mediator (`net_refused`) — once per distinct attempt per command, all
//! of them counted — through a seccomp user notification. What holds the
//! sandbox in is unchanged (network namespace, Landlock): an address
//! swapped after stele looked at it reaches nothing more.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "process_support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use stele_sandbox::exec::{ExecOutcome, ExecRequest, Sandbox};
use stele_sandbox::process::ProcessSandbox;
use stele_sandbox::NetAttemptKind;
use support::*;

fn python_ok() -> bool {
    let ok = std::path::Path::new("/usr/bin/python3").exists();
    if !ok {
        eprintln!("SKIPPED: needs /usr/bin/python3");
    }
    ok
}

fn py(sb: &ProcessSandbox, code: &str) -> ExecOutcome {
    let mut req = ExecRequest::new(
        "net",
        vec!["/usr/bin/python3".into(), "-c".into(), code.into()],
    );
    req.limits = test_limits();
    sb.exec(req).expect("exec")
}

fn refused(rec: &Recorder) -> Vec<NetAttemptKind> {
    rec.refused.lock().unwrap().iter().map(|a| a.kind).collect()
}

fn setup(mediated_ws: bool) -> Option<(tempfile::TempDir, Arc<Recorder>, ProcessSandbox)> {
    if !facilities_ok(mediated_ws) || !python_ok() {
        return None;
    }
    let ws = workspace();
    let rec = Recorder::new(Rule::AllowFiles);
    let sb = if mediated_ws {
        mediated(ws.path(), rec.clone())
    } else {
        plain(ws.path(), rec.clone())
    };
    Some((ws, rec, sb))
}

#[test]
fn denied_sockets_are_refused_with_eacces_and_recorded() {
    let Some((_ws, rec, sb)) = setup(false) else {
        return;
    };
    let o = py(
        &sb,
        r#"
import socket
tries = [
  ("udp", socket.AF_INET, socket.SOCK_DGRAM, 0),
  ("udp6", socket.AF_INET6, socket.SOCK_DGRAM, 0),
  ("raw", socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
  ("packet", socket.AF_PACKET, socket.SOCK_RAW, 0),
  ("vsock", socket.AF_VSOCK, socket.SOCK_STREAM, 0),
  ("netlink", socket.AF_NETLINK, socket.SOCK_RAW, 0),
]
for name, fam, ty, proto in tries:
    try:
        socket.socket(fam, ty | socket.SOCK_CLOEXEC, proto)
        print(name, "ALLOWED")
    except OSError as e:
        print(name, e.errno)
"#,
    );
    let s = out(&o);
    assert!(!s.contains("ALLOWED"), "{s}\n{}", err(&o));
    for name in ["udp", "udp6", "raw", "packet", "vsock"] {
        assert!(
            s.contains(&format!("{name} 13\n")),
            "{name} not EACCES: {s}"
        );
    }
    // Netlink is no network attempt: still EPERM, not recorded.
    assert!(s.contains("netlink 1\n"), "{s}");
    let r = refused(&rec);
    let socket = |family, socket_type| NetAttemptKind::Socket {
        family,
        socket_type,
    };
    for k in [
        socket(libc::AF_INET, libc::SOCK_DGRAM),
        socket(libc::AF_INET6, libc::SOCK_DGRAM),
        socket(libc::AF_INET, libc::SOCK_RAW),
        socket(libc::AF_PACKET, libc::SOCK_RAW),
        socket(libc::AF_VSOCK, libc::SOCK_STREAM),
    ] {
        assert!(r.contains(&k), "{k:?} not recorded: {r:?}");
    }
    assert!(!r.iter().any(
        |k| matches!(k, NetAttemptKind::Socket { family, .. } if *family == libc::AF_NETLINK)
    ));
    assert_eq!(o.network_refusals, 5, "{o:?}");
    let a = rec.refused.lock().unwrap()[0].clone();
    assert_eq!(a.requester.exec_id.as_deref(), Some("net"));
    assert!(a.requester.pid.is_some_and(|p| p >= 2), "{a:?}");
    assert_eq!(a.kind.transport(), "udp");
}

#[test]
fn direct_connections_are_refused_and_recorded() {
    let Some((_ws, rec, sb)) = setup(false) else {
        return;
    };
    let o = py(
        &sb,
        r#"
import socket
for host, port in [("1.2.3.4", 443), ("127.0.0.1", 8080), ("::1", 22), ("10.0.0.1", 80)]:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        s.connect((host, port))
        print(host, "CONNECTED")
    except OSError as e:
        print(host, e.errno)
# Unix sockets are not network attempts.
u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    u.connect("/tmp/nothing-here")
except OSError as e:
    print("unix", e.errno)
"#,
    );
    let s = out(&o);
    assert!(!s.contains("CONNECTED"), "{s}");
    for h in ["1.2.3.4 13", "127.0.0.1 13", "::1 13", "10.0.0.1 13"] {
        assert!(s.contains(h), "{h}: {s}\n{}", err(&o));
    }
    assert!(s.contains("unix 2"), "{s}");
    let r = refused(&rec);
    for a in ["1.2.3.4:443", "127.0.0.1:8080", "[::1]:22", "10.0.0.1:80"] {
        let addr: SocketAddr = a.parse().unwrap();
        assert!(r.contains(&NetAttemptKind::Connect(addr)), "{a}: {r:?}");
    }
    assert_eq!(r.len(), 4, "{r:?}");
    assert_eq!(o.network_refusals, 4);
}

#[test]
fn fast_open_sends_are_connections_too() {
    let Some((_ws, rec, sb)) = setup(false) else {
        return;
    };
    let o = py(
        &sb,
        r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
try:
    s.sendto(b"GET / HTTP/1.0\r\n\r\n", socket.MSG_FASTOPEN, ("93.184.216.34", 80))
    print("SENT")
except OSError as e:
    print("sendto", e.errno)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
try:
    s.sendmsg([b"x"], [], socket.MSG_FASTOPEN, ("93.184.216.35", 80))
    print("SENT")
except OSError as e:
    print("sendmsg", e.errno)
"#,
    );
    let s = out(&o);
    assert!(!s.contains("SENT"), "{s}");
    assert!(
        s.contains("sendto 13") && s.contains("sendmsg 13"),
        "{s}\n{}",
        err(&o)
    );
    let r = refused(&rec);
    assert!(
        r.contains(&NetAttemptKind::Connect(
            "93.184.216.34:80".parse().unwrap()
        )),
        "{r:?}"
    );
    assert!(
        r.contains(&NetAttemptKind::Connect(
            "93.184.216.35:80".parse().unwrap()
        )),
        "{r:?}"
    );
}

#[test]
fn the_proxy_stays_reachable_and_repeats_are_counted_not_flooded() {
    let Some((_ws, rec, sb)) = setup(true) else {
        return;
    };
    let o = py(
        &sb,
        r#"
import socket
s = socket.create_connection(("127.0.0.1", 3128), timeout=5)
s.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
print(s.recv(100).split(b"\r\n")[0].decode())
n = 0
for i in range(500):
    t = socket.socket()
    try:
        t.connect(("1.2.3.4", 443))
    except OSError:
        n += 1
    t.close()
print("refused", n)
"#,
    );
    let s = out(&o);
    // The proxy answered (the test Mediator denies every host: 403).
    assert!(s.contains(" 403"), "{s}\n{}", err(&o));
    assert!(s.contains("refused 500"), "{s}");
    assert_eq!(
        rec.nets.lock().unwrap().len(),
        1,
        "the CONNECT was put to the Mediator"
    );
    let r = refused(&rec);
    assert_eq!(
        r.len(),
        1,
        "one record for one repeated attempt: {}",
        r.len()
    );
    assert_eq!(o.network_refusals, 500);
}

#[test]
fn an_address_swapped_after_the_check_reaches_nothing() {
    let Some((_ws, _rec, sb)) = setup(false) else {
        return;
    };
    // A listener inside the sandbox's own network namespace on 8080, and
    // threads rewriting a connect() address between the proxy's and 8080
    // while it is being checked: stele lets the proxy's through, and the
    // kernel then connects to whatever the memory holds — Landlock and the
    // namespace must still keep 8080 unreachable.
    let o = py(
        &sb,
        r#"
import ctypes, socket, struct, threading
srv = socket.socket()
srv.bind(("127.0.0.1", 8080))
srv.listen(16)
srv.setblocking(False)
libc = ctypes.CDLL(None, use_errno=True)
addr = ctypes.create_string_buffer(16)
def put(port):
    ctypes.memmove(addr, struct.pack("=HH4s8x", socket.AF_INET, socket.htons(port), bytes([127,0,0,1])), 16)
put(3128)
stop = False
def flip():
    while not stop:
        put(8080); put(3128)
for _ in range(2):
    threading.Thread(target=flip, daemon=True).start()
reached = 0
errnos = {}
for i in range(1500):
    s = socket.socket()
    if libc.connect(s.fileno(), addr, 16) != 0:
        e = ctypes.get_errno()
        errnos[e] = errnos.get(e, 0) + 1
    s.close()
    try:
        c, _ = srv.accept(); c.close(); reached += 1
    except OSError:
        pass
stop = True
print("reached", reached)
print("refused", errnos.get(13, 0) > 0, "proxy-port", errnos.get(111, 0) > 0)
"#,
    );
    let s = out(&o);
    assert!(s.contains("reached 0"), "{s}\n{}", err(&o));
    // Both addresses were in play: some attempts refused (EACCES), some
    // let through to the (absent) proxy (ECONNREFUSED).
    assert!(s.contains("refused True proxy-port True"), "{s}");
}
