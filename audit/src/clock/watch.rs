//! Turning clock readings into entries: a `clock.state` when the kernel's
//! synchronisation state changes (or is asked for: log open, session
//! start), a `clock.step` when the wall clock moves other than the
//! monotonic clock says it should.
//!
//! A step *back* is any reading earlier than the one before (a slewing
//! clock never does that); a step *forward* is the wall clock gaining more
//! than [`FORWARD_STEP_NS`] on the monotonic clock between two readings.
//! The kernel state is read at most every [`STATE_EVERY_NS`] (a system
//! call and a sysfs read; the writer reads the wall clock once per group
//! commit, not per entry).

use serde_json::{json, Value};

use super::{ts_of_ns, ClockSource, ClockState};
use crate::event::EventKind;

/// A wall clock gaining this much on the monotonic clock is a step.
pub(crate) const FORWARD_STEP_NS: i128 = 1_000_000_000;
/// How often the kernel's synchronisation state is read.
pub(crate) const STATE_EVERY_NS: u64 = 1_000_000_000;

/// Why a `clock.state` entry is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The log was created or opened.
    Open,
    /// A session started.
    Session,
    /// The state differs from the last one logged.
    Change,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Open => "log.open",
            Reason::Session => "session.start",
            Reason::Change => "change",
        }
    }
}

/// What the writer remembers between readings.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClockWatch {
    /// The previous raw wall reading and the monotonic time it was taken.
    last: Option<(i128, u64)>,
    /// The newest entry time of an earlier writer of this log (compared
    /// with the first reading: a restart must not hide a step back).
    before_open: Option<i128>,
    /// The state last logged.
    logged: Option<ClockState>,
    /// Monotonic time of the next state check.
    next_check: u64,
}

/// One reading: the wall time and the entries it calls for.
pub(crate) struct Observation {
    /// The raw wall reading (Unix ns).
    pub wall_ns: i128,
    /// `(kind, data)` of the entries to write: `clock.step` before the
    /// batch (the batch's entries carry the clamped time it explains),
    /// `clock.state` after it.
    pub entries: Vec<(EventKind, Value)>,
}

impl ClockWatch {
    /// A watch for a writer continuing a log whose newest entry carries
    /// `before_open` (Unix ns).
    /// `logged` is the state the log recorded last, when known.
    pub(crate) fn new(before_open: Option<i128>, logged: Option<ClockState>) -> Self {
        Self {
            before_open,
            logged,
            ..Self::default()
        }
    }

    /// Read the clock; `force` asks for a `clock.state` whatever changed;
    /// `last_ts` is the time the writer's newest entry carries (entries
    /// never carry an earlier one).
    pub(crate) fn observe(
        &mut self,
        clock: &dyn ClockSource,
        force: Option<Reason>,
        last_ts: &str,
    ) -> Observation {
        let wall = clock.wall_ns();
        let mono = clock.mono_ns();
        let mut entries = Vec::new();
        let reading = ts_of_ns(wall);
        let carried = if reading.as_str() > last_ts {
            reading.clone()
        } else {
            last_ts.to_string()
        };
        let step = |direction: &str, before: i128, by_ns: i128, across: &str| {
            json!({
                "across": across,
                "before": ts_of_ns(before),
                "by_us": u64::try_from(by_ns / 1000).unwrap_or(u64::MAX).min(crate::leaf::MAX_SAFE_INT),
                "carried": carried,
                "direction": direction,
                "reading": reading,
            })
        };
        match (self.last, self.before_open.take()) {
            (Some((prev, prev_mono)), _) => {
                let expected = prev + i128::from(mono.saturating_sub(prev_mono));
                if wall < prev {
                    entries.push((
                        EventKind::ClockStep,
                        step("back", prev, expected - wall, "writer"),
                    ));
                } else if wall - expected > FORWARD_STEP_NS {
                    entries.push((
                        EventKind::ClockStep,
                        step("forward", prev, wall - expected, "writer"),
                    ));
                }
            }
            (None, Some(newest)) if wall < newest => {
                entries.push((
                    EventKind::ClockStep,
                    step("back", newest, newest - wall, "restart"),
                ));
            }
            (None, _) => {}
        }
        self.last = Some((wall, mono));
        if force.is_some() || mono >= self.next_check {
            self.next_check = mono.saturating_add(STATE_EVERY_NS);
            let s = clock.state();
            let reason = match force {
                Some(r) => Some(r),
                None if self.logged.as_ref().map(ClockState::key) != Some(s.key()) => {
                    Some(Reason::Change)
                }
                None => None,
            };
            if let Some(r) = reason {
                entries.push((EventKind::ClockState, state_data(&s, r)));
                self.logged = Some(s);
            }
        }
        Observation {
            wall_ns: wall,
            entries,
        }
    }
}

impl ClockWatch {
    /// The `data` of a `clock.state` entry for `reason`, read now and
    /// remembered as the state logged.
    pub(crate) fn state_now(&mut self, clock: &dyn ClockSource, reason: Reason) -> Value {
        let mono = clock.mono_ns();
        self.next_check = mono.saturating_add(STATE_EVERY_NS);
        let s = clock.state();
        let d = state_data(&s, reason);
        self.logged = Some(s);
        d
    }
}

