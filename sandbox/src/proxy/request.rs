//! Reading and parsing the one request head a proxy connection starts with.

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::host::parse_authority;
use crate::NetScheme;

/// Why a request head could not be accepted; each maps to one HTTP status.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// The head did not arrive completely before the deadline (408).
    Timeout,
    /// The head exceeded the size limit (431).
    TooLarge,
    /// The client went away before sending a full head (no response).
    Closed,
    /// Not a well-formed proxy request (400), with a short reason.
    Bad(&'static str),
}

/// A parsed proxy request.
#[derive(Debug)]
pub(crate) struct ProxyRequest {
    /// Destination host, as the client wrote it (the mediator canonicalises).
    pub host: String,
    /// Destination port.
    pub port: u16,
    /// CONNECT tunnel or forwarded plain HTTP.
    pub scheme: NetScheme,
    /// For plain HTTP: the head to send upstream (origin-form, proxy headers
    /// removed, `Connection: close`). Empty for CONNECT.
    pub upstream_head: Vec<u8>,
    /// Bytes the client sent after the head (already read; must be forwarded).
    pub leftover: Vec<u8>,
}

/// Read until the end of the head (`\r\n\r\n`), at most `max` bytes, all of
/// it before `timeout` has passed since the call — a per-read timeout alone
/// would let a client trickle one byte at a time forever.
pub(crate) fn read_head(
    stream: &mut TcpStream,
    max: usize,
    timeout: Duration,
) -> Result<(Vec<u8>, Vec<u8>), HeadError> {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::Timeout);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|_| HeadError::Closed)?;
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Err(HeadError::Closed),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HeadError::Timeout)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(HeadError::Closed),
        };
        let scan_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(pos) = find_end(&buf, scan_from) {
            if pos > max {
                return Err(HeadError::TooLarge);
            }
            let rest = buf.split_off(pos);
            return Ok((buf, rest));
        }
        if buf.len() > max {
            return Err(HeadError::TooLarge);
        }
    }
}

/// Index just past the first `\r\n\r\n` at or after `from`.
fn find_end(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| from + p + 4)
}

/// Headers that concern the proxy hop only and are never forwarded.
const HOP_HEADERS: &[&str] = &[
    "proxy-authorization",
    "proxy-connection",
    "connection",
    "keep-alive",
];

/// Parse a head read by [`read_head`].
pub(crate) fn parse(head: &[u8], leftover: Vec<u8>) -> Result<ProxyRequest, HeadError> {
    let text =
        std::str::from_utf8(head).map_err(|_| HeadError::Bad("request head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().ok_or(HeadError::Bad("empty request"))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Bad("malformed request line"));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HeadError::Bad("unsupported HTTP version"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HeadError::Bad("malformed method"));
    }
    let headers: Vec<&str> = lines.take_while(|l| !l.is_empty()).collect();
    for h in &headers {
        // No obsolete line folding, no header without a name.
        if h.starts_with([' ', '\t']) || !h.contains(':') || h.starts_with(':') {
            return Err(HeadError::Bad("malformed header"));
        }
    }

    if method == "CONNECT" {
        let (host, port) =
            parse_authority(target, None).ok_or(HeadError::Bad("bad CONNECT authority"))?;
        return Ok(ProxyRequest {
            host,
            port,
            scheme: NetScheme::Connect,
            upstream_head: Vec::new(),
            leftover,
        });
    }

    let scheme_ok = target
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("http://"));
    let rest = if scheme_ok {
        target.get(7..).unwrap_or_default()
    } else if target.starts_with('/') || target == "*" {
        return Err(HeadError::Bad("not a proxy request (origin-form target)"));
    } else {
        return Err(HeadError::Bad(
            "only http:// targets and CONNECT are proxied",
        ));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return Err(HeadError::Bad("userinfo in proxy target"));
    }
    let (host, port) =
        parse_authority(authority, Some(80)).ok_or(HeadError::Bad("bad target host"))?;
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };

    let mut out = format!("{method} {path} {version}\r\n");
    for h in headers {
        let name = h
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if HOP_HEADERS.contains(&name.as_str()) {
            continue;
        }
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    Ok(ProxyRequest {
        host,
        port,
        scheme: NetScheme::Http,
        upstream_head: out.into_bytes(),
        leftover,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_connect() {
        let r = parse(
            b"CONNECT Example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n",
            vec![1],
        )
        .unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.scheme),
            ("Example.com", 443, NetScheme::Connect)
        );
        assert_eq!(r.leftover, vec![1]);
    }

    #[test]
    fn rewrites_plain_http() {
        let r = parse(
            b"GET http://a.test:8080/x?y=1 HTTP/1.1\r\nHost: a.test\r\nProxy-Authorization: s\r\nConnection: keep-alive\r\n\r\n",
            vec![],
        )
        .unwrap();
        assert_eq!((r.port, r.scheme), (8080, NetScheme::Http));
        let head = String::from_utf8(r.upstream_head).unwrap();
        assert_eq!(
            head,
            "GET /x?y=1 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn rejects_non_proxy_and_garbage() {
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET https://a.test/ HTTP/1.1\r\n\r\n",
            b"CONNECT a.test HTTP/1.1\r\n\r\n",
            b"GET http://user@a.test/ HTTP/1.1\r\n\r\n",
            b"garbage\r\n\r\n",
            b"GET http://a.test/ HTTP/2\r\n\r\n",
            b"GET http://a.test/ HTTP/1.1\r\n folded\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bad, vec![]), Err(HeadError::Bad(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
