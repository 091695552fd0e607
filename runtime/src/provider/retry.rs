//! Retry policy: exponential backoff with jitter and a cap, `Retry-After`, and a patience: how
//! long an outage is ridden out before the run pauses.

use std::time::{Duration, SystemTime};

/// How a provider retries and how long it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = never retry); `u32::MAX`: only patience
    /// bounds them.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubled for each later one.
    pub initial_backoff: Duration,
    /// Upper bound on one computed backoff (a server's `Retry-After` may ask for longer).
    pub max_backoff: Duration,
    /// How long an outage is ridden out, from the first failed attempt: a wait that would end
    /// after it is not started, and the last error is returned (the run pauses, resumable).
    pub patience: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: u32::MAX,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            // A few minutes without connectivity (a train, a flaky uplink, a provider's bad
            // afternoon) should not cost a session.
            patience: Duration::from_secs(300),
        }
    }
}

/// Timeouts of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening the connection.
    pub connect: Duration,
    /// The longest time without progress: for the response headers, then between events that
    /// advance the reply. Keep-alives (`ping` events, SSE comments, empty deltas) are not
    /// progress, so a server that only pings fails after this instead of holding the call.
    pub stall: Duration,
    /// One whole attempt, however steadily it progresses.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            stall: Duration::from_secs(90),
            request: Duration::from_secs(1200),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`, after attempt `attempt` (1-based) failed.
    /// A server's `retry_after` wins over the computed backoff; otherwise the backoff is
    /// `initial * 2^(attempt-1)`, capped, with "equal jitter" (half fixed, half random) so many
    /// clients do not retry in lockstep.
    pub fn wait_before_next(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(ra) = retry_after {
            return ra;
        }
        let exp = attempt.saturating_sub(1).min(20);
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        let half = base / 2;
        half + half.mul_f64(jitter_fraction())
    }
}

/// A number in [0, 1) that differs between calls. Jitter needs spread, not cryptographic
/// randomness, so the clock's nanoseconds mixed with a counter are enough.
fn jitter_fraction() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Parse a `Retry-After` value: delay-seconds (`"2"`, also `"1.5"` as some servers send) or an
/// HTTP date. A date in the past means "now".
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(secs.min(86_400.0)));
        }
        return None;
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The server's requested wait from response headers: `retry-after-ms` (sent by some
/// OpenAI-compatible servers) or `retry-after`.
pub(crate) fn retry_after_from(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers.get("retry-after-ms").and_then(|v| v.to_str().ok()) {
        if let Ok(ms) = ms.trim().parse::<f64>() {
            if ms.is_finite() && ms >= 0.0 {
                return Some(Duration::from_secs_f64(ms.min(86_400_000.0) / 1000.0));
            }
        }
    }
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let later = SystemTime::now() + Duration::from_secs(120);
        let d = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            patience: Duration::from_secs(60),
        };
        for attempt in 1..10 {
            let full = (Duration::from_millis(100) * (1 << (attempt - 1)))
                .min(Duration::from_millis(1000));
            let w = p.wait_before_next(attempt, None);
            assert!(
                w >= full / 2 && w <= full,
                "attempt {attempt}: {w:?} vs {full:?}"
            );
        }
        assert_eq!(
            p.wait_before_next(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
    }
}
