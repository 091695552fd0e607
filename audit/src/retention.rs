//! Retention classes: how long payload bodies are kept, by the teams of the
//! entry that made them, and which bodies are past it. The bodies are erased
//! by `payload.expiry` entries (like redaction: leaves and tree stay, the
//! log still verifies). The classes come from the managed configuration
//! only (see docs/retention.md): a user cannot shorten them.

use std::collections::BTreeMap;

use serde::Deserialize;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// A retention period: a count of years, months, weeks or days
/// (`6y`, `12mo`, `26w`, `180d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Calendar years.
    Years(u32),
    /// Calendar months.
    Months(u32),
    /// Weeks of 7 days.
    Weeks(u32),
    /// Days.
    Days(u32),
}

impl Period {
    /// Parse `6y`, `12mo`, `26w`, `180d` (a positive count, at most 100
    /// years in all).
    pub fn parse(s: &str) -> Result<Self, String> {
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let (n, unit) = s.split_at(digits);
        let n: u32 = n.parse().map_err(|_| {
            format!("retention {s:?}: expected a count and a unit, e.g. 6y, 12mo, 26w or 180d")
        })?;
        let p = match unit {
            "y" => Period::Years(n),
            "mo" => Period::Months(n),
            "w" => Period::Weeks(n),
            "d" => Period::Days(n),
            _ => {
                return Err(format!(
                "retention {s:?}: the unit must be y (years), mo (months), w (weeks) or d (days)"
            ))
            }
        };
        if n == 0 {
            return Err(format!(
                "retention {s:?}: the period must be longer than zero"
            ));
        }
        if p.approx_days() > 36_525 {
            return Err(format!("retention {s:?}: at most 100 years"));
        }
        Ok(p)
    }

    /// Roughly how many days (for ordering and limits only).
    pub fn approx_days(self) -> u64 {
        match self {
            Period::Years(n) => u64::from(n) * 366,
            Period::Months(n) => u64::from(n) * 31,
            Period::Weeks(n) => u64::from(n) * 7,
            Period::Days(n) => u64::from(n),
        }
    }

    /// The time `self` before `now`: a body made before it is past its
    /// retention. Months and years are calendar months (the day is
    /// clamped to the month's length: 31 March minus one month is 28 or
    /// 29 February).
    pub fn cutoff(self, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
        let too_far = || "the retention period reaches before year 1".to_string();
        let back_months = |months: u32| -> Result<OffsetDateTime, String> {
            let total = now.year() * 12 + i32::from(u8::from(now.month())) - 1 - months as i32;
            let (y, m0) = (total.div_euclid(12), total.rem_euclid(12));
            let month = Month::try_from(m0 as u8 + 1).map_err(|_| too_far())?;
            let day = now.day().min(month.length(y));
            let date = Date::from_calendar_date(y, month, day).map_err(|_| too_far())?;
            Ok(PrimitiveDateTime::new(date, now.time()).assume_utc())
        };
        match self {
            Period::Years(n) => back_months(n * 12),
            Period::Months(n) => back_months(n),
            Period::Weeks(n) => now
                .checked_sub(time::Duration::days(i64::from(n) * 7))
                .ok_or_else(too_far),
            Period::Days(n) => now
                .checked_sub(time::Duration::days(i64::from(n)))
                .ok_or_else(too_far),
        }
    }
}

/// A time in the leaf format (`YYYY-MM-DDTHH:MM:SS.ffffffZ`).
pub fn leaf_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
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

/// Parse a leaf time, or a date `YYYY-MM-DD` (midnight UTC), or RFC 3339.
pub fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, &fmt)
        .map(|d| PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_utc())
        .map_err(|_| {
            format!("{s:?} is not a time (YYYY-MM-DD or RFC 3339, e.g. 2026-01-01T00:00:00Z)")
        })
}

/// `[retention]` of the managed configuration.
///
/// ```toml
/// [retention]
/// default = "eu-ai-act"            # class of payloads no team maps (absent: kept)
/// hold_officers = ["lee", "kim"]   # who may place and release legal holds
/// [retention.classes]
/// hipaa = "6y"
/// pci = "12mo"
/// eu-ai-act = "6mo"
/// [retention.teams]
/// clinical = "hipaa"
/// finance = "pci"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Named classes and their periods.
    #[serde(default)]
    pub classes: BTreeMap<String, String>,
    /// The class of a payload whose entry's teams map to none.
    pub default: Option<String>,
    /// Team → class.
    #[serde(default)]
    pub teams: BTreeMap<String, String>,
    /// Principals who may place and release legal holds (a release needs
    /// two of them).
    #[serde(default)]
    pub hold_officers: Vec<String>,
}

/// A named class with its parsed period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    /// Its name.
    pub name: String,
    /// The period as written.
    pub written: String,
    /// The period.
    pub period: Period,
}

/// Validated retention classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    classes: BTreeMap<String, Class>,
    default: Option<String>,
    teams: BTreeMap<String, String>,
    /// `sha256:<hex>` of the configuration file the classes came from.
    pub config_digest: String,
}

