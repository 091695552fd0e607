//! CPU time of the calling thread, for verification figures that mean "one
//! core" even on a machine busy with other work (wall time would not).

/// Nanoseconds the calling thread has run on a CPU
/// (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`, the clock made for this; the
/// scheduler statistics in `/proc` are sampled and read 0 for a thread that
/// had just run under load); `None` where the clock is unavailable, and
/// callers then report wall time instead.
pub fn thread_cpu_ns() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// CPU seconds since `start` (a [`thread_cpu_ns`] reading on this thread),
/// or `wall_seconds` when either reading is missing.
pub fn cpu_seconds_since(start: Option<u64>, wall_seconds: f64) -> f64 {
    thread_cpu_ns()
        .zip(start)
        .map(|(now, then)| now.saturating_sub(then) as f64 / 1e9)
        .unwrap_or(wall_seconds)
}

/// A rate worth printing: `count / seconds`, or `None` when the measured
/// time is too short for the figure to mean anything (a small log verifies
/// in microseconds, and "62000000000 entries/s" is noise, not a speed).
pub fn meaningful_rate(count: u64, seconds: f64) -> Option<f64> {
    /// Below this, timer resolution and start-up costs dominate.
    const MIN_SECONDS: f64 = 0.05;
    /// Below this many items a rate says nothing about throughput.
    const MIN_COUNT: u64 = 10_000;
    (seconds >= MIN_SECONDS && count >= MIN_COUNT).then(|| count as f64 / seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Busy the thread until the clock has advanced by `ns`, with a bound
    /// on the work done, so the test means "CPU time is counted" on a
    /// loaded machine as well as an idle one (no timed assertion).
    #[test]
    fn cpu_time_advances_with_work() {
        let start = thread_cpu_ns();
        assert!(start.is_some(), "CLOCK_THREAD_CPUTIME_ID unavailable");
        let mut x = 0u64;
        let mut rounds = 0u64;
        while cpu_seconds_since(start, -1.0) <= 0.0 {
            for i in 0..1_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            rounds += 1;
            assert!(
                rounds < 100_000,
                "no CPU time counted after {rounds} rounds of work"
            );
        }
        std::hint::black_box(x);
        let spent = cpu_seconds_since(start, -1.0);
        assert!(spent > 0.0, "no CPU time counted: {spent}");
    }

    #[test]
    fn rates_of_tiny_runs_are_not_reported() {
        assert_eq!(meaningful_rate(17, 0.000_000_3), None);
        assert_eq!(meaningful_rate(1_000_000, 0.001), None);
        assert_eq!(meaningful_rate(100, 10.0), None);
        assert_eq!(meaningful_rate(1_000_000, 2.0), Some(500_000.0));
    }
}
