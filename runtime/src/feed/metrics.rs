//! The feed's lag and delivery figures as Prometheus metrics (text
//! exposition, written by the `prometheus-client` crate), served on
//! `GET /metrics` by `stele audit feed run --metrics ADDR` and by
//! `stele serve` (`[server] metrics_listen`). docs/siem.md lists them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of every per-sink metric.
type Sink = Vec<(String, String)>;

/// The metrics of every sink of one feed.
pub struct FeedMetrics {
    registry: Mutex<Registry>,
    lag_entries: Family<Sink, Gauge>,
    lag_seconds: Family<Sink, Gauge<f64, AtomicU64>>,
    log_entries: Family<Sink, Gauge>,
    delivered: Family<Sink, Counter>,
    findings: Family<Sink, Counter>,
    last_index: Family<Sink, Gauge>,
    failures: Family<Sink, Counter>,
    up: Family<Sink, Gauge>,
    stopped: Family<Sink, Gauge>,
}

impl std::fmt::Debug for FeedMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedMetrics").finish_non_exhaustive()
    }
}

impl Default for FeedMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl FeedMetrics {
    /// Every family registered, no sink yet.
    pub fn new() -> Self {
        let m = Self {
            registry: Mutex::new(Registry::default()),
            lag_entries: Family::default(),
            lag_seconds: Family::default(),
            log_entries: Family::default(),
            delivered: Family::default(),
            findings: Family::default(),
            last_index: Family::default(),
            failures: Family::default(),
            up: Family::default(),
            stopped: Family::default(),
        };
        if let Ok(mut r) = m.registry.lock() {
            let r = &mut *r;
            r.register(
                "stele_feed_lag_entries",
                "Entries of the log not yet delivered to the sink (its backlog)",
                m.lag_entries.clone(),
            );
            r.register(
                "stele_feed_lag_seconds",
                "Age in seconds of the oldest entry not yet delivered (0 when caught up)",
                m.lag_seconds.clone(),
            );
            r.register(
                "stele_feed_log_entries",
                "Entries in the log, as the sink last saw it",
                m.log_entries.clone(),
            );
            r.register(
                "stele_feed_delivered_entries",
                "Entries delivered and acknowledged by the sink since the feed started",
                m.delivered.clone(),
            );
            r.register(
                "stele_feed_delivered_findings",
                "Alert findings delivered since the feed started",
                m.findings.clone(),
            );
            r.register(
                "stele_feed_last_delivered_index",
                "Index of the last entry the sink acknowledged (-1: none)",
                m.last_index.clone(),
            );
            r.register(
                "stele_feed_delivery_failures",
                "Failed delivery attempts (each is retried) since the feed started",
                m.failures.clone(),
            );
            r.register(
                "stele_feed_sink_up",
                "1 while the sink's last delivery attempt succeeded (or it had none to make and no error), else 0",
                m.up.clone(),
            );
            r.register(
                "stele_feed_sink_stopped",
                "1 when the sink stopped because the log failed verification",
                m.stopped.clone(),
            );
        }
        m
    }

    /// The handle one sink updates its figures through.
    pub fn sink(self: &Arc<Self>, name: &str) -> SinkMetrics {
        SinkMetrics {
            all: self.clone(),
            labels: vec![("sink".to_string(), name.to_string())],
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            // Writing to a String cannot fail.
            let _ = encode(&mut out, &r);
        }
        out
    }
}

/// One sink's figures.
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    all: Arc<FeedMetrics>,
    labels: Sink,
}

impl SinkMetrics {
    /// The log's size, the cursor and the time (epoch ms) of the entry at
    /// the cursor (`None` when caught up).
    pub fn position(&self, size: u64, cursor: u64, oldest_ms: Option<i64>) {
        let m = &self.all;
        m.log_entries.get_or_create(&self.labels).set(as_i64(size));
        m.lag_entries
            .get_or_create(&self.labels)
            .set(as_i64(size.saturating_sub(cursor)));
        m.last_index
            .get_or_create(&self.labels)
            .set(as_i64(cursor) - 1);
        let lag = match oldest_ms {
            Some(t) if cursor < size => {
                let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
                ((now as i64 - t).max(0)) as f64 / 1000.0
            }
            _ => 0.0,
        };
        m.lag_seconds.get_or_create(&self.labels).set(lag);
    }

