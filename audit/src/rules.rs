//! The rules of `docs/audit-format.md` §2–3 that concern a leaf's *values*
//! (its structure — fields, types, canonical spelling — is checked when it
//! is read: [`crate::leaf_view`] and [`crate::leaf::Leaf::parse_canonical`]).
//!
//! One function, [`check_values`], used by the writer before it commits a
//! leaf (so stele never writes what a verifier rejects) and by both
//! verifiers for every leaf (`stele audit verify`, `stele-verify`). The
//! rules that relate a leaf to the ones before it (index, chain, time
//! order, sessions, intents) are in [`crate::check`].

use crate::event::{EventKind, IntentRole};
use crate::leaf::{parse_hash_b64, LEAF_VERSION, MAX_SAFE_INT};
use crate::leaf_view::{DataView, LeafView};
use crate::payload::COMMIT_PREFIX;

/// Longest session id, in bytes.
pub const MAX_SESSION_ID: usize = 128;

/// Check every value rule of one leaf, the hash texts included. `log_key`
/// is the log's verifier key in text form (the genesis entry must name it).
pub fn check_values(leaf: &LeafView<'_>, log_key: &str) -> Result<(), String> {
    check_values_but_links(leaf, log_key)?;
    if let Some(s) = &leaf.session {
        if let Some(p) = s.prev {
            hash_field("session.prev", p)?;
        }
    }
    if let Some(p) = leaf.prev {
        hash_field("prev", p)?;
    }
    if let Some(r) = &leaf.refs {
        hash_field("refs.intent_leaf", r.intent_leaf)?;
    }
    for c in leaf.commits() {
        commit_field(&c)?;
    }
    Ok(())
}

/// [`check_values`] without the hash texts (`prev`, `session.prev`,
/// `refs.intent_leaf`, payload commitments): the chain checks in
/// [`crate::check`] decode each of those anyway (a text that does not
/// decode to the one right hash fails there), so a verifier need not
/// decode them twice.
pub fn check_values_but_links(leaf: &LeafView<'_>, log_key: &str) -> Result<(), String> {
    if leaf.v != LEAF_VERSION {
        return Err(format!(
            "format version {} (only {LEAF_VERSION} is defined)",
            leaf.v
        ));
    }
    check_ts(leaf.ts)?;
    check_boot(leaf.boot)?;
    if let Some(s) = &leaf.session {
        if s.id.is_empty() || s.id.len() > MAX_SESSION_ID {
            return Err(format!(
                "session id must be 1 to {MAX_SESSION_ID} bytes, not {}",
                s.id.len()
            ));
        }
    }
    let closes =
        matches!(leaf.kind.role(), IntentRole::Result(_)) || leaf.kind == EventKind::Interrupted;
    match (&leaf.refs, closes) {
        (Some(_), true) => {}
        (None, true) => return Err(format!("{} must name its intent (refs)", leaf.kind)),
        (Some(_), false) => {
            return Err(format!(
                "{} closes no intent and must not carry refs",
                leaf.kind
            ))
        }
        (None, false) => {}
    }
    check_data(leaf, log_key)
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, a real date and time of day (UTC, no
/// leap second). Fixed width, so string order is time order.
pub fn check_ts(ts: &str) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "ts {ts:?} is not a UTC time YYYY-MM-DDTHH:MM:SS.ffffffZ that exists"
        ))
    };
    let b = ts.as_bytes();
    if b.len() != 27 {
        return bad();
    }
    for (i, &c) in b.iter().enumerate() {
        let want_digit = !matches!(i, 4 | 7 | 10 | 13 | 16 | 19 | 26);
        let sep_ok = match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            26 => c == b'Z',
            _ => true,
        };
        if (want_digit && !c.is_ascii_digit()) || !sep_ok {
            return bad();
        }
    }
    let num = |from: usize, to: usize| {
        b[from..to]
            .iter()
            .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))
    };
    let (year, month, day) = (num(0, 4), num(5, 7), num(8, 10));
    let (hour, minute, second) = (num(11, 13), num(14, 16), num(17, 19));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return bad(),
    };
    if day == 0 || day > days || hour > 23 || minute > 59 || second > 59 {
        return bad();
    }
    Ok(())
}

