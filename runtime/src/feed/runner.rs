//! Following the log for each sink: verify what is new against the signed
//! checkpoint, deliver it in batches, advance the durable cursor only after
//! the receiver acknowledged, retry failures with backoff (never skipping),
//! and log an `audit.alert` once each time the backlog crosses its limit.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stele_attest::NoteVerifier;
use stele_audit::EventKind;

use super::alerts;
use super::config::SinkConfig;
use super::cursor::{self, CursorState, LastError};
use super::metrics::{FeedMetrics, SinkMetrics, SinkState};
use super::record::{FeedRecord, RecordKind};
use super::sink::{self, Sink};
use super::source::{LogSource, Unverified};
use super::wake::{FeedHost, Wake};
use super::writer::LogWriter;
use super::{now_rfc3339, FeedError};

/// How long the feed runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Follow the log until stopped.
    Follow,
    /// Stop once every entry the log held at start is delivered.
    UntilCaughtUp,
}

/// What every sink of one feed shares.
#[derive(Clone)]
pub struct FeedOptions {
    /// The log.
    pub db: PathBuf,
    /// A key of the log the feed trusts (any of its keys: each checkpoint
    /// is checked against the key the log's rotations give its size).
    pub verifier: NoteVerifier,
    /// Where the feed's own entries go.
    pub writer: Arc<dyn LogWriter>,
    /// Set to stop every sink (after its current attempt).
    pub stop: Arc<AtomicBool>,
    /// Follow or catch up.
    pub mode: RunMode,
    /// Where each sink's lag and deliveries are counted (served by
    /// [`super::metrics::MetricsServer`] when asked for).
    pub metrics: Arc<FeedMetrics>,
    /// How a caught-up sink learns the log grew.
    pub wake: Wake,
    /// Who runs the feed (named in its entries).
    pub host: FeedHost,
}

impl std::fmt::Debug for FeedOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedOptions")
            .field("db", &self.db)
            .field("mode", &self.mode)
            .field("wake", &self.wake)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// What one sink did in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSummary {
    /// Entries delivered in this run.
    pub entries: u64,
    /// Findings delivered in this run.
    pub findings: u64,
    /// The cursor at the end.
    pub cursor: u64,
}

/// Longest wait between two attempts of a failing delivery.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Least time between two attempts to write a pending entry of the feed's own.
const WRITE_RETRY: Duration = Duration::from_secs(30);

