//! Legal holds: what a hold covers, and the rules of placing and releasing
//! one (dual control). One [`HoldBook`] is kept by the writer, which refuses
//! to erase a held payload or to accept a release that breaks the rules, and
//! by both verifiers, which replay the `hold.*` entries and fail a log that
//! breaks them (a log written by something other than stele's writer, or
//! forged with its key). See docs/retention.md.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::event::EventKind;

/// What a hold covers: every payload made by an entry of the session, by
/// the principal, or at a time in the range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldScope {
    /// Entries of this session.
    Session(String),
    /// Entries whose actor is this principal.
    Principal(String),
    /// Entries with `from <= ts < until` (leaf times).
    Range {
        /// First time covered.
        from: String,
        /// First time no longer covered.
        until: String,
    },
}

impl HoldScope {
    /// The scope's members of a `hold.place` entry's `data`.
    pub fn to_data(&self) -> Map<String, Value> {
        let mut m = Map::new();
        match self {
            HoldScope::Session(s) => {
                m.insert("session".into(), s.clone().into());
            }
            HoldScope::Principal(p) => {
                m.insert("principal".into(), p.clone().into());
            }
            HoldScope::Range { from, until } => {
                m.insert("from".into(), from.clone().into());
                m.insert("until".into(), until.clone().into());
            }
        }
        m
    }

    /// Read the scope of a `hold.place` entry's `data`: exactly one of
    /// `session`, `principal`, or `from` with `until` (`from < until`).
    pub fn from_data(d: &Map<String, Value>) -> Result<Self, String> {
        let s = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_string);
        match (s("session"), s("principal"), s("from"), s("until")) {
            (Some(id), None, None, None) => Ok(HoldScope::Session(id)),
            (None, Some(p), None, None) => Ok(HoldScope::Principal(p)),
            (None, None, Some(from), Some(until)) if from < until => {
                Ok(HoldScope::Range { from, until })
            }
            (None, None, Some(_), Some(_)) => {
                Err("hold.place data.from must be earlier than data.until".into())
            }
            _ => Err(
                "hold.place data must name exactly one scope: session, principal, or from and until"
                    .into(),
            ),
        }
    }

    /// Whether the hold covers a payload made by an entry with `attrs`.
    pub fn covers(&self, attrs: &EntryAttrs) -> bool {
        match self {
            HoldScope::Session(s) => attrs.session.as_deref() == Some(s.as_str()),
            HoldScope::Principal(p) => attrs.principal == *p,
            HoldScope::Range { from, until } => {
                attrs.ts.as_str() >= from.as_str() && attrs.ts.as_str() < until.as_str()
            }
        }
    }
}

impl std::fmt::Display for HoldScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HoldScope::Session(s) => write!(f, "session {s}"),
            HoldScope::Principal(p) => write!(f, "principal {p}"),
            HoldScope::Range { from, until } => write!(f, "time range {from} .. {until}"),
        }
    }
}

/// What a hold needs to know of the entry that made a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryAttrs {
    /// Its session, if any.
    pub session: Option<String>,
    /// `actor.principal`.
    pub principal: String,
    /// Its time.
    pub ts: String,
}

impl EntryAttrs {
    /// The attributes of a leaf (already verified, or about to be refused
    /// for other reasons: only these members are read).
    pub fn of_leaf(bytes: &[u8]) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct Actor {
            principal: String,
        }
        #[derive(serde::Deserialize)]
        struct Session {
            id: String,
        }
        #[derive(serde::Deserialize)]
        struct Attrs {
            actor: Actor,
            session: Option<Session>,
            ts: String,
        }
        let a: Attrs = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        Ok(Self {
            session: a.session.map(|s| s.id),
            principal: a.actor.principal,
            ts: a.ts,
        })
    }
}

