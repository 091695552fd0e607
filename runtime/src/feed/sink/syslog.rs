//! Syslog over TLS: RFC 5424 messages, RFC 5425 transport with octet
//! counting (`MSG-LEN SP SYSLOG-MSG`), so newlines, control characters and
//! long values inside an event never split or merge messages.
//!
//! Syslog has no acknowledgement. A batch counts as delivered once the
//! receiver's TCP stack has acknowledged every byte of it (the socket's
//! send queue, `SIOCOUTQ`, is empty) and the connection is still
//! established; anything else drops the connection and the runner sends
//! the batch again on a new one. What the receiver does after its kernel
//! has the bytes (a crash before rsyslog writes them) is outside what the
//! protocol can tell: use HEC with indexer acknowledgement or OTLP where
//! that matters (docs/siem.md).

use std::io::Write as _;
use std::net::{TcpStream, ToSocketAddrs as _};
use std::os::fd::AsRawFd as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

use super::super::config::{Endpoint, SinkConfig};
use super::super::record::FeedRecord;
use super::super::FeedError;
use super::{Sink, SinkError};

/// The structured-data id of stele's parameters. 32473 is the private
/// enterprise number RFC 5612 reserves for documentation and examples;
/// stele has none of its own.
pub const SD_ID: &str = "stele@32473";

/// A syslog-over-TLS receiver.
pub struct SyslogSink {
    host: String,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    facility: u8,
    hostname: String,
    conn: Option<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for SyslogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogSink")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl SyslogSink {
    /// For `cfg` (a syslog endpoint).
    pub fn new(cfg: &SinkConfig, tls: Arc<rustls::ClientConfig>) -> Result<Self, FeedError> {
        let Endpoint::Syslog { host, port } = &cfg.endpoint else {
            return Err(FeedError::Config {
                file: "[[feed]]".into(),
                sink: cfg.name.clone(),
                field: "endpoint".into(),
                why: "syslog needs host:port".into(),
            });
        };
        Ok(Self {
            host: host.clone(),
            port: *port,
            tls,
            timeout: cfg.timeout,
            facility: cfg.facility,
            hostname: printable(&super::host_name(), 255),
            conn: None,
            buf: Vec::new(),
        })
    }

    fn connect(
        &self,
    ) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, SinkError> {
        let at = format!("{}:{}", self.host, self.port);
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| SinkError(format!("resolving {at}: {e}")))?
            .next()
            .ok_or_else(|| SinkError(format!("resolving {at}: no address")))?;
        let sock = TcpStream::connect_timeout(&addr, self.timeout)
            .map_err(|e| SinkError(format!("connecting to {at}: {e}")))?;
        sock.set_write_timeout(Some(self.timeout))
            .and_then(|()| sock.set_read_timeout(Some(self.timeout)))
            .and_then(|()| sock.set_nodelay(true))
            .map_err(|e| SinkError(format!("{at}: {e}")))?;
        let name =
            ServerName::try_from(self.host.clone()).map_err(|e| SinkError(format!("{at}: {e}")))?;
        let conn = rustls::ClientConnection::new(self.tls.clone(), name)
            .map_err(|e| SinkError(format!("TLS with {at}: {e}")))?;
        let mut s = rustls::StreamOwned::new(conn, sock);
        while s.conn.is_handshaking() {
            s.conn
                .complete_io(&mut s.sock)
                .map_err(|e| SinkError(format!("TLS handshake with {at} failed: {e}")))?;
        }
        Ok(s)
    }

    /// Frame `records` into `self.buf`.
    fn frame(&mut self, records: &[FeedRecord], origin: &str) {
        self.buf.clear();
        let mut msg = Vec::new();
        for r in records {
            msg.clear();
            let pri = u16::from(self.facility) * 8 + u16::from(r.syslog_severity());
            let ts = if stele_audit::rules::check_ts(&r.ts).is_ok() {
                r.ts.as_str()
            } else {
                "-"
            };
            let _ = write!(
                msg,
                "<{pri}>1 {ts} {} stele - {} [{SD_ID} origin=\"",
                self.hostname,
                printable(&r.label(), 32)
            );
            sd_escape(origin, &mut msg);
            let _ = write!(
                msg,
                "\" seq=\"{}\" leaf=\"{}\"] \u{feff}",
                r.seq,
                hex::encode(r.leaf_hash)
            );
            msg.extend_from_slice(&r.json);
            let _ = write!(self.buf, "{} ", msg.len());
            self.buf.extend_from_slice(&msg);
        }
    }

    fn send(&mut self) -> Result<(), SinkError> {
        let at = format!("{}:{}", self.host, self.port);
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(self.connect()?),
        };
        conn.write_all(&self.buf)
            .and_then(|()| conn.flush())
            .map_err(|e| SinkError(format!("sending to {at}: {e}")))?;
        acknowledged(&conn.sock, self.timeout).map_err(|e| SinkError(format!("{at}: {e}")))
    }
}

