//! `stele audit feed run|status`: the live SIEM feed (docs/siem.md).

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;

use super::audit::LogArgs;
use crate::feed::metrics::{Exposure, MetricsServer};
use crate::feed::{self, FeedError, FeedMetrics, FeedOptions, OnDemandWriter, RunMode};
use crate::terminal_safe;

/// Arguments of `stele audit feed`.
#[derive(Debug, clap::Args)]
pub struct FeedArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: FeedCommand,
}

/// `stele audit feed` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum FeedCommand {
    /// Follow the log and deliver it, as OCSF events and alert findings, to
    /// every `[[feed]]` sink of the config, until stopped (Ctrl-C, SIGTERM).
    Run {
        #[command(flatten)]
        /// The log.
        log: LogArgs,
        /// Only this sink; repeatable [default: all configured].
        #[arg(long = "sink")]
        sinks: Vec<String>,
        /// Exit once everything the log holds now is delivered.
        #[arg(long)]
        until_caught_up: bool,
        /// Serve Prometheus metrics (lag, deliveries, failures, up) on
        /// `GET http://ADDR/metrics`; a loopback address unless
        /// --metrics-allow-remote.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
        /// Allow --metrics on an address other hosts can reach (the
        /// metrics name the sinks and their endpoints).
        #[arg(long, requires = "metrics")]
        metrics_allow_remote: bool,
    },
    /// Each sink's cursor, the log's size, the lag and the last error.
    Status {
        #[command(flatten)]
        /// The log.
        log: LogArgs,
        /// Print as JSON (docs/json/audit-feed-status.schema.json).
        #[arg(long)]
        json: bool,
    },
}

/// Run `stele audit feed`.
pub fn run(args: FeedArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        FeedCommand::Run {
            log,
            sinks,
            until_caught_up,
            metrics,
            metrics_allow_remote,
        } => {
            let exposure = if metrics_allow_remote {
                Exposure::AnyAddress
            } else {
                Exposure::LoopbackOnly
            };
            let mode = if until_caught_up {
                RunMode::UntilCaughtUp
            } else {
                RunMode::Follow
            };
            run_feed(&log, &sinks, mode, metrics.map(|a| (a, exposure)))
        }
        FeedCommand::Status { log, json } => status(&log, json),
    }
}

fn configured(only: &[String]) -> anyhow::Result<Vec<feed::config::SinkConfig>> {
    let all = feed::config::sinks_from_config()?;
    if all.is_empty() {
        anyhow::bail!(
            "no [[feed]] sink is configured (managed config or {}); see docs/siem.md",
            crate::config::user_path()
                .map(|p| terminal_safe::path(&p))
                .unwrap_or_else(|| "the user config".into())
        );
    }
    if let Some(n) = only.iter().find(|n| !all.iter().any(|s| &s.name == *n)) {
        anyhow::bail!("no [[feed]] sink is named {:?}", terminal_safe::line(n));
    }
    Ok(all
        .into_iter()
        .filter(|s| only.is_empty() || only.contains(&s.name))
        .collect())
}

