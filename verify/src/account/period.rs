//! The period evidence report (`stele audit report --since … --until …`,
//! docs/review-report.md): for a time window, what an auditor asks beyond
//! the sessions — denials by rule, approvals by approver, payload
//! erasures, when logging started and stopped and where it fell silent,
//! the clock's state and its steps, witness cosignatures and timestamps.
//!
//! [`PeriodBuilder`] is fed every verified entry of the log in order (gaps
//! and the clock need the entries around the window too); the sessions'
//! account is built by [`super::AccountBuilder`] from the entries inside
//! the window, and [`PeriodBuilder::finish`] summarises it.

use std::collections::BTreeMap;

use serde::Serialize;
use stele_audit::clock::{ns_of_ts, ts_of_ns};
use stele_audit::event::EventKind;
use stele_audit::leaf::Leaf;

use super::{SessionAccount, Witnessed};

/// Silence longer than this while the log is open is a gap [default].
pub const DEFAULT_GAP_S: u64 = 120;

/// The period section of the report.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Period {
    /// Start of the window (inclusive), UTC.
    pub since: String,
    /// End of the window (exclusive), UTC.
    pub until: String,
    /// Silence (seconds) counted as a gap.
    pub gap_threshold_s: u64,
    /// Entries in the window.
    pub entries: u64,
    /// Things an auditor must look at, in words (empty: none).
    pub findings: Vec<String>,
    /// Denials grouped by the rule that decided them.
    pub denials_by_rule: Vec<RuleCount>,
    /// Approvals grouped by who answered.
    pub approvals_by_approver: Vec<ApproverCount>,
    /// Approvals asked for and never answered.
    pub approvals_unanswered: u64,
    /// Entries that erased payload bodies (redactions, retention expiries).
    pub erasures: Vec<Erasure>,
    /// Logging started, stopped, or found the log altered.
    pub logging: Vec<LoggingEvent>,
    /// Silences longer than the threshold.
    pub gaps: Vec<Gap>,
    /// The clock's recorded states.
    pub clock_states: Vec<ClockLine>,
    /// The clock's recorded steps.
    pub clock_steps: Vec<ClockStepLine>,
    /// Witness cosignatures of checkpoints in the window.
    pub cosignatures: Vec<Witnessed>,
    /// RFC 3161 timestamps of checkpoints in the window.
    pub timestamps: Vec<StampLine>,
    /// The command that writes the signed export backing this report.
    pub export_command: String,
}

/// Denials by one rule.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RuleCount {
    /// The rule(s) that decided, or "no rule (denied by default)".
    pub rule: String,
    /// How many denials.
    pub count: u64,
    /// The first entries concerned (at most 10).
    pub entries: Vec<u64>,
}

/// Approvals answered by one person.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ApproverCount {
    /// Who answered.
    pub approver: String,
    /// Granted.
    pub granted: u64,
    /// Refused.
    pub denied: u64,
    /// How they answered (terminal, web, …).
    pub methods: Vec<String>,
}

/// An entry that erased payload bodies.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Erasure {
    /// Entry.
    pub seq: u64,
    /// Time.
    pub ts: String,
    /// Its kind (`redaction`, or a retention expiry).
    pub kind: String,
    /// Who.
    pub actor: String,
    /// Payloads erased.
    pub count: u64,
    /// Why (the reason, or the retention class).
    pub reason: String,
}

/// Logging started or stopped.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LoggingEvent {
    /// Entry.
    pub seq: u64,
    /// Time.
    pub ts: String,
    /// `log.genesis`, `log.open`, `log.close` or `audit.alert`.
    pub kind: String,
    /// The host that wrote it.
    pub host: String,
}

/// A silence.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Gap {
    /// Last entry before it (none: the window starts before the log).
    pub after_seq: Option<u64>,
    /// First entry after it (none: nothing after, up to the window's end).
    pub before_seq: Option<u64>,
    /// From (within the window).
    pub from: String,
    /// To (within the window).
    pub to: String,
    /// Length in seconds.
    pub seconds: u64,
    /// `log closed` (logging was stopped, recorded), `writer ended without
    /// log.close`, or `log open, no entry` (heartbeats missing).
    pub state: String,
}

/// A recorded clock state.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClockLine {
    /// Entry that recorded it.
    pub seq: u64,
    /// Time.
    pub ts: String,
    /// Why it was recorded (`log.open`, `session.start`, `change`).
    pub reason: String,
    /// Kernel clock source.
    pub source: String,
    /// Synchronised (NTP/PTP) according to the kernel.
    pub synced: bool,
    /// The kernel's clock state.
    pub state: String,
    /// Maximum error bound, microseconds.
    pub maxerror_us: u64,
}