impl Sink for SyslogSink {
    fn deliver(&mut self, records: &[FeedRecord], origin: &str) -> Result<(), SinkError> {
        self.frame(records, origin);
        let r = self.send();
        if r.is_err() {
            // A connection that failed mid-batch is never reused.
            self.conn = None;
        }
        r
    }
}

/// Wait until the peer's TCP has acknowledged every byte sent and the
/// connection is still established.
fn acknowledged(sock: &TcpStream, timeout: Duration) -> Result<(), String> {
    let fd = sock.as_raw_fd();
    let start = Instant::now();
    loop {
        let mut queued: libc::c_int = 0;
        // SAFETY: SIOCOUTQ writes one int through the valid pointer; `fd`
        // is an open socket owned by `sock` for the duration of the call.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
        if rc != 0 {
            return Err(format!("SIOCOUTQ: {}", std::io::Error::last_os_error()));
        }
        let state = tcp_state(fd)?;
        if state != TCP_ESTABLISHED {
            return Err(format!(
                "the receiver closed the connection (TCP state {state}) before acknowledging every byte"
            ));
        }
        if queued == 0 {
            if let Ok(Some(e)) = sock.take_error() {
                return Err(e.to_string());
            }
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "{queued} bytes not acknowledged by the receiver after {} s",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

const TCP_ESTABLISHED: u8 = 1;

fn tcp_state(fd: std::os::fd::RawFd) -> Result<u8, String> {
    // SAFETY: `tcp_info` is plain old data; zeroed is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, a live
    // local of that size; `fd` is an open socket.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(format!("TCP_INFO: {}", std::io::Error::last_os_error()));
    }
    Ok(info.tcpi_state)
}

/// RFC 5424 PRINTUSASCII (33–126), at most `max` characters; `-` if empty.
fn printable(s: &str, max: usize) -> String {
    let t: String = s
        .chars()
        .filter(|c| ('!'..='~').contains(c))
        .take(max)
        .collect();
    if t.is_empty() {
        "-".into()
    } else {
        t
    }
}

/// An SD-PARAM value: `"`, `\` and `]` escaped (RFC 5424 §6.3.3).
fn sd_escape(s: &str, out: &mut Vec<u8>) {
    for b in s.bytes() {
        if matches!(b, b'"' | b'\\' | b']') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::feed::record::RecordKind;
    use stele_audit::EventKind;

    #[test]
    fn frames_are_octet_counted_whatever_the_event_holds() {
        let cfg = crate::feed::config::FeedEntry {
            name: "s".into(),
            kind: crate::feed::config::SinkKind::Syslog,
            endpoint: "127.0.0.1:6514".into(),
            ca_file: None,
            client_cert: None,
            client_key: None,
            token_file: None,
            token_env: None,
            batch: None,
            backlog_limit: None,
            poll_ms: None,
            timeout_secs: None,
            facility: None,
            index: None,
            alerts: Default::default(),
        }
        .check(std::path::Path::new("t"))
        .unwrap();
        let tls = crate::feed::sink::tls::client_config(&cfg).unwrap();
        let mut s = SyslogSink::new(&cfg, tls).unwrap();
        let hostile = "a\nb\r\n0 <13>1 forged\u{0}]\"\\".repeat(1000);
        let rec = |seq, json: &str| FeedRecord {
            seq,
            leaf_hash: [7; 32],
            kind: RecordKind::Entry {
                kind: EventKind::ToolIntent,
                denied: false,
            },
            ts: "2026-01-02T03:04:05.000006Z".into(),
            time_ms: 0,
            json: json.as_bytes().to_vec(),
        };
        s.frame(&[rec(1, &hostile), rec(2, "{}")], "o\"]x");
        // Parse the frames back by their counts alone.
        let mut rest = &s.buf[..];
        let mut msgs = Vec::new();
        while !rest.is_empty() {
            let sp = rest.iter().position(|b| *b == b' ').unwrap();
            let n: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
            msgs.push(&rest[sp + 1..sp + 1 + n]);
            rest = &rest[sp + 1 + n..];
        }
        assert_eq!(msgs.len(), 2);
        assert!(msgs[0].ends_with(hostile.as_bytes()));
        let head = String::from_utf8_lossy(msgs[1]);
        assert!(
            head.starts_with("<110>1 2026-01-02T03:04:05.000006Z "),
            "{head}"
        );
        assert!(
            head.contains(
                " stele - tool.intent [stele@32473 origin=\"o\\\"\\]x\" seq=\"2\" leaf=\"0707"
            ),
            "{head}"
        );
    }
}
