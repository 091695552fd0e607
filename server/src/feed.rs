//! The SIEM feed hosted by `stele serve`: when the server's configuration
//! has `[[feed]]` sinks, the feed runner (`stele_runtime::feed`) follows the
//! log this server writes, on its own threads, with the server's log
//! handle as the writer of its own entries (no second writer), woken by
//! each commit of that log (polling `poll_ms` only as a fallback), and
//! stops with the server. `[server] metrics_listen` serves its metrics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use stele_audit::AuditLog;
use stele_runtime::feed::metrics::{Exposure, MetricsServer};
use stele_runtime::feed::{self, FeedError, FeedMetrics, FeedOptions, RunMode};

use crate::config::ServerConfig;
use crate::error::ServerError;

type Results = Vec<(String, Result<feed::runner::SinkSummary, FeedError>)>;

/// The running feed and its metrics endpoint.
#[derive(Debug)]
pub struct HostedFeed {
    stop: Arc<AtomicBool>,
    runner: Option<std::thread::JoinHandle<Results>>,
    metrics: Option<MetricsServer>,
}

impl HostedFeed {
    /// Start the feed over `log` for the configured sinks, and the metrics
    /// endpoint when `metrics_listen` is set. Nothing to start: `None`.
    pub fn start(config: &ServerConfig, log: &Arc<AuditLog>) -> Result<Option<Self>, ServerError> {
        let sinks = config.feed_sinks.clone();
        if sinks.is_empty() && config.server.metrics_listen.is_none() {
            return Ok(None);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let metrics = Arc::new(FeedMetrics::new());
        let server = match config.server.metrics_listen {
            Some(addr) => {
                let s = MetricsServer::start(
                    addr,
                    Exposure::LoopbackOnly,
                    metrics.clone(),
                    stop.clone(),
                )
                .map_err(|e| ServerError::Start(format!("server.metrics_listen: {e}")))?;
                stele_runtime::errln!("stele serve: feed metrics on http://{}/metrics", s.addr);
                Some(s)
            }
            None => None,
        };
        let runner = if sinks.is_empty() {
            None
        } else {
            let opts = FeedOptions {
                db: config.db(),
                verifier: log.verifier(),
                writer: Arc::new(log.clone()),
                stop: stop.clone(),
                mode: RunMode::Follow,
                metrics,
                // This process writes the log: wake on each commit.
                wake: feed::Wake::OnCommit(log.commits()),
                host: feed::FeedHost::Serve,
            };
            let names: Vec<String> = sinks.iter().map(|s| s.name.clone()).collect();
            stele_runtime::errln!("stele serve: feeding the log to {}", names.join(", "));
            Some(
                std::thread::Builder::new()
                    .name("feed".into())
                    .spawn(move || feed::run(sinks, &opts))
                    .map_err(|e| ServerError::Start(format!("starting the feed: {e}")))?,
            )
        };
        Ok(Some(Self {
            stop,
            runner,
            metrics: server,
        }))
    }

    /// Stop every sink (each finishes its current attempt, its cursor
    /// saved) and the metrics endpoint; report how each sink ended. The
    /// feed's hold on the log is released when this returns.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.runner.take() {
            match r.join() {
                Ok(results) => {
                    for (name, r) in results {
                        match r {
                            Ok(s) => stele_runtime::errln!(
                                "stele serve: sink {name}: delivered {} entries and {} findings; cursor {}",
                                s.entries,
                                s.findings,
                                s.cursor
                            ),
                            Err(e) => stele_runtime::errln!("stele serve: {e}"),
                        }
                    }
                }
                Err(_) => stele_runtime::errln!("stele serve: the feed's thread panicked"),
            }
        }
        if let Some(m) = self.metrics.take() {
            m.join();
        }
    }
}
