//! The egress proxy against real local TCP servers on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use stele_sandbox::proxy::{EgressProxy, ProxyConfig};
use stele_sandbox::{
    FileCloseReport, FileRequest, Mediator, NetCloseReport, NetRequest, NetScheme, NetVerdict,
    Requester, Ticket, Verdict,
};

/// Allows hosts on its list (as written), each at the address it names;
/// records everything.
#[derive(Debug, Default)]
struct NetRecorder {
    allow: Mutex<Vec<(String, IpAddr)>>,
    requests: Mutex<Vec<NetRequest>>,
    closes: Mutex<Vec<NetCloseReport>>,
    next: AtomicU64,
}

impl NetRecorder {
    /// Allow `hosts` at 127.0.0.1.
    fn allowing(hosts: &[&str]) -> Arc<Self> {
        let at: Vec<(&str, IpAddr)> = hosts
            .iter()
            .map(|h| (*h, IpAddr::from(Ipv4Addr::LOCALHOST)))
            .collect();
        Self::allowing_at(&at)
    }

    /// Allow each host at the address given with it.
    fn allowing_at(hosts: &[(&str, IpAddr)]) -> Arc<Self> {
        let r = NetRecorder::default();
        *r.allow.lock().unwrap() = hosts.iter().map(|(h, a)| (h.to_string(), *a)).collect();
        Arc::new(r)
    }

    fn wait_closes(&self, n: usize) -> Vec<NetCloseReport> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let c = self.closes.lock().unwrap().clone();
            if c.len() >= n || Instant::now() > deadline {
                return c;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Mediator for NetRecorder {
    fn file_access(&self, _req: &FileRequest) -> Verdict {
        Verdict::Deny("network only".into())
    }
    fn file_closed(&self, _report: &FileCloseReport) {}
    fn net_connect(&self, req: &NetRequest) -> NetVerdict {
        self.requests.lock().unwrap().push(req.clone());
        let allowed = self
            .allow
            .lock()
            .unwrap()
            .iter()
            .find(|(h, _)| *h == req.host)
            .map(|(_, a)| *a);
        match allowed {
            Some(address) => NetVerdict::Allow {
                ticket: Ticket(self.next.fetch_add(1, Ordering::SeqCst) + 100),
                address,
            },
            None => NetVerdict::Deny(format!("{} is not on the allow list", req.host).into()),
        }
    }
    fn net_closed(&self, report: &NetCloseReport) {
        self.closes.lock().unwrap().push(report.clone());
    }
}

fn start(rec: &Arc<NetRecorder>, config: ProxyConfig) -> (EgressProxy, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let proxy =
        EgressProxy::serve_with(listener, rec.clone(), Requester::default(), config).unwrap();
    (proxy, port)
}

/// An echo server for one connection; returns its port.
fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    });
    port
}

/// An HTTP server for one request; returns its port and what it received.
fn http_server(body: &'static str) -> (u16, Arc<Mutex<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(String::new()));
    let seen2 = seen.clone();
    thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap_or(0) == 1 {
                head.push(b[0]);
            }
            *seen2.lock().unwrap() = String::from_utf8_lossy(&head).into_owned();
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes());
        }
    });
    (port, seen)
}

fn client(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn read_all(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Read up to and including the end of the response head.
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap_or(0) == 1 {
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn connect_allowed_relays_and_reports_bytes() {
    let rec = NetRecorder::allowing(&["127.0.0.1"]);
    let (proxy, pport) = start(&rec, ProxyConfig::default());
    let dest = echo_server();

    let mut c = client(pport);
    write!(
        c,
        "CONNECT 127.0.0.1:{dest} HTTP/1.1\r\nHost: 127.0.0.1:{dest}\r\n\r\n"
    )
    .unwrap();
    let head = read_head(&mut c);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    c.write_all(b"ping 12345").unwrap();
    let mut got = [0u8; 10];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping 12345");
    c.write_all(b"!!").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut c), "!!");

    let closes = rec.wait_closes(1);
    assert_eq!(closes.len(), 1);
    assert_eq!(closes[0].ticket, Ticket(100));
    assert_eq!(closes[0].bytes_out, 12);
    assert_eq!(closes[0].bytes_in, 12);
    assert_eq!(closes[0].error, None);
    let req = rec.requests.lock().unwrap()[0].clone();
    assert_eq!(
        (req.host.as_str(), req.port, req.scheme),
        ("127.0.0.1", dest, NetScheme::Connect)
    );
    proxy.stop().unwrap();
}

#[test]
fn connect_denied_gets_403_with_the_mediators_reason() {
    let rec = NetRecorder::allowing(&[]);
    let (proxy, pport) = start(&rec, ProxyConfig::default());
    let mut c = client(pport);
    c.write_all(b"CONNECT Blocked.EXAMPLE.:443 HTTP/1.1\r\n\r\n")
        .unwrap();
    let resp = read_all(&mut c);
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(
        resp.contains("Blocked.EXAMPLE. is not on the allow list"),
        "{resp}"
    );
    // The host reaches the mediator as written: canonicalising is its job.
    let reqs = rec.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        (reqs[0].host.as_str(), reqs[0].port),
        ("Blocked.EXAMPLE.", 443)
    );
    assert!(rec.closes.lock().unwrap().is_empty());

    // Loopback is not special-cased: unless the mediator allows it, it is refused.
    let dest = echo_server();
    let mut c = client(pport);
    write!(c, "CONNECT 127.0.0.1:{dest} HTTP/1.1\r\n\r\n").unwrap();
    assert!(read_all(&mut c).starts_with("HTTP/1.1 403"));
    proxy.stop().unwrap();
}

