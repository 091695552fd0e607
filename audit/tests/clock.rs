#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The clock in the log (docs/audit-format.md §3, `clock.state` and
//! `clock.step`), driven through a fake clock source behind the writer's
//! `ClockSource` hook — never by changing this machine's clock:
//!
//! - the state is logged when logging starts (new log, reopened log), in
//!   every session start (its own sub-chain: session exports carry it) and
//!   when source or synchronisation change;
//! - a wall clock that steps back, by a microsecond or by an hour, within
//!   a writer or across a restart, is an entry with both readings; the
//!   entries after it keep their order and a time no earlier than the one
//!   before, and the whole log still verifies;
//! - a forward step beyond the monotonic clock is an entry too;
//! - the real kernel state reaches the log unchanged.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use stele_audit::clock::{ClockHandle, ClockSource, ClockState, SystemClock};
use stele_audit::leaf::Leaf;
use stele_audit::{AuditLog, Event, EventKind, LogOptions, Store};

/// A wall clock that stands still unless a test moves it (so a step of a
/// microsecond is a step), a real monotonic clock, a kernel state the test
/// sets.
struct Fake {
    real: SystemClock,
    start: i128,
    /// Added to the wall clock's start (ns).
    offset: Mutex<i128>,
    state: Mutex<ClockState>,
}

impl ClockSource for Fake {
    fn wall_ns(&self) -> i128 {
        self.start + *self.offset.lock().unwrap()
    }
    fn mono_ns(&self) -> u64 {
        self.real.mono_ns()
    }
    fn state(&self) -> ClockState {
        self.state.lock().unwrap().clone()
    }
}

fn fake() -> Arc<Fake> {
    Arc::new(Fake {
        real: SystemClock::new(),
        start: SystemClock::new().wall_ns(),
        offset: Mutex::new(0),
        state: Mutex::new(ClockState {
            source: "tsc".into(),
            synced: true,
            state: "ok",
            status: 0x2001,
            maxerror_us: 1500,
            esterror_us: 12,
        }),
    })
}

fn opts(clock: &Arc<Fake>) -> LogOptions {
    LogOptions {
        clock: ClockHandle(clock.clone()),
        ..Fixture::opts()
    }
}

fn leaves(f: &Fixture) -> Vec<Leaf> {
    let store = Store::open(&f.db).unwrap();
    let mut out = Vec::new();
    for seq in 0..store.size().unwrap() {
        out.push(Leaf::parse_canonical(&store.entry(seq).unwrap().leaf).unwrap());
    }
    out
}

fn of_kind(ls: &[Leaf], k: EventKind) -> Vec<&Leaf> {
    ls.iter().filter(|l| l.kind == k).collect()
}

fn data(l: &Leaf) -> &serde_json::Value {
    l.data.as_ref().unwrap()
}

fn verifies(f: &Fixture) {
    stele_audit::verify::verify_db(&f.db, &f.verifier(), None)
        .unwrap_or_else(|e| panic!("the log must verify: {e}"));
}

fn heartbeat(log: &AuditLog) {
    log.append_blocking(Event::new(EventKind::PolicyLoad, actor()))
        .unwrap();
}

fn step_back(clock: &Fake, ns: i128) {
    *clock.offset.lock().unwrap() -= ns;
}

/// The clock state recorded by an entry: `clock.state` data, or the
/// `clock` member of `log.genesis` / `log.open`.
fn clock_of(l: &Leaf) -> Option<&serde_json::Value> {
    match l.kind {
        EventKind::ClockState => l.data.as_ref(),
        EventKind::LogGenesis | EventKind::LogOpen | EventKind::SessionStart => {
            l.data.as_ref()?.get("clock")
        }
        _ => None,
    }
}