/// A recorded clock step.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClockStepLine {
    /// Entry.
    pub seq: u64,
    /// `back` or `forward`.
    pub direction: String,
    /// Within a running writer, or across a restart.
    pub across: String,
    /// The reading before.
    pub before: String,
    /// The reading after.
    pub reading: String,
    /// Size of the step, microseconds.
    pub by_us: u64,
    /// The time the entries carried from it on.
    pub carried: String,
}

/// A timestamp token.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct StampLine {
    /// Checkpoint size stamped.
    pub size: u64,
    /// The TSA's time.
    pub gen_time: String,
    /// The TSA.
    pub tsa: String,
    /// Whether its signature was checked here (or only stored).
    pub checked: bool,
}

/// The window and the threshold, parsed.
#[derive(Debug, Clone)]
pub struct Window {
    /// Start, Unix ns (inclusive).
    pub since_ns: i128,
    /// End, Unix ns (exclusive).
    pub until_ns: i128,
    /// Gap threshold.
    pub gap_s: u64,
}

impl Window {
    /// Whether an entry time falls in the window.
    pub fn holds(&self, ts: &str) -> bool {
        ns_of_ts(ts).is_some_and(|t| t >= self.since_ns && t < self.until_ns)
    }
}

/// Collects the period facts while every entry of the log streams past.
#[derive(Debug)]
pub struct PeriodBuilder {
    w: Window,
    p: Period,
    /// (seq, ts ns, kind) of the previous entry.
    prev: Option<(u64, i128, EventKind)>,
}

impl PeriodBuilder {
    /// A builder for `w`.
    pub fn new(w: Window) -> Self {
        let p = Period {
            since: ts_of_ns(w.since_ns),
            until: ts_of_ns(w.until_ns),
            gap_threshold_s: w.gap_s,
            ..Period::default()
        };
        Self { w, p, prev: None }
    }

    /// Add the next entry of the log; true when it is in the window.
    pub fn add(&mut self, l: &Leaf) -> bool {
        let Some(t) = ns_of_ts(&l.ts) else {
            return false;
        };
        if let Some((seq, pt, kind)) = self.prev {
            self.silence(Some(seq), pt, Some(l.seq), t, kind, l.kind);
        } else if t > self.w.since_ns {
            // Nothing before the log's first entry: not a gap of the log.
        }
        self.prev = Some((l.seq, t, l.kind));
        let inside = t >= self.w.since_ns && t < self.w.until_ns;
        if inside {
            self.p.entries += 1;
            self.record(l);
        }
        inside
    }

    /// Record a silence from `a` (at `at`) to `b` (at `bt`), clipped to the
    /// window, when longer than the threshold.
    fn silence(
        &mut self,
        a: Option<u64>,
        at: i128,
        b: Option<u64>,
        bt: i128,
        a_kind: EventKind,
        b_kind: EventKind,
    ) {
        let from = at.max(self.w.since_ns);
        let to = bt.min(self.w.until_ns);
        if to <= from || (to - from) / 1_000_000_000 <= i128::from(self.w.gap_s) {
            return;
        }
        let state = match (a_kind, b_kind) {
            (EventKind::LogClose, _) => "log closed",
            (_, EventKind::LogOpen) => "writer ended without log.close",
            _ => "log open, no entry",
        };
        self.p.gaps.push(Gap {
            after_seq: a,
            before_seq: b,
            from: ts_of_ns(from),
            to: ts_of_ns(to),
            seconds: u64::try_from((to - from) / 1_000_000_000).unwrap_or(0),
            state: state.into(),
        });
    }