#[test]
fn plain_http_is_forwarded_in_origin_form() {
    let rec = NetRecorder::allowing(&["127.0.0.1"]);
    let (proxy, pport) = start(&rec, ProxyConfig::default());
    let (dest, seen) = http_server("hello");

    let mut c = client(pport);
    write!(
        c,
        "GET http://127.0.0.1:{dest}/path?q=1 HTTP/1.1\r\nHost: 127.0.0.1:{dest}\r\nProxy-Authorization: Basic c2VjcmV0\r\nUser-Agent: t\r\n\r\n"
    )
    .unwrap();
    let resp = read_all(&mut c);
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    assert!(resp.ends_with("hello"), "{resp}");

    let got = seen.lock().unwrap().clone();
    assert!(got.starts_with("GET /path?q=1 HTTP/1.1\r\n"), "{got}");
    assert!(
        !got.to_ascii_lowercase().contains("proxy-authorization"),
        "{got}"
    );
    assert!(got.contains("User-Agent: t\r\n"), "{got}");
    assert!(got.contains("Connection: close\r\n"), "{got}");

    let closes = rec.wait_closes(1);
    assert_eq!(closes.len(), 1);
    assert_eq!(closes[0].bytes_in, resp.len() as u64);
    assert_eq!(closes[0].bytes_out, got.len() as u64);
    assert_eq!(rec.requests.lock().unwrap()[0].scheme, NetScheme::Http);
    proxy.stop().unwrap();
}