/// The writer's boot id: 16 lowercase hex digits.
pub fn check_boot(boot: &str) -> Result<(), String> {
    if boot.len() == 16 && boot.bytes().all(is_lower_hex) {
        Ok(())
    } else {
        Err(format!("boot {boot:?} is not 16 lowercase hex digits"))
    }
}

/// Lowercase hex digit.
pub fn is_lower_hex(c: u8) -> bool {
    c.is_ascii_digit() || (b'a'..=b'f').contains(&c)
}

/// A hash field: canonical standard base64 (with padding) of 32 bytes.
pub fn hash_field(name: &str, v: &str) -> Result<(), String> {
    parse_hash_b64(v)
        .map(|_| ())
        .ok_or_else(|| format!("{name} is not the base64 of a 32-byte hash"))
}

/// A payload commitment: `sha256s:` and canonical base64 of 32 bytes.
fn commit_field(c: &str) -> Result<(), String> {
    c.strip_prefix(COMMIT_PREFIX)
        .and_then(parse_hash_b64)
        .map(|_| ())
        .ok_or_else(|| format!("payload commitment {c:?} is not sha256s:<base64 of 32 bytes>"))
}

/// `data`: the members the format defines for some kinds (closed for those
/// kinds); other kinds' `data` is open (any object: structure checked on
/// reading).
fn check_data(leaf: &LeafView<'_>, log_key: &str) -> Result<(), String> {
    let spec: &[(&str, Member)] = match leaf.kind {
        EventKind::LogGenesis => &[
            ("clock", Member::Optional(Type::Clock)),
            ("extra", Member::Optional(Type::Any)),
            ("nonce", Member::Required(Type::Hex(32))),
            ("software", Member::Required(Type::Text)),
            ("vkey", Member::Required(Type::Text)),
        ],
        EventKind::LogOpen => &[
            ("clock", Member::Optional(Type::Clock)),
            ("previous_size", Member::Required(Type::Count)),
        ],
        EventKind::Heartbeat => &[("interval_s", Member::Required(Type::Count))],
        EventKind::ClockState => CLOCK_STATE,
        EventKind::ClockStep => &[
            (
                "across",
                Member::Required(Type::OneOf(&["writer", "restart"])),
            ),
            ("before", Member::Required(Type::Time)),
            ("by_us", Member::Required(Type::Count)),
            ("carried", Member::Required(Type::Time)),
            (
                "direction",
                Member::Required(Type::OneOf(&["back", "forward"])),
            ),
            ("reading", Member::Required(Type::Time)),
        ],
        EventKind::Redaction => &[
            ("commits", Member::Required(Type::Commits)),
            ("reason", Member::Required(Type::NonEmptyText)),
        ],
        EventKind::KeyRotation => &[
            ("from_size", Member::Required(Type::Count)),
            ("new", Member::Required(Type::NonEmptyText)),
            ("old", Member::Required(Type::NonEmptyText)),
            ("reason", Member::Required(Type::NonEmptyText)),
        ],
        EventKind::KeyRevocation => &[
            ("from_size", Member::Required(Type::Count)),
            ("key", Member::Required(Type::NonEmptyText)),
            ("reason", Member::Required(Type::NonEmptyText)),
        ],
        EventKind::AuditAlert => &[
            ("check", Member::Required(Type::NonEmptyText)),
            ("index", Member::Optional(Type::Count)),
            ("reason", Member::Required(Type::NonEmptyText)),
            ("size", Member::Required(Type::Count)),
        ],
        // retention, legal hold and archival (docs/retention.md)
        EventKind::PayloadExpiry => &[
            ("before", Member::Required(Type::Time)),
            ("class", Member::Required(Type::NonEmptyText)),
            ("commits", Member::Required(Type::Commits)),
            ("config", Member::Required(Type::Digest)),
            ("retention", Member::Required(Type::NonEmptyText)),
        ],
        EventKind::HoldPlace => &[
            ("config", Member::Optional(Type::Digest)),
            ("from", Member::Optional(Type::Time)),
            ("principal", Member::Optional(Type::NonEmptyText)),
            ("reason", Member::Required(Type::NonEmptyText)),
            ("session", Member::Optional(Type::NonEmptyText)),
            ("until", Member::Optional(Type::Time)),
        ],
        EventKind::HoldRelease => &[
            ("approval", Member::Required(Type::Count)),
            ("config", Member::Optional(Type::Digest)),
            ("hold", Member::Required(Type::Count)),
            ("reason", Member::Required(Type::NonEmptyText)),
        ],
        EventKind::LogArchive => &[
            ("bundle", Member::Required(Type::Digest)),
            ("keys", Member::Required(Type::ArchiveKeys)),
            ("prev", Member::Required(Type::Hash)),
            ("reason", Member::Required(Type::NonEmptyText)),
            ("root", Member::Required(Type::Hash)),
            ("through", Member::Required(Type::Count)),
        ],
        // Open data, but a `clock` member the log wrote must be a clock state.
        EventKind::SessionStart => return session_clock(leaf),
        _ => return Ok(()),
    };
    let kind = leaf.kind;
    let owned;
    let data = match leaf.data {
        None => return Err(format!("{kind} needs data")),
        Some(DataView::Typed(v)) => v,
        Some(DataView::Raw(b)) => {
            owned = serde_json::from_slice::<serde_json::Value>(b)
                .map_err(|e| format!("{kind} data: {e}"))?;
            &owned
        }
    };
    check_members(data, spec).map_err(|why| format!("{kind} data{why}"))?;
    if let Some(obj) = data.as_object() {
        crate::holds::check_shape(kind, obj)?;
    }
    if kind == EventKind::LogGenesis && data.get("vkey").and_then(|v| v.as_str()) != Some(log_key) {
        return Err("log.genesis data.vkey is not the log's key".into());
    }
    Ok(())
}

