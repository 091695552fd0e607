//! The writer's clock: where entry times come from, the kernel's view of
//! how trustworthy they are (`adjtimex`: synchronised or not, error
//! bounds, the clock source), and the watch that turns changes of either
//! into entries (`clock.state`, `clock.step`; docs/audit-format.md §3).
//!
//! The source is a trait so tests can step a fake wall clock back without
//! touching the machine's clock.

use std::sync::Arc;

mod kernel;
#[cfg(feature = "store")]
mod watch;

pub use kernel::SystemClock;
#[cfg(feature = "store")]
pub(crate) use watch::{ClockWatch, Reason};

/// The kernel's synchronisation state of the wall clock at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockState {
    /// The kernel clock source (`tsc`, `kvm-clock`, `hpet`…; empty when
    /// unknown).
    pub source: String,
    /// Whether the kernel considers the clock synchronised (`STA_UNSYNC`
    /// clear and the state not `TIME_ERROR`).
    pub synced: bool,
    /// The clock state `adjtimex` returned: `ok`, `insert-leap`,
    /// `delete-leap`, `leap-in-progress`, `leap-done`, `error`, or
    /// `unavailable` when the call failed.
    pub state: &'static str,
    /// The raw `timex.status` flags (`STA_*`).
    pub status: u32,
    /// Maximum error bound in microseconds (`timex.maxerror`).
    pub maxerror_us: u64,
    /// Estimated error in microseconds (`timex.esterror`).
    pub esterror_us: u64,
}

/// The `state` names [`ClockState::state`] takes.
const STATE_NAMES: [&str; 8] = [
    "ok",
    "insert-leap",
    "delete-leap",
    "leap-in-progress",
    "leap-done",
    "error",
    "unavailable",
    "unknown",
];

impl ClockState {
    /// Read back the state an entry recorded (`clock.state` data, or the
    /// `clock` member of `log.genesis` / `log.open`).
    pub fn of_data(v: &serde_json::Value) -> Option<Self> {
        let state = v.get("state")?.as_str()?;
        Some(Self {
            source: v.get("source")?.as_str()?.to_string(),
            synced: v.get("synced")?.as_bool()?,
            state: STATE_NAMES.into_iter().find(|n| *n == state)?,
            status: u32::try_from(v.get("status")?.as_u64()?).ok()?,
            maxerror_us: v.get("maxerror_us")?.as_u64()?,
            esterror_us: v.get("esterror_us")?.as_u64()?,
        })
    }

    /// The parts whose change is logged: the error bounds drift every
    /// second and are recorded, not compared.
    #[cfg(feature = "store")]
    fn key(&self) -> (&str, bool, &'static str) {
        (&self.source, self.synced, self.state)
    }
}

/// Where the writer reads time.
pub trait ClockSource: Send + Sync {
    /// UTC wall-clock time, nanoseconds since the Unix epoch.
    fn wall_ns(&self) -> i128;
    /// A monotonic clock, nanoseconds from an arbitrary origin (never
    /// steps).
    fn mono_ns(&self) -> u64;
    /// The kernel's synchronisation state (one system call or so; the
    /// writer asks at most about once a second).
    fn state(&self) -> ClockState;
}

/// A shareable clock source for [`crate::LogOptions`].
#[derive(Clone)]
pub struct ClockHandle(pub Arc<dyn ClockSource>);

impl Default for ClockHandle {
    fn default() -> Self {
        Self(Arc::new(SystemClock::new()))
    }
}

impl std::fmt::Debug for ClockHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClockHandle")
    }
}

/// A leaf time string (`YYYY-MM-DDTHH:MM:SS.ffffffZ`) of Unix nanoseconds;
/// times before 1970 or after 9999 are clamped into that range.
pub fn ts_of_ns(ns: i128) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ns).unwrap_or(if ns < 0 {
        time::OffsetDateTime::UNIX_EPOCH
    } else {
        time::macros::datetime!(9999-12-31 23:59:59.999999 UTC)
    });
    let t = if t.year() < 1970 {
        time::OffsetDateTime::UNIX_EPOCH
    } else {
        t
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Unix nanoseconds of a leaf time string (`None` if it is not one).
pub fn ns_of_ts(ts: &str) -> Option<i128> {
    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos())
}