fn run_feed(
    log: &LogArgs,
    only: &[String],
    mode: RunMode,
    metrics_at: Option<(std::net::SocketAddr, Exposure)>,
) -> anyhow::Result<ExitCode> {
    let (db, key) = (log.db(), log.key());
    super::state::existing_log(&db)?;
    let sinks = configured(only)?;
    let signer = super::state::signing_key(&key).map_err(|e| {
        e.context(
            "the feed checks checkpoints with the log's key and logs its start and backlog alerts",
        )
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let metrics = Arc::new(FeedMetrics::new());
    let server_stop = Arc::new(AtomicBool::new(false));
    let server = match metrics_at {
        Some((addr, exposure)) => {
            let s = MetricsServer::start(addr, exposure, metrics.clone(), server_stop.clone())
                .map_err(|e| anyhow::anyhow!("--metrics: {e}"))?;
            crate::errln!("stele: metrics on http://{}/metrics", s.addr);
            Some(s)
        }
        None => None,
    };
    watch_signals(stop.clone())?;
    let opts = FeedOptions {
        db: db.clone(),
        verifier: signer.verifier(),
        writer: Arc::new(OnDemandWriter::new(db.clone(), signer)),
        stop,
        mode,
        metrics,
        // The writer is another process: poll.
        wake: feed::Wake::Poll,
        host: feed::FeedHost::AuditFeedRun,
    };
    crate::errln!(
        "stele: feeding {} to {}",
        terminal_safe::path(&db),
        sinks
            .iter()
            .map(|s| format!(
                "{} ({} {})",
                s.name,
                s.kind.as_str(),
                feed::runner::endpoint_text(s)
            ))
            .map(|t| terminal_safe::line(&t))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let results = feed::run(sinks, &opts);
    server_stop.store(true, Ordering::Relaxed);
    if let Some(s) = server {
        s.join();
    }
    let mut code = ExitCode::SUCCESS;
    let mut first_error = None;
    for (name, r) in results {
        match r {
            Ok(s) => crate::errln!(
                "stele: sink {}: delivered {} entries and {} findings; cursor {}",
                terminal_safe::line(&name),
                s.entries,
                s.findings,
                s.cursor
            ),
            Err(e @ FeedError::Tampered { .. }) => {
                crate::errln!("stele: {}", terminal_safe::line(&e.to_string()));
                code = ExitCode::from(super::exit::INTEGRITY);
            }
            Err(e) => {
                crate::errln!("stele: {}", terminal_safe::line(&e.to_string()));
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if code == ExitCode::SUCCESS => Err(e.into()),
        _ => Ok(code),
    }
}

/// Ctrl-C and SIGTERM set `stop` (each sink ends after its current attempt).
fn watch_signals(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("feed-signals".into())
        .spawn(move || {
            rt.block_on(async {
                use tokio::signal::unix::{signal, SignalKind};
                let Ok(mut term) = signal(SignalKind::terminate()) else {
                    return;
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            });
            stop.store(true, Ordering::Relaxed);
        })
        .context("starting the signal watcher")?;
    Ok(())
}

fn status(log: &LogArgs, json: bool) -> anyhow::Result<ExitCode> {
    let db = log.db();
    super::state::existing_log(&db)?;
    let sinks = feed::config::sinks_from_config()?;
    let s = feed::status::status(&db, &sinks)?;
    if json {
        super::json::pretty(&s)?;
        return Ok(ExitCode::SUCCESS);
    }
    let f = |t: &str| terminal_safe::line(t);
    crate::outln!(
        "log {} ({}): {} entries",
        terminal_safe::path(&db),
        f(&s.origin),
        s.size
    );
    if s.sinks.is_empty() {
        crate::outln!("no [[feed]] sink configured and no cursor found (docs/siem.md)");
    }
    for k in &s.sinks {
        crate::outln!(
            "{} ({} {}){}: cursor {}, lag {} entries / {} s{}",
            f(&k.name),
            f(&k.kind),
            f(&k.endpoint),
            if k.configured {
                ""
            } else {
                " [not configured]"
            },
            k.cursor,
            k.lag_entries,
            k.lag_seconds,
            if k.backlog_alerted {
                ", over its backlog limit (alert logged)"
            } else {
                ""
            }
        );
        if let Some(d) = &k.delivered_at {
            crate::outln!("  last delivery: {}", f(d));
        }
        if let Some(e) = &k.last_error {
            crate::outln!(
                "  last error ({} attempts, {}): {}",
                k.failed_attempts,
                f(k.last_error_at.as_deref().unwrap_or("")),
                f(e)
            );
        }
        if let Some(t) = &k.tampered {
            crate::outln!("  STOPPED: the log failed verification: {}", f(t));
        }
    }
    Ok(ExitCode::SUCCESS)
}