/// `session.start` data's `clock` member, when present, is a clock state.
fn session_clock(leaf: &LeafView<'_>) -> Result<(), String> {
    let owned;
    let data = match leaf.data {
        None => return Ok(()),
        Some(DataView::Typed(v)) => v,
        Some(DataView::Raw(b)) => {
            owned = serde_json::from_slice::<serde_json::Value>(b)
                .map_err(|e| format!("session.start data: {e}"))?;
            &owned
        }
    };
    match data.get("clock") {
        None => Ok(()),
        Some(c) => {
            check_members(c, CLOCK_STATE).map_err(|why| format!("session.start data.clock{why}"))
        }
    }
}

/// The members of a clock state (`clock.state` data; the `clock` member of
/// `log.genesis` and `log.open`).
const CLOCK_STATE: &[(&str, Member)] = &[
    ("esterror_us", Member::Required(Type::Count)),
    ("maxerror_us", Member::Required(Type::Count)),
    (
        "reason",
        Member::Required(Type::OneOf(&["log.open", "session.start", "change"])),
    ),
    ("source", Member::Required(Type::Text)),
    ("state", Member::Required(Type::NonEmptyText)),
    ("status", Member::Required(Type::Count)),
    ("synced", Member::Required(Type::Bool)),
];

/// `data` has exactly the members of `spec`; the error starts with the
/// path below the data (`.name: why`, or `: why`).
fn check_members(data: &serde_json::Value, spec: &[(&str, Member)]) -> Result<(), String> {
    let obj = data
        .as_object()
        .ok_or_else(|| " must be an object".to_string())?;
    if let Some(k) = obj.keys().find(|k| !spec.iter().any(|(n, _)| n == k)) {
        return Err(format!(" has no member {k:?} in this format"));
    }
    for (name, m) in spec {
        let (t, required) = match m {
            Member::Required(t) => (t, true),
            Member::Optional(t) => (t, false),
        };
        match obj.get(*name) {
            None if required => return Err(format!(".{name} is missing")),
            None => {}
            Some(v) => {
                t.check(v)
                    .map_err(|why| match why.starts_with(['.', ' ']) {
                        true => format!(".{name}{why}"),
                        false => format!(".{name}: {why}"),
                    })?;
            }
        }
    }
    Ok(())
}

enum Member {
    Required(Type),
    Optional(Type),
}

enum Type {
    Any,
    Text,
    NonEmptyText,
    /// An integer 0 ..= 2^53 − 1.
    Count,
    /// Lowercase hex of this many characters.
    Hex(usize),
    /// A non-empty array of payload commitments.
    Commits,
    /// `true` or `false`.
    Bool,
    /// A leaf time ([`check_ts`]).
    Time,
    /// `sha256:` and 64 lowercase hex digits.
    Digest,
    /// A hash text (canonical base64 of 32 bytes).
    Hash,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// An object of the members of a clock state.
    Clock,
    /// What `log.archive` records of the keys below its boundary
    /// ([`crate::archive_keys::ArchiveKeys`]).
    ArchiveKeys,
}

