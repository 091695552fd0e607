//! The receivers' wires. A sink delivers a batch whole or fails; it
//! returns only once the receiver acknowledged it as far as its protocol
//! allows (see each module), and a failed batch is sent again, whole, by
//! the runner: at least once, in order.

pub mod hec;
pub mod http;
pub mod otlp;
pub mod syslog;
pub mod tls;

use super::config::{SinkConfig, SinkKind};
use super::record::FeedRecord;
use super::FeedError;

/// Why a delivery failed (retried; shown by `stele audit feed status`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

impl SinkError {
    /// An error with its whole source chain, one line.
    pub fn chain(context: &str, e: &dyn std::error::Error) -> Self {
        let mut s = format!("{context}: {e}");
        let mut src = e.source();
        while let Some(c) = src {
            let t = c.to_string();
            if !s.contains(&t) {
                s.push_str(": ");
                s.push_str(&t);
            }
            src = c.source();
        }
        Self(s)
    }
}

/// A receiver.
pub trait Sink: Send {
    /// Deliver `records` of the log `origin`, in order.
    fn deliver(&mut self, records: &[FeedRecord], origin: &str) -> Result<(), SinkError>;
}

/// The sink a configuration describes.
pub fn build(cfg: &SinkConfig) -> Result<Box<dyn Sink>, FeedError> {
    let tls = tls::client_config(cfg)?;
    Ok(match cfg.kind {
        SinkKind::Syslog => Box::new(syslog::SyslogSink::new(cfg, tls)?),
        SinkKind::Hec => Box::new(hec::HecSink::new(cfg, tls)?),
        SinkKind::Otlp => Box::new(otlp::OtlpSink::new(cfg, tls)?),
    })
}

/// A short, printable excerpt of a receiver's answer (it may be anything).
pub fn excerpt(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(200)]);
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// This machine's name as syslog and HEC carry it.
pub fn host_name() -> String {
    let h = stele_audit::log::host_name();
    if h.is_empty() {
        "-".into()
    } else {
        h
    }
}