    /// A batch of `entries` entries and `findings` findings acknowledged.
    pub fn delivered(&self, entries: u64, findings: u64) {
        self.all
            .delivered
            .get_or_create(&self.labels)
            .inc_by(entries);
        self.all
            .findings
            .get_or_create(&self.labels)
            .inc_by(findings);
        self.all.up.get_or_create(&self.labels).set(1);
    }

    /// A delivery attempt failed.
    pub fn failed(&self) {
        self.all.failures.get_or_create(&self.labels).inc();
        self.all.up.get_or_create(&self.labels).set(0);
    }

    /// The sink started (up until an attempt fails) or stopped on a
    /// verification failure (down for good).
    pub fn state(&self, state: SinkState) {
        let (up, stopped) = match state {
            SinkState::Running => (1, 0),
            SinkState::Stopped => (0, 1),
        };
        self.all.up.get_or_create(&self.labels).set(up);
        self.all.stopped.get_or_create(&self.labels).set(stopped);
        // Present from the start, so a scrape sees 0 rather than nothing.
        drop(self.all.delivered.get_or_create(&self.labels));
        drop(self.all.findings.get_or_create(&self.labels));
        drop(self.all.failures.get_or_create(&self.labels));
    }
}

/// Whether a sink runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkState {
    /// Delivering or waiting for entries.
    Running,
    /// Stopped: the log failed verification.
    Stopped,
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Why the metrics endpoint could not be served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Not a loopback address, and remote scrapes were not allowed.
    #[error("refusing to serve metrics on {0}: not a loopback address (allow it explicitly to serve it beyond this host)")]
    NotLoopback(SocketAddr),
    /// The address could not be bound.
    #[error("metrics listener {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// Who may scrape the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// Only a loopback address may be given.
    LoopbackOnly,
    /// Any address (the user asked for it explicitly).
    AnyAddress,
}

/// Check `addr` against `exposure`.
pub fn check_address(addr: SocketAddr, exposure: Exposure) -> Result<(), MetricsError> {
    match exposure {
        Exposure::LoopbackOnly if !addr.ip().is_loopback() => Err(MetricsError::NotLoopback(addr)),
        _ => Ok(()),
    }
}

/// The `GET /metrics` route over `metrics`.
pub fn router(metrics: Arc<FeedMetrics>) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    m.render(),
                )
            }
        }),
    )
}

/// A metrics endpoint served on its own thread until `stop` is set.
#[derive(Debug)]
pub struct MetricsServer {
    /// The address it listens on (the port chosen when 0 was given).
    pub addr: SocketAddr,
    thread: std::thread::JoinHandle<()>,
}

impl MetricsServer {
    /// Bind `addr` (checked against `exposure`) and serve `metrics`.
    pub fn start(
        addr: SocketAddr,
        exposure: Exposure,
        metrics: Arc<FeedMetrics>,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, MetricsError> {
        check_address(addr, exposure)?;
        let bind = |source| MetricsError::Bind { addr, source };
        let std_listener = std::net::TcpListener::bind(addr).map_err(bind)?;
        std_listener.set_nonblocking(true).map_err(bind)?;
        let local = std_listener.local_addr().map_err(bind)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(bind)?;
        let thread = std::thread::Builder::new()
            .name("feed-metrics".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                        return;
                    };
                    let until = async move {
                        while !stop.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    };
                    if let Err(e) = axum::serve(listener, router(metrics))
                        .with_graceful_shutdown(until)
                        .await
                    {
                        tracing::warn!("feed metrics endpoint: {e}");
                    }
                });
            })
            .map_err(bind)?;
        Ok(Self {
            addr: local,
            thread,
        })
    }

    /// Wait for it to end (after `stop` was set).
    pub fn join(self) {
        let _ = self.thread.join();
    }
}