impl Type {
    fn check(&self, v: &serde_json::Value) -> Result<(), String> {
        let ok = match self {
            Type::Any => true,
            Type::Text => v.is_string(),
            Type::NonEmptyText => v.as_str().is_some_and(|s| !s.trim().is_empty()),
            Type::Count => v.as_u64().is_some_and(|n| n <= MAX_SAFE_INT),
            Type::Hex(n) => v
                .as_str()
                .is_some_and(|s| s.len() == *n && s.bytes().all(is_lower_hex)),
            Type::Bool => v.is_boolean(),
            Type::Time => v.as_str().is_some_and(|t| check_ts(t).is_ok()),
            Type::OneOf(names) => v.as_str().is_some_and(|t| names.contains(&t)),
            Type::Clock => return check_members(v, CLOCK_STATE),
            Type::ArchiveKeys => {
                return serde_json::from_value::<crate::archive_keys::ArchiveKeys>(v.clone())
                    .map(|_| ())
                    .map_err(|e| format!(": {e}"))
            }
            Type::Commits => {
                let Some(a) = v.as_array().filter(|a| !a.is_empty()) else {
                    return Err("must be a non-empty array of commitments".into());
                };
                for c in a {
                    commit_field(c.as_str().ok_or("a commitment must be a string")?)?;
                }
                true
            }
            Type::Digest => v.as_str().is_some_and(|s| {
                s.strip_prefix("sha256:")
                    .is_some_and(|h| h.len() == 64 && h.bytes().all(is_lower_hex))
            }),
            Type::Hash => v.as_str().and_then(parse_hash_b64).is_some(),
        };
        if ok {
            Ok(())
        } else {
            Err(match self {
                Type::Any => "",
                Type::Text => "must be a string",
                Type::NonEmptyText => "must be a non-empty string",
                Type::Count => "must be an integer from 0 to 2^53-1",
                Type::Hex(_) => "must be lowercase hex of the stated length",
                Type::Commits => "must be a non-empty array of commitments",
                Type::Bool => "must be true or false",
                Type::Time => "must be a UTC time YYYY-MM-DDTHH:MM:SS.ffffffZ",
                Type::Digest => "must be sha256:<64 lowercase hex digits>",
                Type::Hash => "must be the base64 of a 32-byte hash",
                Type::OneOf(names) => return Err(format!("must be one of {}", names.join(", "))),
                Type::Clock => "must be a clock state",
                Type::ArchiveKeys => "must be the archived key record",
            }
            .into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_that_exist_and_times_that_do_not() {
        for ok in [
            "2026-01-01T00:00:00.000000Z",
            "2024-02-29T23:59:59.999999Z",
            "2000-02-29T12:00:00.123456Z",
            "1999-12-31T23:59:59.000001Z",
        ] {
            assert!(check_ts(ok).is_ok(), "{ok}");
        }
        for bad in [
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00.000Z",
            "2026-01-01T00:00:00.0000000Z",
            "2026-02-30T00:00:00.000000Z",
            "2023-02-29T00:00:00.000000Z",
            "1900-02-29T00:00:00.000000Z",
            "2026-13-01T00:00:00.000000Z",
            "2026-00-01T00:00:00.000000Z",
            "2026-04-31T00:00:00.000000Z",
            "2026-01-00T00:00:00.000000Z",
            "2026-01-01T24:00:00.000000Z",
            "2026-01-01T00:60:00.000000Z",
            "2026-01-01T00:00:60.000000Z",
            "2026-01-01 00:00:00.000000Z",
            "2026-01-01T00:00:00.000000+",
            "2026-01-01t00:00:00.000000z",
            "+026-01-01T00:00:00.000000Z",
            "２026-01-01T00:00:00.000000Z",
        ] {
            assert!(check_ts(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn boot_ids() {
        assert!(check_boot("0123456789abcdef").is_ok());
        for bad in [
            "0123456789ABCDEF",
            "0123456789abcde",
            "0123456789abcdef0",
            "",
        ] {
            assert!(check_boot(bad).is_err(), "{bad}");
        }
    }
}