/// One hold and how far its release has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldState {
    /// Index of its `hold.place` entry (the hold's id).
    pub id: u64,
    /// What it covers.
    pub scope: HoldScope,
    /// Who placed it.
    pub placed_by: String,
    /// The first release approval: principal and entry.
    pub first_approval: Option<(String, u64)>,
    /// The entry of the second approval, which released it.
    pub released: Option<u64>,
    /// Its reason.
    pub reason: String,
}

impl HoldState {
    /// Whether it was in force just before entry `seq` was appended.
    pub fn active_at(&self, seq: u64) -> bool {
        self.id < seq && self.released.is_none_or(|r| r >= seq)
    }
}

/// Every hold of a log, by id, as its entries placed and released them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HoldBook {
    /// Holds by id.
    pub holds: BTreeMap<u64, HoldState>,
}

/// Which approval a `hold.release` entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    /// The first: the hold stays in force.
    First,
    /// The second, by a different principal: the hold is released.
    Second,
}

impl Approval {
    /// The number written in `data.approval`.
    pub fn number(self) -> u64 {
        match self {
            Approval::First => 1,
            Approval::Second => 2,
        }
    }
}

impl HoldBook {
    /// Record a `hold.place` at index `seq`.
    pub fn place(&mut self, seq: u64, scope: HoldScope, principal: &str, reason: &str) {
        self.holds.insert(
            seq,
            HoldState {
                id: seq,
                scope,
                placed_by: principal.to_string(),
                first_approval: None,
                released: None,
                reason: reason.to_string(),
            },
        );
    }

    /// Which approval a release of `hold` by `principal` would be, or why
    /// it is refused: the hold must exist and be in force, and the second
    /// approval must come from a principal other than the first's (dual
    /// control, NIST AU-9(5)).
    pub fn next_approval(&self, hold: u64, principal: &str) -> Result<Approval, String> {
        let h = self
            .holds
            .get(&hold)
            .ok_or_else(|| format!("entry {hold} is not a legal hold"))?;
        if let Some(r) = h.released {
            return Err(format!("hold {hold} was already released by entry {r}"));
        }
        match &h.first_approval {
            None => Ok(Approval::First),
            Some((p, at)) if p == principal => Err(format!(
                "hold {hold}: {principal} already approved its release (entry {at}); \
                 dual control needs a second, different principal"
            )),
            Some(_) => Ok(Approval::Second),
        }
    }

    /// Record a `hold.release` at index `seq` stating `approval`; refused
    /// as [`HoldBook::next_approval`] refuses, or when the stated approval
    /// is not the one due.
    pub fn release(
        &mut self,
        seq: u64,
        hold: u64,
        approval: u64,
        principal: &str,
    ) -> Result<Approval, String> {
        let due = self.next_approval(hold, principal)?;
        if due.number() != approval {
            return Err(format!(
                "hold.release of hold {hold} states approval {approval}, but approval {} is due",
                due.number()
            ));
        }
        if let Some(h) = self.holds.get_mut(&hold) {
            match due {
                Approval::First => h.first_approval = Some((principal.to_string(), seq)),
                Approval::Second => h.released = Some(seq),
            }
        }
        Ok(due)
    }

    /// The first hold in force just before entry `seq` that covers a
    /// payload made by an entry with `attrs`.
    pub fn holding_at(&self, seq: u64, attrs: &EntryAttrs) -> Option<&HoldState> {
        self.holds
            .values()
            .find(|h| h.active_at(seq) && h.scope.covers(attrs))
    }

    /// Whether any hold was in force just before entry `seq`.
    pub fn any_active_at(&self, seq: u64) -> bool {
        self.holds.values().any(|h| h.active_at(seq))
    }

    /// Replay one verified `hold.*` leaf (`data` its data) at index `seq`.
    pub fn replay(
        &mut self,
        kind: EventKind,
        seq: u64,
        principal: &str,
        data: &Map<String, Value>,
    ) -> Result<(), String> {
        let reason = data
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match kind {
            EventKind::HoldPlace => {
                self.place(seq, HoldScope::from_data(data)?, principal, reason);
                Ok(())
            }
            EventKind::HoldRelease => {
                let n = |k: &str| data.get(k).and_then(Value::as_u64).unwrap_or(u64::MAX);
                let hold = n("hold");
                if hold >= seq {
                    return Err(format!(
                        "hold.release names entry {hold}, not an earlier one"
                    ));
                }
                self.release(seq, hold, n("approval"), principal)
                    .map(|_| ())
            }
            _ => Ok(()),
        }
    }
}