#[test]
fn malformed_and_non_proxy_requests_get_400_without_a_decision() {
    let rec = NetRecorder::allowing(&["127.0.0.1", "example.com"]);
    let (proxy, pport) = start(&rec, ProxyConfig::default());
    for bad in [
        "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "garbage\r\n\r\n",
        "CONNECT example.com HTTP/1.1\r\n\r\n",
        "CONNECT ::1:443 HTTP/1.1\r\n\r\n",
        "CONNECT [::1:443 HTTP/1.1\r\n\r\n",
        "CONNECT a/b:443 HTTP/1.1\r\n\r\n",
        "GET https://example.com/ HTTP/1.1\r\n\r\n",
        "GET http://example.com:99999/ HTTP/1.1\r\n\r\n",
    ] {
        let mut c = client(pport);
        c.write_all(bad.as_bytes()).unwrap();
        let resp = read_all(&mut c);
        assert!(resp.starts_with("HTTP/1.1 400"), "{bad:?} -> {resp}");
    }
    // Oversized head.
    let mut c = client(pport);
    let big = format!(
        "GET http://example.com/ HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let _ = c.write_all(big.as_bytes());
    assert!(read_all(&mut c).starts_with("HTTP/1.1 431"));
    assert!(rec.requests.lock().unwrap().is_empty());
    proxy.stop().unwrap();
}

#[test]
fn slowloris_head_times_out() {
    let rec = NetRecorder::allowing(&["127.0.0.1"]);
    let config = ProxyConfig {
        header_timeout: Duration::from_millis(800),
        ..ProxyConfig::default()
    };
    let (proxy, pport) = start(&rec, config);
    let mut c = client(pport);
    let t0 = Instant::now();
    c.write_all(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n").unwrap();
    // Trickle a byte every 100 ms: each read succeeds, the total deadline must still hit.
    let mut answered = String::new();
    for _ in 0..40 {
        if c.write_all(b"X").is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(100));
        c.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 256];
        if let Ok(n) = c.read(&mut buf) {
            answered.push_str(&String::from_utf8_lossy(&buf[..n]));
            if n > 0 {
                break;
            }
        }
        c.set_nonblocking(false).unwrap();
    }
    let elapsed = t0.elapsed();
    assert!(answered.starts_with("HTTP/1.1 408"), "{answered:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert!(rec.requests.lock().unwrap().is_empty());
    proxy.stop().unwrap();
}

#[test]
fn stop_cuts_open_tunnels_and_still_reports() {
    let rec = NetRecorder::allowing(&["127.0.0.1"]);
    let (proxy, pport) = start(&rec, ProxyConfig::default());
    let dest = echo_server();
    let mut c = client(pport);
    write!(c, "CONNECT 127.0.0.1:{dest} HTTP/1.1\r\n\r\n").unwrap();
    assert!(read_head(&mut c).starts_with("HTTP/1.1 200"));
    c.write_all(b"abc").unwrap();
    let mut got = [0u8; 3];
    c.read_exact(&mut got).unwrap();
    // An idle client that never closes, plus one stuck mid-head.
    let mut slow = client(pport);
    slow.write_all(b"CONNECT ").unwrap();
    let t0 = Instant::now();
    proxy.stop().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    let closes = rec.wait_closes(1);
    assert_eq!(closes.len(), 1);
    assert_eq!((closes[0].bytes_out, closes[0].bytes_in), (3, 3));
    drop(slow);
}

/// Every spelling that could be a host reaches the mediator verbatim (so
/// its refusal is a logged decision there), never a silent `400` here.
#[test]
fn every_plausible_host_reaches_the_mediator_as_written() {
    let rec = NetRecorder::allowing(&[]);
    let (proxy, pport) = start(&rec, ProxyConfig::default());
    let spellings = [
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "0.0.0.0",
        "2130706433",
        "0x7f.1",
        "127.1",
        "Bücher.example",
        "exa_mple!.com",
        "%31%32%37.0.0.1",
        "[fe80::1%25lo]",
    ];
    for host in spellings {
        let mut c = client(pport);
        write!(c, "CONNECT {host}:9 HTTP/1.1\r\n\r\n").unwrap();
        let resp = read_all(&mut c);
        assert!(resp.starts_with("HTTP/1.1 403"), "{host} -> {resp}");
    }
    let seen: Vec<String> = rec
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.host.clone())
        .collect();
    assert_eq!(seen, spellings.map(String::from).to_vec());
    proxy.stop().unwrap();
}

/// An echo server for one connection on `ip`; returns its port.
fn echo_server_on(ip: Ipv4Addr) -> u16 {
    let l = TcpListener::bind((ip, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    });
    port
}

/// The proxy connects to exactly the address the mediator decided on: it
/// never resolves the name itself (a second resolution would let DNS swap
/// the destination after the decision).
#[test]
fn the_proxy_connects_to_exactly_the_decided_address() {
    // A name that resolves nowhere, decided to be 127.0.0.1: reached.
    let dest = echo_server();
    let rec = NetRecorder::allowing_at(&[
        ("no-such-name.invalid", IpAddr::from(Ipv4Addr::LOCALHOST)),
        // The client names 127.0.0.1; the mediator decided 127.0.0.2.
        ("127.0.0.1", IpAddr::from(Ipv4Addr::new(127, 0, 0, 2))),
    ]);
    let (proxy, pport) = start(&rec, ProxyConfig::default());
    let mut c = client(pport);
    write!(c, "CONNECT no-such-name.invalid:{dest} HTTP/1.1\r\n\r\n").unwrap();
    assert!(read_head(&mut c).starts_with("HTTP/1.1 200"));
    c.write_all(b"hi").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut c), "hi");
    assert_eq!(rec.wait_closes(1).len(), 1);

    // Only 127.0.0.2 listens on this port: the connection must land there.
    let only_on_2 = echo_server_on(Ipv4Addr::new(127, 0, 0, 2));
    let mut c = client(pport);
    write!(c, "CONNECT 127.0.0.1:{only_on_2} HTTP/1.1\r\n\r\n").unwrap();
    assert!(read_head(&mut c).starts_with("HTTP/1.1 200"));
    c.write_all(b"two").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut c), "two");
    let closes = rec.wait_closes(2);
    assert_eq!(closes.len(), 2);
    assert_eq!(closes[1].error, None, "{closes:?}");
    proxy.stop().unwrap();
}
