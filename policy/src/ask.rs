//! The `@ask` convention, read off policies at load: which annotations mean
//! "ask", which approvals could lift a rule, and whether a rule mentions the
//! approval at all.
//!
//! A decision is Ask when (a) the bundle denies, (b) every determining
//! policy is a forbid carrying `@ask`, and (c) some granted approval would
//! make the bundle allow. For (c) stele decides again with each of a few
//! candidate approvals, all granted: approver `(hypothetical)` with an empty
//! ticket, and approvals whose approver and ticket are built from the
//! strings and `like` patterns the determining `@ask` rules contain (each
//! `*` of a pattern as nothing and as `0`). So a rule that requires
//! `context.approval.ticket like "CHG-*"` asks (a ticket `CHG-` would lift
//! it), and a rule no approval can lift is a plain Deny.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::request::{Approval, ApprovalOutcome};

/// The approver of the default candidate approval.
pub(crate) const HYPOTHETICAL_APPROVER: &str = "(hypothetical)";

/// Most strings taken from one decision's `@ask` rules for each field.
const MAX_VALUES: usize = 8;

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

/// The strings and `like`-pattern instances in a policy's conditions (from
/// its JSON form): the values a candidate approval is built from.
pub(crate) fn literals(est: &Value) -> Vec<String> {
    let mut out = BTreeSet::new();
    // An explicit work list: the expression may be deep.
    let mut todo: Vec<&Value> = est
        .get("conditions")
        .and_then(Value::as_array)
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    while let Some(v) = todo.pop() {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(s)) = map.get("Value") {
                    out.insert(s.clone());
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
                        out.insert(s);
                    }
                }
                todo.extend(map.values());
            }
            Value::Array(items) => todo.extend(items.iter()),
            _ => {}
        }
    }
    out.into_iter().collect()
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

/// The granted approvals to try for check (c), the default first.
pub(crate) fn candidates<'a>(literals: impl Iterator<Item = &'a str>) -> Vec<Approval> {
    let mut values: Vec<&str> = Vec::new();
    for l in literals {
        if values.len() == MAX_VALUES {
            break;
        }
        if !values.contains(&l) {
            values.push(l);
        }
    }
    let approvers = std::iter::once(HYPOTHETICAL_APPROVER).chain(values.iter().copied());
    let mut out = Vec::new();
    for approver in approvers {
        for ticket in std::iter::once("").chain(values.iter().copied()) {
            out.push(Approval {
                outcome: ApprovalOutcome::Granted,
                approver: approver.to_owned(),
                ticket: ticket.to_owned(),
            });
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
            r#"forbid (principal, action, resource) unless { context has approval && context.approval.granted && context.approval.ticket like "CHG-*" && context.approval.approver != "bob" };"#,
        );
        let l = literals(&e);
        assert!(l.contains(&"CHG-".to_owned()), "{l:?}");
        assert!(l.contains(&"CHG-0".to_owned()), "{l:?}");
        assert!(l.contains(&"bob".to_owned()), "{l:?}");
        assert!(mentions_approval(&e));
        assert!(!mentions_approval(&est(
            r#"forbid (principal, action, resource) when { context.sandbox.network };"#
        )));
        let c = candidates(l.iter().map(String::as_str));
        assert_eq!(c[0].approver, HYPOTHETICAL_APPROVER);
        assert_eq!(c[0].ticket, "");
        assert!(c.iter().any(|a| a.ticket == "CHG-"));
    }
}
