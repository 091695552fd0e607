//! Which entries a reader asked for: `stele audit show|tail` filters
//! (session, kind, principal, path, decision, time), the questions a
//! reviewer asks of the record ("every read under `phi/` by alice last
//! month", HIPAA §164.312(b), compliance R1).
//!
//! Every filter is checked when the command starts: a bad value is named
//! with its flag before the log is opened, so a mistyped filter never shows
//! an empty answer that looks like "nothing happened".

use stele_audit::leaf::Leaf;
use stele_audit::{Effect, EventKind};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, UtcOffset};

use crate::terminal_safe;

/// The entries to keep; every given filter must match.
#[derive(Debug, Clone, Default)]
pub struct EntryFilter {
    /// Only this session id.
    pub session: Option<String>,
    /// Only this kind.
    pub kind: Option<EventKind>,
    /// Only entries of this principal.
    pub principal: Option<String>,
    /// Only entries whose target path is this workspace path or under it.
    pub path: Option<String>,
    /// Only entries carrying a decision with this effect.
    pub decision: Option<Effect>,
    /// Only entries at or after this time (`ts` form, UTC).
    pub since: Option<String>,
    /// Only entries before this time (`ts` form, UTC).
    pub until: Option<String>,
}

/// A filter value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{flag}: {message}")]
pub struct FilterError {
    /// The flag, e.g. `--since`.
    pub flag: &'static str,
    /// What is wrong and what would be accepted.
    pub message: String,
}

/// Which end of a time range a value bounds: a bare date means the start
/// of that day for `--since` and the end of it for `--until`, so
/// `--since 2026-11-01 --until 2026-11-30` is the whole of November.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Inclusive start.
    Since,
    /// Exclusive end.
    Until,
}

/// The raw values of the flags, as typed.
#[derive(Debug, Clone, Default)]
pub struct FilterInput<'a> {
    /// `--session`.
    pub session: Option<&'a str>,
    /// `--kind`.
    pub kind: Option<&'a str>,
    /// `--principal`.
    pub principal: Option<&'a str>,
    /// `--path`.
    pub path: Option<&'a str>,
    /// `--decision`.
    pub decision: Option<&'a str>,
    /// `--since`.
    pub since: Option<&'a str>,
    /// `--until`.
    pub until: Option<&'a str>,
}

impl EntryFilter {
    /// Check and convert every flag, naming the first bad one.
    pub fn parse(input: &FilterInput<'_>) -> Result<Self, FilterError> {
        let kind = match input.kind {
            None => None,
            Some(k) => Some(EventKind::parse(k).ok_or_else(|| FilterError {
                flag: "--kind",
                message: format!(
                    "unknown kind \"{}\"; kinds: {}",
                    terminal_safe::line(k),
                    EventKind::ALL.map(|k| k.as_str()).join(", ")
                ),
            })?),
        };
        let decision = match input.decision {
            None => None,
            Some("allow") => Some(Effect::Allow),
            Some("deny") => Some(Effect::Deny),
            Some("ask") => Some(Effect::Ask),
            Some(other) => {
                return Err(FilterError {
                    flag: "--decision",
                    message: format!(
                        "\"{}\" is not a decision; use allow, deny or ask",
                        terminal_safe::line(other)
                    ),
                })
            }
        };
        let path = match input.path {
            None => None,
            Some(p) => Some(normal_path(p)?),
        };
        let since = input
            .since
            .map(|s| time_bound(s, Bound::Since))
            .transpose()?;
        let until = input
            .until
            .map(|s| time_bound(s, Bound::Until))
            .transpose()?;
        if let (Some(s), Some(u)) = (&since, &until) {
            if s >= u {
                return Err(FilterError {
                    flag: "--until",
                    message: format!("{u} is not after --since {s}: the range is empty"),
                });
            }
        }
        Ok(Self {
            session: input.session.map(str::to_string),
            kind,
            principal: input.principal.map(str::to_string),
            path,
            decision,
            since,
            until,
        })
    }

    /// Whether `leaf` is one of the entries asked for.
    pub fn matches(&self, leaf: &Leaf) -> bool {
        self.session
            .as_ref()
            .is_none_or(|s| leaf.session.as_ref().is_some_and(|l| &l.id == s))
            && self.kind.is_none_or(|k| leaf.kind == k)
            && self
                .principal
                .as_ref()
                .is_none_or(|p| &leaf.actor.principal == p)
            && self.path.as_ref().is_none_or(|p| {
                leaf.target
                    .as_ref()
                    .and_then(|t| t.path.as_deref())
                    .is_some_and(|tp| under(tp, p))
            })
            && self
                .decision
                .is_none_or(|e| leaf.decision.as_ref().is_some_and(|d| d.effect == e))
            // `ts` has one fixed width (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), so
            // its text order is its time order.
            && self.since.as_ref().is_none_or(|s| leaf.ts.as_str() >= s.as_str())
            && self.until.as_ref().is_none_or(|u| leaf.ts.as_str() < u.as_str())
    }

