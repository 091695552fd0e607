//! When a schedule is due: a cron expression (5 fields, or 6 with seconds
//! first) read in an IANA time zone, with `croner` and `chrono-tz`. A bad
//! expression or zone is an error naming the field and what is wrong.

use chrono::TimeZone as _;
use croner::parser::{CronParser, Seconds, Year};

/// Longest cron expression accepted, in bytes.
pub const MAX_CRON_BYTES: usize = 256;

/// A parsed schedule time: the expression and its zone.
#[derive(Debug, Clone)]
pub struct When {
    cron: croner::Cron,
    tz: chrono_tz::Tz,
}

/// What is wrong with a schedule's time, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhenError {
    /// The cron expression.
    #[error("cron: {0}")]
    Cron(String),
    /// The time zone.
    #[error("timezone: {0}")]
    Timezone(String),
}

impl When {
    /// Parse `cron` in zone `tz` (None: UTC). An expression that never
    /// fires (say 30 February) is refused too.
    pub fn parse(cron: &str, tz: Option<&str>) -> Result<When, WhenError> {
        let tz = match tz {
            None => chrono_tz::Tz::UTC,
            Some(name) => name.parse::<chrono_tz::Tz>().map_err(|_| {
                WhenError::Timezone(format!(
                    "{name:?} is not an IANA time zone (e.g. UTC, Europe/London, America/New_York)"
                ))
            })?,
        };
        if cron.len() > MAX_CRON_BYTES {
            return Err(WhenError::Cron(format!(
                "longer than {MAX_CRON_BYTES} bytes"
            )));
        }
        let fields = cron.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(WhenError::Cron(format!(
                "{cron:?} has {fields} fields; give 5 (minute hour day-of-month month \
                 day-of-week) or 6 (seconds first)"
            )));
        }
        let parsed = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(cron)
            .map_err(|e| WhenError::Cron(format!("{cron:?}: {e}")))?;
        let when = When { cron: parsed, tz };
        if when.next_after(0).is_none() {
            return Err(WhenError::Cron(format!("{cron:?} never fires")));
        }
        Ok(when)
    }

    /// The first time strictly after unix second `after` the expression
    /// fires, as unix seconds (None: never again).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let start = self.tz.timestamp_opt(after, 0).single()?;
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|t| t.timestamp())
    }

    /// The zone's name.
    pub fn zone(&self) -> &'static str {
        self.tz.name()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn weekdays_at_nine_in_london_follow_summer_time() {
        let w = When::parse("0 9 * * 1-5", Some("Europe/London")).unwrap();
        // Mon 2026-01-05 00:00 UTC → 09:00 GMT = 09:00 UTC.
        assert_eq!(w.next_after(1_767_571_200), Some(1_767_571_200 + 9 * 3600));
        // Mon 2026-07-06 00:00 UTC → 09:00 BST = 08:00 UTC.
        assert_eq!(w.next_after(1_783_296_000), Some(1_783_296_000 + 8 * 3600));
    }

    #[test]
    fn six_fields_fire_every_second() {
        let w = When::parse("* * * * * *", None).unwrap();
        assert_eq!(w.next_after(100), Some(101));
    }

    #[test]
    fn bad_expressions_and_zones_name_their_field() {
        for bad in [
            "",
            "* * * *",
            "* * * * * * *",
            "61 * * * *",
            "* 25 * * *",
            "* * * * mon-xyz",
            "0 0 30 2 *",
            "a b c d e",
        ] {
            let e = When::parse(bad, None).unwrap_err();
            assert!(matches!(e, WhenError::Cron(_)), "{bad:?}: {e}");
            assert!(e.to_string().starts_with("cron: "), "{e}");
        }
        for bad in ["Europe/Londn", "", "utc+1", "../../etc/passwd"] {
            let e = When::parse("* * * * *", Some(bad)).unwrap_err();
            assert!(matches!(e, WhenError::Timezone(_)), "{bad:?}: {e}");
        }
    }
}