/// The shape rules of the retention kinds' `data` that a member table
/// cannot say (checked with every leaf, see `crate::rules`).
pub(crate) fn check_shape(kind: EventKind, d: &Map<String, Value>) -> Result<(), String> {
    match kind {
        EventKind::HoldPlace => HoldScope::from_data(d).map(|_| ()),
        EventKind::HoldRelease => match d.get("approval").and_then(Value::as_u64) {
            Some(1 | 2) => Ok(()),
            _ => Err("hold.release data.approval must be 1 or 2".into()),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(session: Option<&str>, principal: &str, ts: &str) -> EntryAttrs {
        EntryAttrs {
            session: session.map(str::to_string),
            principal: principal.into(),
            ts: ts.into(),
        }
    }

    #[test]
    fn scopes_cover_what_they_name() {
        let a = attrs(Some("s-1"), "alice", "2026-03-01T00:00:00.000000Z");
        assert!(HoldScope::Session("s-1".into()).covers(&a));
        assert!(!HoldScope::Session("s-2".into()).covers(&a));
        assert!(HoldScope::Principal("alice".into()).covers(&a));
        assert!(!HoldScope::Principal("bob".into()).covers(&a));
        let r = |f: &str, u: &str| HoldScope::Range {
            from: f.into(),
            until: u.into(),
        };
        assert!(r("2026-03-01T00:00:00.000000Z", "2026-03-02T00:00:00.000000Z").covers(&a));
        assert!(!r("2026-02-01T00:00:00.000000Z", "2026-03-01T00:00:00.000000Z").covers(&a));
    }

    #[test]
    fn release_needs_two_different_principals() {
        let mut b = HoldBook::default();
        b.place(5, HoldScope::Principal("x".into()), "alice", "case 1");
        assert_eq!(b.release(6, 5, 1, "alice"), Ok(Approval::First));
        assert!(b
            .release(7, 5, 2, "alice")
            .unwrap_err()
            .contains("dual control"));
        assert!(b
            .release(7, 5, 1, "bob")
            .unwrap_err()
            .contains("approval 2 is due"));
        assert_eq!(b.release(7, 5, 2, "bob"), Ok(Approval::Second));
        assert!(b
            .release(8, 5, 1, "carol")
            .unwrap_err()
            .contains("already released"));
        assert!(b
            .release(8, 4, 1, "carol")
            .unwrap_err()
            .contains("not a legal hold"));
        let a = attrs(None, "x", "2026-01-01T00:00:00.000000Z");
        assert!(b.holding_at(6, &a).is_some());
        assert!(
            b.holding_at(7, &a).is_some(),
            "in force until entry 7 itself"
        );
        assert!(b.holding_at(8, &a).is_none());
        assert!(b.holding_at(5, &a).is_none(), "not before it was placed");
    }

    #[test]
    fn exactly_one_scope() {
        let m = |v: Value| v.as_object().cloned().unwrap();
        assert!(HoldScope::from_data(&m(serde_json::json!({"session": "s"}))).is_ok());
        assert!(
            HoldScope::from_data(&m(serde_json::json!({"session": "s", "principal": "p"})))
                .is_err()
        );
        assert!(HoldScope::from_data(&m(
            serde_json::json!({"from": "2026-01-01T00:00:00.000000Z"})
        ))
        .is_err());
        assert!(HoldScope::from_data(&m(serde_json::json!({
            "from": "2026-02-01T00:00:00.000000Z", "until": "2026-01-01T00:00:00.000000Z"
        })))
        .is_err());
        assert!(HoldScope::from_data(&m(serde_json::json!({}))).is_err());
    }
}
