//! The real clock: `CLOCK_REALTIME` for entry times, `Instant` for steps,
//! `adjtimex(2)` and sysfs for the synchronisation state.

use std::time::Instant;

use super::{ClockSource, ClockState};

/// Where the kernel names its current clock source.
const CLOCKSOURCE: &str = "/sys/devices/system/clocksource/clocksource0/current_clocksource";

/// The machine's clocks.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// The machine's clocks, monotonic time counted from now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ClockSource for SystemClock {
    fn wall_ns(&self) -> i128 {
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    }

    fn mono_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn state(&self) -> ClockState {
        let source = std::fs::read_to_string(CLOCKSOURCE)
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        // SAFETY: `timex` is plain data; all-zero is a valid value, and
        // `modes = 0` makes adjtimex only read the kernel's state.
        let mut tx: libc::timex = unsafe { std::mem::zeroed() };
        tx.modes = 0;
        // SAFETY: `tx` is a valid, exclusively borrowed timex for the call.
        let rc = unsafe { libc::adjtimex(&mut tx) };
        if rc < 0 {
            return ClockState {
                source,
                synced: false,
                state: "unavailable",
                status: 0,
                maxerror_us: 0,
                esterror_us: 0,
            };
        }
        let status = tx.status as u32;
        let unsync = tx.status & libc::STA_UNSYNC != 0;
        ClockState {
            source,
            synced: !unsync && rc != libc::TIME_ERROR,
            state: state_name(rc),
            status,
            maxerror_us: u64::try_from(tx.maxerror).unwrap_or(0),
            esterror_us: u64::try_from(tx.esterror).unwrap_or(0),
        }
    }
}

/// The name of an `adjtimex` return value.
fn state_name(rc: i32) -> &'static str {
    match rc {
        libc::TIME_OK => "ok",
        libc::TIME_INS => "insert-leap",
        libc::TIME_DEL => "delete-leap",
        libc::TIME_OOP => "leap-in-progress",
        libc::TIME_WAIT => "leap-done",
        libc::TIME_ERROR => "error",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_answers_with_a_source_and_a_named_state() {
        let s = SystemClock::new().state();
        assert_ne!(s.state, "unavailable", "adjtimex failed: {s:?}");
        assert_ne!(s.state, "unknown", "{s:?}");
        assert!(!s.source.is_empty(), "no clock source in sysfs: {s:?}");
        // `synced` follows the flags, whatever this machine's NTP says.
        assert_eq!(
            s.synced,
            s.status & libc::STA_UNSYNC as u32 == 0 && s.state != "error",
            "{s:?}"
        );
    }
}
