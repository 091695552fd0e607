//! The `@ask` convention, read off policies at load: which annotations mean
//! "ask", which approvals could lift a rule, and whether a rule mentions the
//! approval at all.
//!
//! A decision is Ask when (a) the bundle denies, (b) every determining
//! policy is a forbid carrying `@ask`, and (c) some granted approval would
//! make the bundle allow. For (c) stele decides again with each of a few
//! candidate approvals, all granted. Their approvers are `(hypothetical)`
//! (a user who is no one, so no principal), the users the determining
//! `@ask` rules name (`User::"…"`) and the first members of the teams they
//! name (`Team::"…"`); their methods and tickets are empty, or the strings
//! and `like` patterns those rules contain (each `*` of a pattern as
//! nothing and as `0`). So a rule that requires `context.approval.ticket
//! like "CHG-*"` asks (a ticket `CHG-` would lift it), so does one that
//! requires an approver other than the principal or in a team, and a rule
//! no approval can lift is a plain Deny.
//!
//! The runtime asks the same question about the approvers it can reach
//! ([`crate::Bundle::could_grant`]): a rule only someone else may lift is
//! refused, not asked, when the requester is the only person there.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::request::{Approval, ApprovalOutcome};

/// The approver (and method) of the default candidate approval.
pub(crate) const HYPOTHETICAL_APPROVER: &str = "(hypothetical)";

/// Most strings, users or members per team taken from one decision's
/// `@ask` rules.
const MAX_VALUES: usize = 8;

/// Most candidate approvals tried for one decision.
const MAX_CANDIDATES: usize = 1024;

/// What an `@ask` forbid's conditions hold, from which candidate approvals
/// are built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AskLiterals {
    /// Strings and `like`-pattern instances (methods and tickets).
    pub strings: Vec<String>,
    /// Ids of `User::"…"` literals (approvers).
    pub users: Vec<String>,
    /// Ids of `Team::"…"` literals (their members are approvers).
    pub teams: Vec<String>,
}

/// How close an annotation key is to `@ask`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AskSpelling {
    /// `@ask` itself.
    Exact,
    /// Unmistakably meant as `@ask` (`@Ask`, `@ASK`, `@asks`).
    Variant,
    /// Possibly meant as `@ask` (`@aks`, `@ask_human`, `@sk`).
    Near,
    /// Something else.
    Other,
}

/// Classify an annotation key against `ask`.
pub(crate) fn ask_spelling(key: &str) -> AskSpelling {
    let lower = key.to_lowercase();
    if key == "ask" {
        AskSpelling::Exact
    } else if lower == "ask" || lower == "asks" {
        AskSpelling::Variant
    } else if lower.starts_with("ask") || osa_distance(&lower, "ask") <= 1 {
        AskSpelling::Near
    } else {
        AskSpelling::Other
    }
}

/// Optimal string alignment distance (Levenshtein plus adjacent swaps).
fn osa_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    if let Some(first) = d.first_mut() {
        for (j, cell) in first.iter_mut().enumerate() {
            *cell = j;
        }
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[n][m]
}

/// The strings, `like`-pattern instances and user and team literals in a
/// policy's conditions (from its JSON form).
pub(crate) fn literals(est: &Value) -> AskLiterals {
    let mut strings = BTreeSet::new();
    let mut users = BTreeSet::new();
    let mut teams = BTreeSet::new();
    // An explicit work list: the expression may be deep.
    let mut todo: Vec<&Value> = est
        .get("conditions")
        .and_then(Value::as_array)
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    while let Some(v) = todo.pop() {
        match v {
            Value::Object(map) => {
                match map.get("Value") {
                    Some(Value::String(s)) => {
                        strings.insert(s.clone());
                    }
                    Some(Value::Object(lit)) => {
                        let entity = lit.get("__entity");
                        let ty = entity.and_then(|e| e.get("type")).and_then(Value::as_str);
                        let id = entity.and_then(|e| e.get("id")).and_then(Value::as_str);
                        match (ty, id) {
                            (Some("User"), Some(id)) => {
                                users.insert(id.to_owned());
                            }
                            (Some("Team"), Some(id)) => {
                                teams.insert(id.to_owned());
                            }
                            _ => {}
                        }
                    }
                    _ => {}
                }
                if let Some(pattern) = map
                    .get("like")
                    .and_then(|l| l.get("pattern"))
                    .and_then(Value::as_array)
                {
                    for wildcard in ["", "0"] {
                        let s: String = pattern
                            .iter()
                            .map(|p| p.get("Literal").and_then(Value::as_str).unwrap_or(wildcard))
                            .collect();
                        strings.insert(s);
                    }
                }
                todo.extend(map.values());
            }
            Value::Array(items) => todo.extend(items.iter()),
            _ => {}
        }
    }
    AskLiterals {
        strings: strings.into_iter().collect(),
        users: users.into_iter().collect(),
        teams: teams.into_iter().collect(),
    }
}

/// Whether a policy's conditions mention `context.approval` (an attribute
/// access or a `has` test).
pub(crate) fn mentions_approval(est: &Value) -> bool {
    let mut todo: Vec<&Value> = est
        .get("conditions")
        .and_then(Value::as_array)
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    while let Some(v) = todo.pop() {
        match v {
            Value::Object(map) => {
                for op in [".", "has"] {
                    if let Some(access) = map.get(op) {
                        let on_context = access
                            .get("left")
                            .and_then(|l| l.get("Var"))
                            .and_then(Value::as_str)
                            == Some("context");
                        let attr = access.get("attr").and_then(Value::as_str);
                        if on_context && attr == Some("approval") {
                            return true;
                        }
                    }
                }
                todo.extend(map.values());
            }
            Value::Array(items) => todo.extend(items.iter()),
            _ => {}
        }
    }
    false
}