    fn record(&mut self, l: &Leaf) {
        let data = l.data.as_ref();
        let s =
            |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).unwrap_or("").to_string();
        let n = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_u64()).unwrap_or(0);
        match l.kind {
            EventKind::LogGenesis
            | EventKind::LogOpen
            | EventKind::LogClose
            | EventKind::AuditAlert => {
                self.p.logging.push(LoggingEvent {
                    seq: l.seq,
                    ts: l.ts.clone(),
                    kind: l.kind.to_string(),
                    host: l.actor.host.clone(),
                });
            }
            EventKind::ClockStep => {
                let d = |k: &str| data.and_then(|d| d.get(k));
                self.p.clock_steps.push(ClockStepLine {
                    seq: l.seq,
                    direction: s(d("direction")),
                    across: s(d("across")),
                    before: s(d("before")),
                    reading: s(d("reading")),
                    by_us: n(d("by_us")),
                    carried: s(d("carried")),
                });
            }
            _ => {}
        }
        let clock = match l.kind {
            EventKind::ClockState => data,
            EventKind::LogGenesis | EventKind::LogOpen | EventKind::SessionStart => {
                data.and_then(|d| d.get("clock"))
            }
            _ => None,
        };
        if let Some(c) = clock {
            self.p.clock_states.push(ClockLine {
                seq: l.seq,
                ts: l.ts.clone(),
                reason: s(c.get("reason")),
                source: s(c.get("source")),
                synced: c.get("synced").and_then(|v| v.as_bool()).unwrap_or(false),
                state: s(c.get("state")),
                maxerror_us: n(c.get("maxerror_us")),
            });
        }
        // Any entry that names erased commitments: `redaction` today, the
        // retention expiry entries alike.
        if let Some(commits) = data
            .and_then(|d| d.get("commits"))
            .and_then(|c| c.as_array())
        {
            let reason = data
                .and_then(|d| d.get("reason").or_else(|| d.get("class")))
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string();
            self.p.erasures.push(Erasure {
                seq: l.seq,
                ts: l.ts.clone(),
                kind: l.kind.to_string(),
                actor: l.actor.principal.clone(),
                count: commits.len() as u64,
                reason,
            });
        }
    }

    /// The period, with the sessions' denials and approvals summarised;
    /// `now` (Unix ns) bounds the silence after the log's last entry.
    pub fn finish(mut self, sessions: &[SessionAccount], now_ns: i128) -> Period {
        if let Some((seq, t, kind)) = self.prev {
            let end = self.w.until_ns.min(now_ns);
            self.silence(Some(seq), t, None, end, kind, EventKind::Heartbeat);
        }
        let mut rules: BTreeMap<String, RuleCount> = BTreeMap::new();
        let mut people: BTreeMap<String, ApproverCount> = BTreeMap::new();
        for sa in sessions {
            for d in &sa.denials {
                let key = rule_key(&d.rule);
                let r = rules.entry(key.clone()).or_insert_with(|| RuleCount {
                    rule: key,
                    ..RuleCount::default()
                });
                r.count += 1;
                if r.entries.len() < 10 {
                    r.entries.push(d.seq);
                }
            }
            for a in &sa.approvals {
                let Some(who) = a.approver.clone() else {
                    self.p.approvals_unanswered += 1;
                    continue;
                };
                let e = people.entry(who.clone()).or_insert_with(|| ApproverCount {
                    approver: who,
                    ..ApproverCount::default()
                });
                match a.answer.as_str() {
                    "granted" => e.granted += 1,
                    _ => e.denied += 1,
                }
                if let Some(m) = &a.method {
                    if !e.methods.contains(m) {
                        e.methods.push(m.clone());
                    }
                }
            }
        }
        let mut by_rule: Vec<RuleCount> = rules.into_values().collect();
        by_rule.sort_by(|a, b| b.count.cmp(&a.count).then(a.rule.cmp(&b.rule)));
        self.p.denials_by_rule = by_rule;
        self.p.approvals_by_approver = people.into_values().collect();
        self.p.findings = findings(&self.p);
        self.p
    }
}

/// The rule text a denial is grouped under.
fn rule_key(r: &super::Rule) -> String {
    if r.policies.is_empty() {
        "no rule (denied by default)".into()
    } else {
        let layer = r
            .layer
            .as_deref()
            .map(|l| format!(" [{l}]"))
            .unwrap_or_default();
        format!("{}{layer}", r.policies.join(", "))
    }
}

/// What needs an auditor's attention, in words.
fn findings(p: &Period) -> Vec<String> {
    let mut f = Vec::new();
    for g in &p.gaps {
        match g.state.as_str() {
            "log closed" => {}
            _ => f.push(format!(
                "logging gap of {} s from {} to {} ({})",
                g.seconds, g.from, g.to, g.state
            )),
        }
    }
    for s in &p.clock_steps {
        f.push(format!(
            "the clock stepped {} by {} µs at entry {} ({} → {}; entries carried {})",
            s.direction, s.by_us, s.seq, s.before, s.reading, s.carried
        ));
    }
    for c in p.clock_states.iter().filter(|c| !c.synced) {
        f.push(format!(
            "the clock was not synchronised at entry {} ({}, source {}, max error {} µs)",
            c.seq, c.ts, c.source, c.maxerror_us
        ));
    }
    for l in p.logging.iter().filter(|l| l.kind == "audit.alert") {
        f.push(format!(
            "the log found itself altered at entry {} ({})",
            l.seq, l.ts
        ));
    }
    f
}
