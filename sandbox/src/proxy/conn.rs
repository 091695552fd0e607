//! One proxied connection: read the head, ask the mediator, connect on the
//! host side, relay, report.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::request::{parse, read_head, HeadError, ProxyRequest};
use super::{Live, ProxyConfig};
use crate::{Mediator, NetCloseReport, NetRequest, NetVerdict, Requester};

/// Everything a connection thread needs.
pub(crate) struct Ctx {
    pub mediator: Arc<dyn Mediator>,
    pub config: ProxyConfig,
    pub live: Live,
}

/// Serve one accepted client connection of `requester` to completion.
pub(crate) fn handle(ctx: &Ctx, mut client: TcpStream, requester: Requester) {
    let (head, leftover) = match read_head(
        &mut client,
        ctx.config.max_header_bytes,
        ctx.config.header_timeout,
    ) {
        Ok(h) => h,
        Err(e) => return refuse_head(&mut client, e),
    };
    let req = match parse(&head, leftover) {
        Ok(r) => r,
        Err(e) => return refuse_head(&mut client, e),
    };
    let net = NetRequest {
        host: req.host.clone(),
        port: req.port,
        scheme: req.scheme,
        requester,
    };
    let (ticket, address) = match ctx.mediator.net_connect(&net) {
        NetVerdict::Allow { ticket, address } => (ticket, address),
        NetVerdict::Deny(reason) => {
            let body = format!(
                "stele: connection to {}:{} denied: {}\n",
                sanitize(&net.host),
                net.port,
                sanitize(reason.reason())
            );
            return respond(&mut client, 403, "Forbidden", &body);
        }
    };

    let started = Instant::now();
    let dest = SocketAddr::new(address, req.port);
    let outcome = match TcpStream::connect_timeout(&dest, ctx.config.connect_timeout) {
        Ok(upstream) => tunnel(ctx, client, upstream, req),
        Err(e) => {
            let body = format!(
                "stele: cannot reach {}:{} ({dest}): {e}\n",
                sanitize(&net.host),
                net.port
            );
            respond(&mut client, 502, "Bad Gateway", &body);
            Outcome {
                bytes_out: 0,
                bytes_in: 0,
                error: Some(format!("connect: {e}")),
            }
        }
    };
    ctx.mediator.net_closed(&NetCloseReport {
        ticket,
        bytes_out: outcome.bytes_out,
        bytes_in: outcome.bytes_in,
        duration: started.elapsed(),
        error: outcome.error,
    });
}

/// What a finished connection reports.
struct Outcome {
    bytes_out: u64,
    bytes_in: u64,
    error: Option<String>,
}

/// Start the tunnel (CONNECT) or forward the request (plain HTTP), then
/// relay both ways until either side is done.
fn tunnel(ctx: &Ctx, mut client: TcpStream, mut upstream: TcpStream, req: ProxyRequest) -> Outcome {
    let mut bytes_out = 0u64;
    let first = match req.scheme {
        crate::NetScheme::Connect => client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .and_then(|()| upstream.write_all(&req.leftover)),
        crate::NetScheme::Http => upstream
            .write_all(&req.upstream_head)
            .and_then(|()| upstream.write_all(&req.leftover)),
    };
    if let Err(e) = first {
        return Outcome {
            bytes_out,
            bytes_in: 0,
            error: Some(format!("start: {e}")),
        };
    }
    bytes_out += (req.upstream_head.len() + req.leftover.len()) as u64;

    // Wake up a few times per idle period to check the shared activity clock.
    let idle = Some((ctx.config.idle_timeout / 4).max(Duration::from_millis(100)));
    let prepared = (|| -> io::Result<(TcpStream, TcpStream, u64)> {
        client.set_read_timeout(idle)?;
        upstream.set_read_timeout(idle)?;
        let upstream_id = ctx.live.add(upstream.try_clone()?);
        Ok((client.try_clone()?, upstream.try_clone()?, upstream_id))
    })();
    let (client2, upstream2, upstream_id) = match prepared {
        Ok(p) => p,
        Err(e) => {
            return Outcome {
                bytes_out,
                bytes_in: 0,
                error: Some(format!("setup: {e}")),
            }
        }
    };
    let activity = Arc::new(Activity::new(ctx.config.idle_timeout));
    let activity2 = activity.clone();
    let up_thread = std::thread::Builder::new()
        .name("stele-proxy-out".into())
        .spawn(move || copy(client2, upstream2, &activity2));
    let Ok(up_thread) = up_thread else {
        let _ = client.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
        ctx.live.remove(upstream_id);
        return Outcome {
            bytes_out,
            bytes_in: 0,
            error: Some("cannot spawn relay thread".into()),
        };
    };
    let client_handle = client.try_clone();
    let down = copy(upstream, client, &activity);
    if req.scheme == crate::NetScheme::Http {
        // The request was sent with `Connection: close`: once the server is
        // done, so is the exchange; stop waiting for the client to hang up.
        if let Ok(c) = client_handle {
            let _ = c.shutdown(Shutdown::Read);
        }
    }
    let up = up_thread
        .join()
        .unwrap_or_else(|_| (0, Some("relay thread panicked".into())));
    ctx.live.remove(upstream_id);
    Outcome {
        bytes_out: bytes_out + up.0,
        bytes_in: down.0,
        error: up.1.or(down.1),
    }
}

/// When either direction of a relay last moved bytes. A direction whose
/// read times out only gives up when the *whole* connection has been idle,
/// so a long download with a silent client is not cut.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    idle: Duration,
}

impl Activity {
    fn new(idle: Duration) -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            idle,
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    fn expired(&self) -> bool {
        self.idle_for() >= self.idle
    }
}

/// Copy `from` → `to` until EOF or error; half-close `to` afterwards so the
/// other direction can finish. Returns bytes copied and the error, if any.
fn copy(mut from: TcpStream, mut to: TcpStream, activity: &Activity) -> (u64, Option<String>) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut total = 0u64;
    let error = loop {
        match from.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => {
                activity.touch();
                if let Err(e) = to.write_all(buf.get(..n).unwrap_or_default()) {
                    break Some(format!("write: {e}"));
                }
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if activity.expired() {
                    break Some("idle timeout".to_owned());
                }
            }
            Err(e) => break Some(format!("read: {e}")),
        }
    };
    let _ = to.shutdown(Shutdown::Write);
    if error.is_some() {
        // Make the other direction stop too.
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    }
    (total, error)
}

/// Answer a head that could not be accepted.
fn refuse_head(client: &mut TcpStream, e: HeadError) {
    match e {
        HeadError::Timeout => respond(
            client,
            408,
            "Request Timeout",
            "stele: request head timed out\n",
        ),
        HeadError::TooLarge => respond(
            client,
            431,
            "Request Header Fields Too Large",
            "stele: request head too large\n",
        ),
        HeadError::Bad(why) => respond(client, 400, "Bad Request", &format!("stele: {why}\n")),
        HeadError::Closed => {}
    }
}

/// Write a short, closing response.
pub(crate) fn respond(client: &mut TcpStream, code: u16, reason: &str, body: &str) {
    let msg = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = client.write_all(msg.as_bytes());
    let _ = client.shutdown(Shutdown::Write);
    // Drain briefly so the close does not turn into a reset that loses the
    // response in the client's receive path.
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || client.set_read_timeout(Some(left)).is_err() {
            break;
        }
        if !matches!(client.read(&mut sink), Ok(n) if n > 0) {
            break;
        }
    }
}

/// Text (a reason, the host as the client wrote it) safe to put on one
/// line of a response body.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}
