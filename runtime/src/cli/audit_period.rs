//! `stele audit report --since … --until …`: the period evidence report
//! (docs/review-report.md, "Period report"). The window's arguments, and
//! what the live log adds to `stele_verify::account::period` — stored
//! witness cosignatures and RFC 3161 tokens of checkpoints in the window.

use stele_audit::clock::{ns_of_ts, ts_of_ns};
use stele_audit::Store;
use stele_verify::account::period::{Period, StampLine, Window};
use stele_verify::account::Witnessed;

/// Why a time argument was refused.
#[derive(Debug, thiserror::Error)]
pub enum TimeArgError {
    /// Not a time or a date.
    #[error("{flag} {value:?}: not a time (RFC 3339, e.g. 2026-12-01T09:00:00Z or 2026-12-01T10:00:00+01:00) nor a date (YYYY-MM-DD, UTC)")]
    Unreadable {
        /// The flag.
        flag: &'static str,
        /// What was given.
        value: String,
    },
    /// The window is empty or reversed.
    #[error("--until {until} is not after --since {since}")]
    Reversed {
        /// Start.
        since: String,
        /// End.
        until: String,
    },
}

/// Where a date falls in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateMeans {
    /// Its first instant (`--since`).
    StartOfDay,
    /// The first instant after it (`--until`: the day is included).
    EndOfDay,
}

/// Unix ns of an RFC 3339 time or a `YYYY-MM-DD` date (UTC).
pub fn parse_time(flag: &'static str, value: &str, date: DateMeans) -> Result<i128, TimeArgError> {
    use time::format_description::well_known::Rfc3339;
    let bad = || TimeArgError::Unreadable {
        flag,
        value: value.to_string(),
    };
    let v = value.trim();
    if let Ok(t) = time::OffsetDateTime::parse(v, &Rfc3339) {
        return Ok(t.unix_timestamp_nanos());
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(v, &fmt).map_err(|_| bad())?;
    let d = match date {
        DateMeans::StartOfDay => d,
        DateMeans::EndOfDay => d.next_day().ok_or_else(bad)?,
    };
    Ok(d.midnight().assume_utc().unix_timestamp_nanos())
}

/// The window of `--since` / `--until` (until defaults to now).
pub fn window(since: &str, until: Option<&str>, gap_s: u64) -> Result<Window, TimeArgError> {
    let since_ns = parse_time("--since", since, DateMeans::StartOfDay)?;
    let until_ns = match until {
        Some(u) => parse_time("--until", u, DateMeans::EndOfDay)?,
        None => time::OffsetDateTime::now_utc().unix_timestamp_nanos(),
    };
    if until_ns <= since_ns {
        return Err(TimeArgError::Reversed {
            since: ts_of_ns(since_ns),
            until: ts_of_ns(until_ns),
        });
    }
    Ok(Window {
        since_ns,
        until_ns,
        gap_s,
    })
}

/// Add what the live log stores beside its entries: cosignatures and
/// timestamp tokens of the checkpoints whose newest entry is in the
/// window; and the export command.
pub fn add_stored(p: &mut Period, store: &Store, w: &Window, entries: u64) -> anyhow::Result<()> {
    let in_window = |size: u64| -> bool {
        size > 0
            && size <= entries
            && store
                .entry(size - 1)
                .ok()
                .and_then(|e| {
                    stele_audit::leaf_view::LeafView::scan(&e.leaf).map(|v| v.ts.to_string())
                })
                .and_then(|ts| ns_of_ts(&ts))
                .is_some_and(|t| t >= w.since_ns && t < w.until_ns)
    };
    let conn = store.conn();
    let mut st = conn.prepare("SELECT size, witness FROM cosignatures ORDER BY size, witness")?;
    let rows = st.query_map([], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
    })?;
    for row in rows {
        let (size, witness) = row?;
        if in_window(size) {
            p.cosignatures.push(Witnessed { witness, size });
        }
    }
    let has_tokens: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'timestamps'",
        [],
        |r| r.get(0),
    )?;
    if has_tokens > 0 {
        let mut st = conn.prepare("SELECT size, gen_time, tsa FROM timestamps ORDER BY size")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (size, gen, tsa) = row?;
            if in_window(size) {
                p.timestamps.push(StampLine {
                    size,
                    gen_time: ts_of_ns(i128::from(gen) * 1_000_000_000),
                    tsa,
                    checked: false,
                });
            }
        }
    }
    p.export_command = format!(
        "stele audit export --since {} --until {} --out period.tar",
        p.since, p.until
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn times_and_dates_and_what_is_refused() {
        let day = parse_time("--since", "2026-12-01", DateMeans::StartOfDay).unwrap();
        assert_eq!(ts_of_ns(day), "2026-12-01T00:00:00.000000Z");
        let end = parse_time("--until", "2026-12-01", DateMeans::EndOfDay).unwrap();
        assert_eq!(ts_of_ns(end), "2026-12-02T00:00:00.000000Z");
        let t = parse_time(
            "--since",
            "2026-12-01T10:00:00+01:00",
            DateMeans::StartOfDay,
        )
        .unwrap();
        assert_eq!(ts_of_ns(t), "2026-12-01T09:00:00.000000Z");
        for bad in [
            "yesterday",
            "2026-13-01",
            "2026-02-30",
            "2026-12-01T25:00:00Z",
            "",
            "1701388800",
        ] {
            let e = parse_time("--since", bad, DateMeans::StartOfDay).unwrap_err();
            assert!(e.to_string().starts_with("--since"), "{e}");
        }
        let e = window("2026-12-02", Some("2026-12-01"), 120).unwrap_err();
        assert!(e.to_string().contains("not after"), "{e}");
        // A one-day window by dates includes the whole day.
        let w = window("2026-12-01", Some("2026-12-01"), 120).unwrap();
        assert!(w.holds("2026-12-01T23:59:59.999999Z"));
        assert!(!w.holds("2026-12-02T00:00:00.000000Z"));
        assert!(!w.holds("2026-11-30T23:59:59.999999Z"));
    }
}