/// Up to [`MAX_VALUES`] distinct values, in order.
fn distinct<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for v in values {
        if out.len() == MAX_VALUES {
            break;
        }
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Who may be asked, and how, when trying candidate approvals.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Asked<'a> {
    /// Anyone: the approvers the rules suggest (check (c)).
    Anyone,
    /// This one approver through this method (can they lift it?).
    Only {
        /// User id.
        approver: &'a str,
        /// Method.
        method: &'a str,
    },
}

/// The granted approvals to try, the default first; `members_of` lists a
/// team's users.
pub(crate) fn candidates<'a, M, I>(
    literals: impl Iterator<Item = &'a AskLiterals> + Clone,
    members_of: M,
    asked: Asked<'_>,
) -> Vec<Approval>
where
    M: Fn(&str) -> I,
    I: Iterator<Item = String>,
{
    let strings = distinct(
        literals
            .clone()
            .flat_map(|l| l.strings.iter().map(String::as_str)),
    );
    let (approvers, methods): (Vec<String>, Vec<&str>) = match asked {
        Asked::Anyone => {
            let mut approvers = vec![HYPOTHETICAL_APPROVER.to_owned()];
            let users = distinct(
                literals
                    .clone()
                    .flat_map(|l| l.users.iter().map(String::as_str)),
            );
            approvers.extend(users.iter().map(|u| (*u).to_owned()));
            let teams = distinct(literals.flat_map(|l| l.teams.iter().map(String::as_str)));
            for t in teams {
                approvers.extend(members_of(t).take(MAX_VALUES));
            }
            let mut seen = BTreeSet::new();
            approvers.retain(|a| seen.insert(a.clone()));
            let methods = std::iter::once(HYPOTHETICAL_APPROVER)
                .chain(strings.iter().copied())
                .collect();
            (approvers, methods)
        }
        Asked::Only { approver, method } => (vec![approver.to_owned()], vec![method]),
    };
    let mut out = Vec::new();
    'all: for approver in &approvers {
        for method in &methods {
            for ticket in std::iter::once("").chain(strings.iter().copied()) {
                if out.len() == MAX_CANDIDATES {
                    break 'all;
                }
                out.push(Approval {
                    outcome: ApprovalOutcome::Granted,
                    approver: approver.clone(),
                    method: (*method).to_owned(),
                    ticket: ticket.to_owned(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::str::FromStr;

    fn est(src: &str) -> Value {
        let p = cedar_policy::Policy::from_str(src).unwrap();
        p.to_json().unwrap()
    }

    #[test]
    fn spellings_of_ask() {
        use AskSpelling as A;
        for (k, want) in [
            ("ask", A::Exact),
            ("Ask", A::Variant),
            ("ASK", A::Variant),
            ("asks", A::Variant),
            ("aks", A::Near),
            ("sak", A::Near),
            ("ak", A::Near),
            ("ask_human", A::Near),
            ("task", A::Near),
            ("id", A::Other),
            ("severity", A::Other),
            ("approval_timeout_s", A::Other),
            ("desk", A::Other),
        ] {
            assert_eq!(ask_spelling(k), want, "{k}");
        }
    }

    #[test]
    fn literals_and_approval_mentions() {
        let e = est(
            r#"forbid (principal, action, resource) unless { context has approval && context.approval.granted && context.approval.ticket like "CHG-*" && context.approval.approver != User::"bob" && context.approval.approver in Team::"controllers" && context.approval.method == "web" };"#,
        );
        let l = literals(&e);
        assert!(l.strings.contains(&"CHG-".to_owned()), "{l:?}");
        assert!(l.strings.contains(&"CHG-0".to_owned()), "{l:?}");
        assert!(l.strings.contains(&"web".to_owned()), "{l:?}");
        assert_eq!(l.users, ["bob"]);
        assert_eq!(l.teams, ["controllers"]);
        assert!(mentions_approval(&e));
        assert!(!mentions_approval(&est(
            r#"forbid (principal, action, resource) when { context.sandbox.network };"#
        )));
        let members = |t: &str| {
            assert_eq!(t, "controllers");
            ["carol", "dave"].into_iter().map(str::to_owned)
        };
        let c = candidates(std::iter::once(&l), members, Asked::Anyone);
        assert_eq!(c[0].approver, HYPOTHETICAL_APPROVER);
        assert_eq!(c[0].ticket, "");
        assert!(c.iter().any(|a| a.ticket == "CHG-"));
        assert!(c.iter().any(|a| a.method == "web"));
        for who in ["bob", "carol", "dave"] {
            assert!(c.iter().any(|a| a.approver == who), "{who}");
        }
        let only = candidates(
            std::iter::once(&l),
            members,
            Asked::Only {
                approver: "alice",
                method: "tty",
            },
        );
        assert!(only
            .iter()
            .all(|a| a.approver == "alice" && a.method == "tty"));
        assert!(only.iter().any(|a| a.ticket == "CHG-0"));
    }
}