/// Run every sink on its own thread; the feed's start is recorded in the
/// log (`audit.read`) as soon as the log's writer lock can be had. Returns
/// each sink's result when all have stopped.
pub fn run(
    sinks: Vec<SinkConfig>,
    opts: &FeedOptions,
) -> Vec<(String, Result<SinkSummary, FeedError>)> {
    let described: Vec<serde_json::Value> = sinks
        .iter()
        .map(|s| serde_json::json!({"name": s.name, "kind": s.kind.as_str(), "endpoint": endpoint_text(s)}))
        .collect();
    let mut threads = Vec::new();
    for cfg in sinks {
        let o = opts.clone();
        let name = cfg.name.clone();
        let t = std::thread::Builder::new()
            .name(format!("feed-{name}"))
            .spawn(move || {
                let m = o.metrics.sink(&cfg.name);
                m.state(SinkState::Running);
                let r = SinkRunner::start(cfg, &o, m.clone()).and_then(|mut r| r.run());
                if let Err(FeedError::Tampered { .. }) = &r {
                    m.state(SinkState::Stopped);
                }
                r
            });
        threads.push((name, t));
    }
    // Record the feed's start (R7: reads of the log are logged).
    let what = serde_json::json!({"command": opts.host.command(), "sinks": described});
    let mut next = Instant::now();
    let mut recorded = false;
    let mut warned = false;
    loop {
        let running = threads
            .iter()
            .any(|(_, t)| t.as_ref().is_ok_and(|h| !h.is_finished()));
        if !running {
            break;
        }
        if !recorded && Instant::now() >= next {
            match opts.writer.append(EventKind::AuditRead, what.clone()) {
                Ok(_) => recorded = true,
                Err(e) => {
                    if !warned {
                        tracing::warn!(
                            "feed: its start is not recorded yet ({e}); trying again every 30 s"
                        );
                        warned = true;
                    }
                    next = Instant::now() + WRITE_RETRY;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    threads
        .into_iter()
        .map(|(name, t)| {
            let r = match t {
                Ok(h) => h.join().unwrap_or_else(|_| {
                    Err(FeedError::Read(format!("sink {name}: its thread panicked")))
                }),
                Err(e) => Err(FeedError::Read(format!("sink {name}: {e}"))),
            };
            (name, r)
        })
        .collect()
}

/// The endpoint as status and the log show it.
pub fn endpoint_text(s: &SinkConfig) -> String {
    match &s.endpoint {
        super::config::Endpoint::Syslog { host, port } => format!("{host}:{port}"),
        super::config::Endpoint::Http(u) => u.clone(),
    }
}

struct SinkRunner {
    cfg: SinkConfig,
    opts: FeedOptions,
    source: LogSource,
    sink: Box<dyn Sink>,
    path: PathBuf,
    state: CursorState,
    _lock: cursor::SinkLock,
    next_alert_try: Instant,
    summary: SinkSummary,
    metrics: SinkMetrics,
    /// The time (epoch ms) of the entry at `.0`, the cursor it was read at.
    oldest: Option<(u64, i64)>,
}

impl SinkRunner {
    fn start(cfg: SinkConfig, opts: &FeedOptions, metrics: SinkMetrics) -> Result<Self, FeedError> {
        let lock = cursor::lock(&opts.db, &cfg.name)?;
        let source = LogSource::open(&opts.db, &opts.verifier)?;
        let path = cursor::path(&opts.db, &cfg.name);
        let endpoint = endpoint_text(&cfg);
        let mut state = match cursor::load(&path)? {
            Some(s) => s,
            None => CursorState::new(source.origin(), cfg.kind.as_str(), &endpoint),
        };
        let mismatch = |why: String| FeedError::Mismatch {
            sink: cfg.name.clone(),
            why: format!("{why} (cursor {})", path.display()),
        };
        if state.origin != source.origin() {
            return Err(mismatch(format!(
                "the cursor is of log {:?}, not of {:?}",
                state.origin,
                source.origin()
            )));
        }
        let size = source.size()?;
        if state.cursor > size || state.verified.size > size {
            return Err(mismatch(format!(
                "the cursor is at {} but the log has {size} entries: rolled back or replaced",
                state.cursor.max(state.verified.size)
            )));
        }
        if state.cursor > 0 {
            let (h, _) = source.entry_meta(state.cursor - 1)?;
            if state.last_leaf_hash.as_deref() != Some(hex::encode(h).as_str()) {
                return Err(mismatch(format!(
                    "entry {} is not the one delivered: the log was replaced",
                    state.cursor - 1
                )));
            }
        }
        if let Some(why) = &state.tampered {
            return Err(FeedError::Tampered {
                sink: cfg.name.clone(),
                why: format!("{why} (found earlier; the cursor keeps the sink stopped)"),
            });
        }
        state.kind = cfg.kind.as_str().to_string();
        state.endpoint = endpoint;
        let sink = sink::build(&cfg)?;
        Ok(Self {
            summary: SinkSummary {
                entries: 0,
                findings: 0,
                cursor: state.cursor,
            },
            cfg,
            opts: opts.clone(),
            source,
            sink,
            path,
            state,
            _lock: lock,
            next_alert_try: Instant::now(),
            metrics,
            oldest: None,
        })
    }

    fn stopped(&self) -> bool {
        self.opts.stop.load(Ordering::Relaxed)
    }

    fn save(&self) -> Result<(), FeedError> {
        cursor::store(&self.path, &self.state)
    }

    fn run(&mut self) -> Result<SinkSummary, FeedError> {
        let target = match self.opts.mode {
            RunMode::UntilCaughtUp => Some(self.source.size()?),
            RunMode::Follow => None,
        };
        self.save()?;
        while !self.stopped() {
            let size = self.source.size()?;
            self.check_backlog(size)?;
            if target.is_some_and(|t| self.state.cursor >= t) {
                break;
            }
            if self.state.verified.size < size {
                self.verify_to_head()?;
            }
            let end = self.state.verified.size;
            if self.state.cursor >= end {
                self.opts.wake.wait(size, self.cfg.poll, &self.opts.stop);
                continue;
            }
            self.ship(end)?;
        }
        self.summary.cursor = self.state.cursor;
        Ok(self.summary.clone())
    }

    /// Verify the entries past the verified prefix against the newest
    /// signed checkpoint; a failure is delivered as a finding and stops
    /// the sink.
    fn verify_to_head(&mut self) -> Result<(), FeedError> {
        let Some((size, note)) = self.source.newest_checkpoint()? else {
            return Ok(());
        };
        if size <= self.state.verified.size {
            return Ok(());
        }
        match self.source.verify(&self.state.verified, size, &note)? {
            Ok(prefix) => {
                self.state.verified = prefix;
                Ok(())
            }
            Err(u) => self.report_tamper(u),
        }
    }

    fn report_tamper(&mut self, u: Unverified) -> Result<(), FeedError> {
        let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
        let f = alerts::verification_failure(self.source.origin(), u.from, u.to, now_ms, &u.why);
        let rec = FeedRecord {
            seq: u.from,
            leaf_hash: [0; 32],
            kind: RecordKind::Finding(f.rule),
            ts: now_rfc3339(),
            time_ms: now_ms,
            json: f.json,
        };
        tracing::error!(sink = %self.cfg.name, "feed: the log failed verification: {}", u.why);
        if self.deliver_retrying(&[rec])? {
            self.summary.findings += 1;
        }
        self.state.tampered = Some(u.why.clone());
        self.save()?;
        Err(FeedError::Tampered {
            sink: self.cfg.name.clone(),
            why: u.why,
        })
    }

    /// Deliver `[cursor, end)` batch by batch.
    fn ship(&mut self, end: u64) -> Result<(), FeedError> {
        let mut records = Vec::new();
        while self.state.cursor < end && !self.stopped() {
            let from = self.state.cursor;
            let to = (from + self.cfg.batch as u64).min(end);
            let mut detectors = self.state.detectors.clone();
            records.clear();
            let last =
                self.source
                    .read(from, to, &self.cfg.alerts, &mut detectors, &mut records)?;
            if !self.deliver_retrying(&records)? {
                return Ok(());
            }
            self.state.cursor = to;
            self.state.detectors = detectors;
            self.state.last_leaf_hash = last.map(hex::encode);
            self.state.delivered_at = Some(now_rfc3339());
            self.state.last_error = None;
            self.save()?;
            let findings = records
                .iter()
                .filter(|r| matches!(r.kind, RecordKind::Finding(_)))
                .count() as u64;
            self.summary.findings += findings;
            self.summary.entries += to - from;
            self.metrics.delivered(to - from, findings);
            let size = self.source.size()?;
            self.check_backlog(size)?;
        }
        Ok(())
    }

    /// Deliver one batch, retrying with backoff until it is acknowledged
    /// (`true`) or the feed is stopped (`false`). Never skips it.
    fn deliver_retrying(&mut self, records: &[FeedRecord]) -> Result<bool, FeedError> {
        let mut backoff = Duration::from_millis(250);
        let mut attempts = 0u64;
        loop {
            match self.sink.deliver(records, self.source.origin()) {
                Ok(()) => return Ok(true),
                Err(e) => {
                    attempts += 1;
                    self.metrics.failed();
                    if attempts == 1 {
                        tracing::warn!(sink = %self.cfg.name, "feed: delivery failed, retrying: {e}");
                    }
                    self.state.last_error = Some(LastError {
                        at: now_rfc3339(),
                        message: e.0,
                        attempts,
                    });
                    self.save()?;
                    let size = self.source.size()?;
                    self.check_backlog(size)?;
                    let until = Instant::now() + backoff;
                    let mut refreshed = Instant::now();
                    while Instant::now() < until {
                        if self.stopped() {
                            return Ok(false);
                        }
                        // The lag keeps growing while the receiver is down.
                        if refreshed.elapsed() >= Duration::from_millis(500) {
                            let size = self.source.size()?;
                            self.update_position(size)?;
                            refreshed = Instant::now();
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Publish the size, cursor and age of the oldest undelivered entry.
    fn update_position(&mut self, size: u64) -> Result<(), FeedError> {
        let cursor = self.state.cursor;
        let oldest = if cursor >= size {
            None
        } else {
            match self.oldest {
                Some((c, ms)) if c == cursor => Some(ms),
                _ => {
                    let (_, ts) = self.source.entry_meta(cursor)?;
                    let ms = super::alerts::epoch_ms(&ts).unwrap_or(0);
                    self.oldest = Some((cursor, ms));
                    Some(ms)
                }
            }
        };
        self.metrics.position(size, cursor, oldest);
        Ok(())
    }

    /// Log an `audit.alert` when the backlog goes over its limit (once per
    /// crossing: again only after it came back to the limit or below).
    fn check_backlog(&mut self, size: u64) -> Result<(), FeedError> {
        self.update_position(size)?;
        let lag = size.saturating_sub(self.state.cursor);
        let limit = self.cfg.backlog_limit;
        if lag <= limit {
            if self.state.backlog_alerted {
                self.state.backlog_alerted = false;
                self.save()?;
            }
            return Ok(());
        }
        if self.state.backlog_alerted || Instant::now() < self.next_alert_try {
            return Ok(());
        }
        let why = self
            .state
            .last_error
            .as_ref()
            .map(|e| format!("; last error: {}", e.message))
            .unwrap_or_default();
        let data = serde_json::json!({
            "check": "feed.backlog",
            "reason": format!(
                "SIEM feed {:?} ({} {}, run by stele {}) is {lag} entries behind, over its limit of {limit}{why}",
                self.cfg.name, self.cfg.kind.as_str(), endpoint_text(&self.cfg), self.opts.host.command()
            ),
            "size": size,
            "index": self.state.cursor,
        });
        match self.opts.writer.append(EventKind::AuditAlert, data) {
            Ok(seq) => {
                tracing::warn!(sink = %self.cfg.name, "feed: backlog of {lag} entries over its limit {limit}: audit.alert entry {seq}");
                self.state.backlog_alerted = true;
                self.save()?;
            }
            Err(e) => {
                tracing::warn!(sink = %self.cfg.name, "feed: could not log the backlog alert yet: {e}");
                self.next_alert_try = Instant::now() + WRITE_RETRY;
            }
        }
        Ok(())
    }
}