impl Retention {
    /// Check `cfg` (every period parses, every class named exists);
    /// errors name the field.
    pub fn new(cfg: &RetentionConfig, config_digest: String) -> Result<Self, String> {
        let mut classes = BTreeMap::new();
        for (name, p) in &cfg.classes {
            let period = Period::parse(p).map_err(|e| format!("retention.classes.{name}: {e}"))?;
            classes.insert(
                name.clone(),
                Class {
                    name: name.clone(),
                    written: p.clone(),
                    period,
                },
            );
        }
        if let Some(d) = &cfg.default {
            if !classes.contains_key(d) {
                return Err(format!(
                    "retention.default: no class {d:?} in retention.classes"
                ));
            }
        }
        for (team, c) in &cfg.teams {
            if !classes.contains_key(c) {
                return Err(format!(
                    "retention.teams.{team}: no class {c:?} in retention.classes"
                ));
            }
        }
        Ok(Self {
            classes,
            default: cfg.default.clone(),
            teams: cfg.teams.clone(),
            config_digest,
        })
    }

    /// The class of a payload made by an entry of `teams`: the longest of
    /// the classes its teams map to (the longest applicable rule wins),
    /// else the default, else none (kept).
    pub fn class_for<'a>(&'a self, teams: &[String]) -> Option<&'a Class> {
        let mapped = teams
            .iter()
            .filter_map(|t| self.teams.get(t))
            .filter_map(|c| self.classes.get(c))
            .max_by_key(|c| c.period.approx_days());
        mapped.or_else(|| self.default.as_ref().and_then(|d| self.classes.get(d)))
    }

    /// Every class, by name.
    pub fn classes(&self) -> impl Iterator<Item = &Class> {
        self.classes.values()
    }
}

/// What retention needs of the entry that made a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MakerAttrs {
    /// Its time.
    pub ts: String,
    /// `actor.teams`.
    pub teams: Vec<String>,
    /// For holds.
    pub hold: crate::holds::EntryAttrs,
}

impl MakerAttrs {
    /// Read from leaf bytes (only these members).
    pub fn of_leaf(bytes: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Actor {
            #[serde(default)]
            teams: Vec<String>,
        }
        #[derive(Deserialize)]
        struct Attrs {
            actor: Actor,
        }
        let a: Attrs = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let hold = crate::holds::EntryAttrs::of_leaf(bytes)?;
        Ok(Self {
            ts: hold.ts.clone(),
            teams: a.actor.teams,
            hold,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_and_refuse() {
        assert_eq!(Period::parse("6y"), Ok(Period::Years(6)));
        assert_eq!(Period::parse("12mo"), Ok(Period::Months(12)));
        assert_eq!(Period::parse("26w"), Ok(Period::Weeks(26)));
        assert_eq!(Period::parse("180d"), Ok(Period::Days(180)));
        for bad in ["", "6", "y", "0d", "6m", "6 y", "-1d", "101y", "6years"] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn calendar_cutoffs() {
        let t = parse_time("2026-03-31T10:00:00Z").unwrap();
        let c = |p| leaf_time(Period::cutoff(p, t).unwrap());
        assert_eq!(c(Period::Months(1)), "2026-02-28T10:00:00.000000Z");
        assert_eq!(c(Period::Months(13)), "2025-02-28T10:00:00.000000Z");
        assert_eq!(c(Period::Years(6)), "2020-03-31T10:00:00.000000Z");
        assert_eq!(c(Period::Days(31)), "2026-02-28T10:00:00.000000Z");
        let leap = parse_time("2024-02-29T00:00:00Z").unwrap();
        assert_eq!(
            leaf_time(Period::Years(1).cutoff(leap).unwrap()),
            "2023-02-28T00:00:00.000000Z"
        );
    }

    #[test]
    fn longest_applicable_class_wins() {
        let cfg: RetentionConfig = toml_like(&[("hipaa", "6y"), ("pci", "12mo"), ("ai", "6mo")]);
        let r = Retention::new(&cfg, "sha256:x".into()).unwrap();
        let name = |teams: &[&str]| {
            let t: Vec<String> = teams.iter().map(|s| s.to_string()).collect();
            r.class_for(&t).map(|c| c.name.clone())
        };
        assert_eq!(name(&["finance"]).as_deref(), Some("pci"));
        assert_eq!(name(&["finance", "clinical"]).as_deref(), Some("hipaa"));
        assert_eq!(name(&["ops"]).as_deref(), Some("ai"));
        assert_eq!(name(&[]).as_deref(), Some("ai"));
        let mut bad = cfg.clone();
        bad.default = Some("nope".into());
        assert!(Retention::new(&bad, String::new())
            .unwrap_err()
            .contains("retention.default"));
        let mut bad = cfg;
        bad.classes.insert("x".into(), "5".into());
        assert!(Retention::new(&bad, String::new())
            .unwrap_err()
            .contains("retention.classes.x"));
    }

    fn toml_like(classes: &[(&str, &str)]) -> RetentionConfig {
        RetentionConfig {
            classes: classes
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            default: Some("ai".into()),
            teams: [("finance", "pci"), ("clinical", "hipaa")]
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            hold_officers: Vec::new(),
        }
    }
}