#[test]
fn logging_starts_with_the_clock_state_and_each_session_logs_it() {
    let f = Fixture::new();
    let clock = fake();
    let log = AuditLog::create(&f.db, f.signer.clone(), opts(&clock)).unwrap();
    sample_session(&log, "s1");
    sample_session(&log, "s2");
    log.close().unwrap();
    let log = AuditLog::open(&f.db, f.signer.clone(), opts(&clock)).unwrap();
    log.close().unwrap();
    let ls = leaves(&f);
    let states: Vec<(EventKind, &serde_json::Value)> = ls
        .iter()
        .filter_map(|l| clock_of(l).map(|c| (l.kind, c)))
        .collect();
    let reasons: Vec<_> = states
        .iter()
        .map(|(k, d)| (*k, d["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        reasons,
        [
            (EventKind::LogGenesis, "log.open"),
            (EventKind::SessionStart, "session.start"),
            (EventKind::SessionStart, "session.start"),
            (EventKind::LogOpen, "log.open"),
        ],
        "{reasons:?}"
    );
    let d = states[0].1;
    assert_eq!(d["source"], "tsc");
    assert_eq!(d["synced"], true);
    assert_eq!(d["status"], 0x2001);
    assert_eq!(d["maxerror_us"], 1500);
    assert_eq!(d["esterror_us"], 12);
    // No entry of its own: nothing but the clock changed the log's shape.
    assert!(of_kind(&ls, EventKind::ClockState).is_empty());
    verifies(&f);
}

#[test]
fn a_caller_cannot_write_the_clock_of_a_session_start() {
    let f = Fixture::new();
    let log = f.create();
    let forged = serde_json::json!({"clock": {"esterror_us": 0, "maxerror_us": 0,
        "reason": "session.start", "source": "gps", "state": "ok", "status": 0, "synced": true}});
    let e = log
        .append_blocking(
            Event::new(EventKind::SessionStart, actor())
                .in_session("s")
                .with_data(forged),
        )
        .unwrap_err();
    assert!(e.to_string().contains("written by the log"), "{e}");
    log.close().unwrap();
    verifies(&f);
}

#[test]
fn a_change_of_synchronisation_or_source_is_logged_once() {
    let f = Fixture::new();
    let clock = fake();
    let log = AuditLog::create(&f.db, f.signer.clone(), opts(&clock)).unwrap();
    heartbeat(&log);
    clock.state.lock().unwrap().synced = false;
    // The kernel state is read at most once a second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    heartbeat(&log);
    heartbeat(&log);
    clock.state.lock().unwrap().source = "hpet".into();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    heartbeat(&log);
    log.close().unwrap();
    let ls = leaves(&f);
    let changes: Vec<_> = of_kind(&ls, EventKind::ClockState)
        .into_iter()
        .filter(|l| data(l)["reason"] == "change")
        .map(|l| (data(l)["synced"].clone(), data(l)["source"].clone()))
        .collect();
    assert_eq!(
        changes,
        [
            (serde_json::json!(false), serde_json::json!("tsc")),
            (serde_json::json!(false), serde_json::json!("hpet"))
        ]
    );
    verifies(&f);
}

#[test]
fn every_step_back_is_logged_and_time_never_goes_back_within_a_writer() {
    for back_ns in [1_000i128, 250_000_000, 3_600_000_000_000] {
        let f = Fixture::new();
        let clock = fake();
        let log = AuditLog::create(&f.db, f.signer.clone(), opts(&clock)).unwrap();
        let before = log
            .append_blocking(Event::new(EventKind::PolicyLoad, actor()))
            .unwrap();
        step_back(&clock, back_ns);
        let after = log
            .append_blocking(Event::new(EventKind::PolicyLoad, actor()))
            .unwrap();
        heartbeat(&log);
        log.close().unwrap();
        let ls = leaves(&f);
        let steps = of_kind(&ls, EventKind::ClockStep);
        assert_eq!(steps.len(), 1, "back {back_ns} ns: {steps:?}");
        let s = steps[0];
        // Before the entry whose time it explains; seq order kept.
        assert_eq!(s.seq + 1, after.seq, "back {back_ns}");
        let d = data(s);
        assert_eq!(d["direction"], "back");
        assert_eq!(d["across"], "writer");
        assert!(d["by_us"].as_u64().unwrap() >= (back_ns / 1000) as u64);
        assert!(
            d["reading"].as_str().unwrap() < d["before"].as_str().unwrap(),
            "{d}"
        );
        // The entry after carries the last time, not the reading.
        let prev = &ls[before.seq as usize];
        assert_eq!(d["carried"].as_str().unwrap(), ls[after.seq as usize].ts);
        assert!(ls[after.seq as usize].ts >= prev.ts);
        for w in ls.windows(2) {
            if w[0].boot == w[1].boot {
                assert!(w[1].ts >= w[0].ts, "time went back at {}", w[1].seq);
            }
        }
        verifies(&f);
    }
}

#[test]
fn a_reopened_log_whose_clock_reads_earlier_than_its_newest_entry_says_so() {
    let f = Fixture::new();
    let clock = fake();
    let log = AuditLog::create(&f.db, f.signer.clone(), opts(&clock)).unwrap();
    heartbeat(&log);
    log.close().unwrap();
    step_back(&clock, 7_200_000_000_000);
    let log = AuditLog::open(&f.db, f.signer.clone(), opts(&clock)).unwrap();
    heartbeat(&log);
    log.close().unwrap();
    let ls = leaves(&f);
    let steps = of_kind(&ls, EventKind::ClockStep);
    assert_eq!(steps.len(), 1, "{steps:?}");
    let d = data(steps[0]);
    assert_eq!(d["across"], "restart");
    // Leaf times are whole microseconds.
    assert!(d["by_us"].as_u64().unwrap() >= 7_199_999_999, "{d}");
    let open = ls
        .iter()
        .position(|l| l.kind == EventKind::LogOpen)
        .unwrap();
    assert_eq!(
        steps[0].seq as usize + 1,
        open,
        "the step precedes log.open"
    );
    verifies(&f);
}

#[test]
fn a_forward_jump_is_logged_and_ordinary_time_is_not() {
    let f = Fixture::new();
    let clock = fake();
    let log = AuditLog::create(&f.db, f.signer.clone(), opts(&clock)).unwrap();
    for _ in 0..20 {
        heartbeat(&log);
    }
    assert!(of_kind(&leaves(&f), EventKind::ClockStep).is_empty());
    *clock.offset.lock().unwrap() += 86_400_000_000_000;
    heartbeat(&log);
    log.close().unwrap();
    let ls = leaves(&f);
    let steps = of_kind(&ls, EventKind::ClockStep);
    assert_eq!(steps.len(), 1);
    assert_eq!(data(steps[0])["direction"], "forward");
    verifies(&f);
}

#[test]
fn the_machines_own_clock_state_is_logged_as_the_kernel_reports_it() {
    let f = Fixture::new();
    let log = f.create();
    log.close().unwrap();
    let ls = leaves(&f);
    let d = clock_of(&ls[0]).unwrap().clone();
    let k = SystemClock::new().state();
    assert_eq!(d["source"], k.source.as_str());
    assert_eq!(d["synced"], k.synced);
    assert_eq!(d["state"], k.state);
    verifies(&f);
}