    /// The filters as recorded in the `audit.read` entry.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "session": self.session,
            "kind": self.kind.map(|k| k.as_str()),
            "principal": self.principal,
            "path": self.path,
            "decision": self.decision.map(effect_name),
            "since": self.since,
            "until": self.until,
        })
    }
}

/// The flag value naming `e`.
fn effect_name(e: Effect) -> &'static str {
    match e {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
        Effect::Ask => "ask",
    }
}

/// Whether workspace path `p` is `prefix` or inside it, by whole
/// components (`phi` covers `phi/a.txt`, not `phil.txt`).
fn under(p: &str, prefix: &str) -> bool {
    if prefix == "." {
        return true;
    }
    let p = p.strip_prefix("./").unwrap_or(p);
    p == prefix
        || p.strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The path as the log spells workspace paths: relative, `/`-separated,
/// no `.`/`..` components, no trailing slash.
fn normal_path(p: &str) -> Result<String, FilterError> {
    let bad = |why: &str| {
        FilterError {
        flag: "--path",
        message: format!(
            "\"{}\" {why}; give a path relative to the workspace root, e.g. phi/ or reports/q3.xlsx",
            terminal_safe::line(p)
        ),
    }
    };
    if p.starts_with('/') {
        return Err(bad("is absolute"));
    }
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(bad("leaves the workspace"));
    }
    if parts.is_empty() {
        return Ok(".".to_string());
    }
    Ok(parts.join("/"))
}

/// `value` (RFC 3339, or a date `YYYY-MM-DD` in UTC) as the log's `ts`
/// text, UTC with microseconds.
pub fn time_bound(value: &str, bound: Bound) -> Result<String, FilterError> {
    let flag = match bound {
        Bound::Since => "--since",
        Bound::Until => "--until",
    };
    let at = if let Ok(t) = OffsetDateTime::parse(value, &Rfc3339) {
        t
    } else if let Ok(d) = Date::parse(value, format_description!("[year]-[month]-[day]")) {
        let day = d.midnight().assume_utc();
        match bound {
            Bound::Since => day,
            Bound::Until => day + time::Duration::days(1),
        }
    } else {
        return Err(FilterError {
            flag,
            message: format!(
                "\"{}\" is not a time; use a date (2026-11-30, UTC) or RFC 3339 \
                 (2026-11-30T17:00:00Z, 2026-11-30T18:00:00+01:00)",
                terminal_safe::line(value)
            ),
        });
    };
    let utc = at.to_offset(UtcOffset::UTC);
    Ok(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second(),
        utc.microsecond()
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paths_match_by_whole_components() {
        assert!(under("phi/a.txt", "phi"));
        assert!(under("phi", "phi"));
        assert!(under("./phi/x", "phi"));
        assert!(!under("phil.txt", "phi"));
        assert!(!under("data/phi/a", "phi"));
        assert!(under("anything", "."));
    }

    #[test]
    fn paths_are_normalised_or_refused() {
        assert_eq!(normal_path("phi/").unwrap(), "phi");
        assert_eq!(normal_path("./phi//x").unwrap(), "phi/x");
        assert_eq!(normal_path("./").unwrap(), ".");
        assert!(normal_path("/etc").is_err());
        assert!(normal_path("phi/../hr").is_err());
    }

    #[test]
    fn times_become_the_logs_utc_text() {
        assert_eq!(
            time_bound("2026-11-30", Bound::Since).unwrap(),
            "2026-11-30T00:00:00.000000Z"
        );
        assert_eq!(
            time_bound("2026-11-30", Bound::Until).unwrap(),
            "2026-12-01T00:00:00.000000Z"
        );
        assert_eq!(
            time_bound("2026-11-30T18:00:00.5+01:00", Bound::Since).unwrap(),
            "2026-11-30T17:00:00.500000Z"
        );
        let e = time_bound("yesterday", Bound::Until).unwrap_err();
        assert_eq!(e.flag, "--until");
        assert!(e.to_string().contains("yesterday"));
        assert!(time_bound("2026-02-30", Bound::Since).is_err());
    }

    #[test]
    fn an_empty_range_and_unknown_values_are_named() {
        let e = EntryFilter::parse(&FilterInput {
            since: Some("2026-12-01"),
            until: Some("2026-11-30"),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.flag, "--until");
        let e = EntryFilter::parse(&FilterInput {
            decision: Some("maybe"),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.flag, "--decision");
        let e = EntryFilter::parse(&FilterInput {
            kind: Some("file.opne"),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.flag, "--kind");
    }
}