/// The `data` of a `clock.state` entry (and the `clock` member of
/// `log.genesis` and `log.open`).
fn state_data(s: &ClockState, reason: Reason) -> Value {
    let cap = |v: u64| v.min(crate::leaf::MAX_SAFE_INT);
    json!({
        "esterror_us": cap(s.esterror_us),
        "maxerror_us": cap(s.maxerror_us),
        "reason": reason.as_str(),
        "source": s.source,
        "state": s.state,
        "status": s.status,
        "synced": s.synced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Fake {
        wall: Mutex<i128>,
        mono: Mutex<u64>,
        state: Mutex<ClockState>,
    }

    impl ClockSource for Fake {
        fn wall_ns(&self) -> i128 {
            *self.wall.lock().unwrap()
        }
        fn mono_ns(&self) -> u64 {
            *self.mono.lock().unwrap()
        }
        fn state(&self) -> ClockState {
            self.state.lock().unwrap().clone()
        }
    }

    const T0: i128 = 1_780_000_000_000_000_000;

    fn fake() -> Fake {
        Fake {
            wall: Mutex::new(T0),
            mono: Mutex::new(5),
            state: Mutex::new(ClockState {
                source: "tsc".into(),
                synced: true,
                state: "ok",
                status: 0,
                maxerror_us: 10,
                esterror_us: 1,
            }),
        }
    }

    fn advance(f: &Fake, wall: i128, mono: u64) {
        *f.wall.lock().unwrap() += wall;
        *f.mono.lock().unwrap() += mono;
    }

    fn kinds(o: &Observation) -> Vec<EventKind> {
        o.entries.iter().map(|e| e.0).collect()
    }

    #[test]
    fn state_first_then_only_on_change_of_source_sync_or_state() {
        let f = fake();
        let mut w = ClockWatch::new(None, None);
        assert_eq!(kinds(&w.observe(&f, None, "")), [EventKind::ClockState]);
        advance(&f, 2_000_000_000, 2_000_000_000);
        // Error bounds drift: not a change.
        f.state.lock().unwrap().maxerror_us = 99_999;
        assert!(w.observe(&f, None, "").entries.is_empty());
        for change in [
            |s: &mut ClockState| s.synced = false,
            |s: &mut ClockState| s.source = "hpet".into(),
            |s: &mut ClockState| s.state = "error",
        ] {
            change(&mut f.state.lock().unwrap());
            advance(&f, 2_000_000_000, 2_000_000_000);
            let o = w.observe(&f, None, "");
            assert_eq!(kinds(&o), [EventKind::ClockState]);
            assert_eq!(o.entries[0].1["reason"], "change");
        }
        // Forced: logged although unchanged.
        let o = w.observe(&f, Some(Reason::Session), "");
        assert_eq!(o.entries[0].1["reason"], "session.start");
    }

    #[test]
    fn a_change_within_the_check_interval_waits_for_the_next_check() {
        let f = fake();
        let mut w = ClockWatch::new(None, None);
        w.observe(&f, None, "");
        f.state.lock().unwrap().synced = false;
        advance(&f, 1000, 1000);
        assert!(w.observe(&f, None, "").entries.is_empty());
        advance(&f, 1_000_000_000, 1_000_000_000);
        assert_eq!(kinds(&w.observe(&f, None, "")), [EventKind::ClockState]);
    }

    #[test]
    fn any_step_back_is_an_entry_with_both_times_and_the_carried_time() {
        for back in [1_000i128, 1_000_000, 3_600_000_000_000] {
            let f = fake();
            let mut w = ClockWatch::new(None, None);
            let first = w.observe(&f, None, "");
            let last_ts = ts_of_ns(first.wall_ns);
            advance(&f, -back, 10);
            let o = w.observe(&f, None, &last_ts);
            assert_eq!(kinds(&o), [EventKind::ClockStep], "back {back}");
            let d = &o.entries[0].1;
            assert_eq!(d["direction"], "back");
            assert_eq!(d["before"], ts_of_ns(T0));
            assert_eq!(d["reading"], ts_of_ns(T0 - back));
            assert_eq!(d["carried"], last_ts, "entries keep the last time");
            assert_eq!(d["by_us"], ((back + 10) / 1000) as u64);
        }
    }

    #[test]
    fn forward_steps_beyond_a_second_are_entries_slew_is_not() {
        let f = fake();
        let mut w = ClockWatch::new(None, None);
        w.observe(&f, None, "");
        // Wall and monotonic agree within a second: nothing.
        advance(&f, 5_900_000_000, 5_000_000_000);
        assert!(w.observe(&f, None, "").entries.is_empty());
        advance(&f, 3_600_000_000_000, 1_000);
        let o = w.observe(&f, None, "");
        assert_eq!(kinds(&o), [EventKind::ClockStep]);
        assert_eq!(o.entries[0].1["direction"], "forward");
    }

    #[test]
    fn a_restart_with_the_clock_behind_the_logs_newest_entry_is_a_step() {
        let f = fake();
        let mut w = ClockWatch::new(Some(T0 + 60_000_000_000), None);
        let o = w.observe(&f, None, "");
        assert_eq!(kinds(&o), [EventKind::ClockStep, EventKind::ClockState]);
        assert_eq!(o.entries[0].1["across"], "restart");
        assert_eq!(o.entries[0].1["by_us"], 60_000_000u64);
        // Only the first reading is compared with it.
        advance(&f, 10, 10);
        assert!(w.observe(&f, None, "").entries.is_empty());
        let mut ahead = ClockWatch::new(Some(T0 - 1), None);
        assert_eq!(kinds(&ahead.observe(&f, None, "")), [EventKind::ClockState]);
    }
}
