//! CPU time of the calling thread, for verification figures that mean "one
//! core" even on a machine busy with other work (wall time would not).

/// Nanoseconds the calling thread has run on a CPU (Linux
/// `/proc/thread-self/schedstat`); `None` where that is unavailable, and
/// callers then report wall time instead.
pub fn thread_cpu_ns() -> Option<u64> {
    let t = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    t.split_whitespace().next()?.parse().ok()
}

/// CPU seconds since `start` (a [`thread_cpu_ns`] reading on this thread),
/// or `wall_seconds` when either reading is missing.
pub fn cpu_seconds_since(start: Option<u64>, wall_seconds: f64) -> f64 {
    thread_cpu_ns()
        .zip(start)
        .map(|(now, then)| now.saturating_sub(then) as f64 / 1e9)
        .unwrap_or(wall_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_advances_with_work() {
        let start = thread_cpu_ns();
        assert!(start.is_some(), "schedstat missing on this Linux host");
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let spent = cpu_seconds_since(start, -1.0);
        assert!(spent > 0.0, "no CPU time counted: {spent}");
    }
}
