//! Alert rules over the entries a sink delivers: each hit is an OCSF
//! Detection Finding (class 2004) delivered right after the entry that
//! triggered it (SOC 2 CC7.2 evidence). The rules read only the log, in
//! order, with their memory kept in the sink's cursor, so a re-delivery
//! after a crash produces the same findings with the same ids.
//!
//! The rules and their fields are documented in docs/siem.md, "Alerts".

use std::collections::{BTreeMap, VecDeque};

use serde_json::{json, Value};
use stele_audit::leaf_view::{DataView, LeafText};
use stele_audit::merkle::Hash;
use stele_audit::{Effect, EventKind};

use super::config::AlertRules;

/// The rules, by the name findings carry (`finding_info.analytic.uid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The log failed the feed's verification.
    VerificationFailure,
    /// Time between two entries of a running writer over the threshold,
    /// or a writer that started again without having closed the log.
    LoggingGap,
    /// A policy bundle with a digest other than the one before was loaded.
    PolicyChange,
    /// One principal denied at least N times within the window.
    DenialBurst,
    /// An approval answered by an approver not expected.
    UnusualApprover,
    /// The log itself recorded an `audit.alert` entry.
    LogAlert,
}

impl Rule {
    /// The rule's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerificationFailure => "verification_failure",
            Self::LoggingGap => "logging_gap",
            Self::PolicyChange => "policy_change",
            Self::DenialBurst => "denial_burst",
            Self::UnusualApprover => "unusual_approver",
            Self::LogAlert => "log_alert",
        }
    }

    /// OCSF `severity_id` (3 medium, 4 high, 5 critical); a `log_alert`
    /// about the feed's backlog is 4.
    pub fn severity_id(self) -> u8 {
        match self {
            Self::VerificationFailure | Self::LogAlert => 5,
            Self::LoggingGap => 4,
            Self::PolicyChange | Self::DenialBurst | Self::UnusualApprover => 3,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::VerificationFailure => "Audit log failed verification",
            Self::LoggingGap => "Gap in audit logging",
            Self::PolicyChange => "Policy bundle changed",
            Self::DenialBurst => "Burst of policy denials",
            Self::UnusualApprover => "Approval by an unusual approver",
            Self::LogAlert => "Audit log alert",
        }
    }
}

/// The rules' memory at a cursor (serialised in the cursor file).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorState {
    /// Time (ms) and kind of the previous entry.
    pub last: Option<(i64, String)>,
    /// Digest of the policy bundle last loaded.
    pub policy: Option<String>,
    /// Per principal, times (ms) of recent denials.
    pub denials: BTreeMap<String, VecDeque<i64>>,
    /// The newest approvers, oldest first.
    pub approvers: VecDeque<String>,
}

/// A finding: which rule, and its OCSF event.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The rule that fired.
    pub rule: Rule,
    /// The OCSF Detection Finding, one line of JSON.
    pub json: Vec<u8>,
}

/// What a finding points at in the log.
#[derive(Debug, Clone, Copy)]
pub struct Anchor<'a> {
    /// The log origin.
    pub origin: &'a str,
    /// Index of the entry.
    pub seq: u64,
    /// Its leaf hash.
    pub hash: &'a Hash,
    /// Its time in ms since the epoch.
    pub time_ms: i64,
}

/// Milliseconds since the epoch of an RFC 3339 time (`None` if unparsable).
pub fn epoch_ms(ts: &str) -> Option<i64> {
    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

impl DetectorState {
    /// Run the rules over the next entry; findings go to `out`.
    pub fn observe(
        &mut self,
        rules: &AlertRules,
        l: &LeafText<'_>,
        at: Anchor<'_>,
        out: &mut Vec<Finding>,
    ) {
        let kind = l.kind;
        let principal = l.actor.principal.text();
        // Logging gaps: a writer that was running (the entry before is not
        // `log.close`) and wrote nothing, not even a heartbeat, for longer
        // than the threshold; or a writer that opened the log again
        // without having closed it (it died).
        if let Some((prev_ms, prev_kind)) = &self.last {
            let gap_ms = at.time_ms.saturating_sub(*prev_ms);
            let closed = prev_kind == EventKind::LogClose.as_str();
            if !closed && gap_ms > (rules.gap_secs as i64).saturating_mul(1000) {
                out.push(finding(
                    Rule::LoggingGap,
                    at,
                    &principal,
                    format!(
                        "no entry for {} s after a {prev_kind} entry (threshold {} s): the writer stopped without closing the log or its heartbeats are missing",
                        gap_ms / 1000,
                        rules.gap_secs
                    ),
                    json!({"gap_secs": gap_ms / 1000, "threshold_secs": rules.gap_secs, "previous_kind": prev_kind, "reason": "time_gap"}),
                ));
            } else if kind == EventKind::LogOpen && !closed {
                out.push(finding(
                    Rule::LoggingGap,
                    at,
                    &principal,
                    format!("the log was opened again after a {prev_kind} entry, without log.close: the previous writer ended abnormally"),
                    json!({"gap_secs": gap_ms / 1000, "threshold_secs": rules.gap_secs, "previous_kind": prev_kind, "reason": "unclean_restart"}),
                ));
            }
        }
        self.last = Some((at.time_ms, kind.as_str().to_string()));
        match kind {
            EventKind::PolicyLoad | EventKind::SessionStart => {
                if let Some(d) = data_str(l, "policy_bundle") {
                    if self.policy.as_deref() != Some(d.as_str()) {
                        let before = self.policy.replace(d.clone());
                        out.push(finding(
                            Rule::PolicyChange,
                            at,
                            &principal,
                            format!(
                                "policy bundle {d} in force (before: {})",
                                before.as_deref().unwrap_or("none seen")
                            ),
                            json!({"digest": d, "previous_digest": before, "entry_kind": kind.as_str()}),
                        ));
                    }
                }
            }
            EventKind::ApprovalGrant | EventKind::ApprovalDeny => {
                if let Some(who) = data_str(l, "approver") {
                    self.approval(rules, &who, kind, at, out);
                }
            }
            EventKind::AuditAlert => {
                let check = data_str(l, "check").unwrap_or_default();
                let reason = data_str(l, "reason").unwrap_or_default();
                // The log's own verification finding it altered is critical;
                // the feed's backlog crossing its limit is high.
                let sev = if check.starts_with("feed.") { 4 } else { 5 };
                out.push(finding_with(
                    Rule::LogAlert,
                    sev,
                    at,
                    &principal,
                    format!("the log recorded an alert ({check}): {reason}"),
                    json!({"check": check, "reason": reason}),
                ));
            }
            _ => {}
        }
        if l.decision.is_some_and(|d| d.effect == Effect::Deny) {
            let window = (rules.denials_window_secs as i64).saturating_mul(1000);
            let q = self.denials.entry(principal.to_string()).or_default();
            q.push_back(at.time_ms);
            while q.front().is_some_and(|t| *t < at.time_ms - window) {
                q.pop_front();
            }
            if q.len() >= rules.denials as usize {
                let first = q.front().copied().unwrap_or(at.time_ms);
                q.clear();
                out.push(finding(
                    Rule::DenialBurst,
                    at,
                    &principal,
                    format!(
                        "{principal} was denied {} times within {} s (threshold {} in {} s)",
                        rules.denials,
                        (at.time_ms - first) / 1000,
                        rules.denials,
                        rules.denials_window_secs
                    ),
                    json!({"principal": principal, "count": rules.denials, "window_secs": rules.denials_window_secs}),
                ));
            }
        }
        // Forget principals whose denials are all outside the window.
        let window = (rules.denials_window_secs as i64).saturating_mul(1000);
        self.denials
            .retain(|_, q| q.back().is_some_and(|t| *t >= at.time_ms - window));
    }

    fn approval(
        &mut self,
        rules: &AlertRules,
        who: &str,
        kind: EventKind,
        at: Anchor<'_>,
        out: &mut Vec<Finding>,
    ) {
        let unusual = if rules.approvers.is_empty() {
            (!self.approvers.iter().any(|a| a == who)).then(|| {
                format!(
                    "{who} answered an approval and is not among the approvers of the previous {} approvals",
                    self.approvers.len()
                )
            })
        } else {
            (!rules.approvers.iter().any(|a| a == who)).then(|| {
                format!("{who} answered an approval and is not in the configured approvers list")
            })
        };
        if let Some(desc) = unusual {
            let basis = if rules.approvers.is_empty() {
                "history"
            } else {
                "list"
            };
            out.push(finding(
                Rule::UnusualApprover,
                at,
                who,
                desc,
                json!({"approver": who, "answer": kind.as_str(), "basis": basis, "history": self.approvers.len()}),
            ));
        }
        self.approvers.push_back(who.to_string());
        while self.approvers.len() > rules.approver_history {
            self.approvers.pop_front();
        }
    }
}

/// A string member of the entry's `data`.
fn data_str(l: &LeafText<'_>, key: &str) -> Option<String> {
    let v: Value = match l.data? {
        DataView::Raw(b) => serde_json::from_slice(b).ok()?,
        DataView::Typed(v) => v.clone(),
    };
    v.get(key)?.as_str().map(str::to_string)
}

/// A verification failure found before delivering `[from, to)`.
pub fn verification_failure(origin: &str, from: u64, to: u64, at_ms: i64, why: &str) -> Finding {
    let anchor = Anchor {
        origin,
        seq: from,
        hash: &[0; 32],
        time_ms: at_ms,
    };
    let mut f = finding(
        Rule::VerificationFailure,
        anchor,
        "system",
        format!("entries {from}..{to} failed verification; the feed stops delivering: {why}"),
        json!({"from": from, "to": to, "reason": why}),
    );
    // No entry's hash to point at: the range is what failed.
    if let Ok(mut v) = serde_json::from_slice::<Value>(&f.json) {
        if let Some(o) = v.as_object_mut() {
            o.remove("fingerprint");
        }
        f.json = serde_json::to_vec(&v).unwrap_or(f.json);
    }
    f
}

fn finding(rule: Rule, at: Anchor<'_>, actor: &str, desc: String, fields: Value) -> Finding {
    finding_with(rule, rule.severity_id(), at, actor, desc, fields)
}

fn finding_with(
    rule: Rule,
    sev: u8,
    at: Anchor<'_>,
    actor: &str,
    desc: String,
    fields: Value,
) -> Finding {
    let uid = format!("{}/{}/{}", at.origin, at.seq, rule.as_str());
    let sev_name = match sev {
        5 => "Critical",
        4 => "High",
        _ => "Medium",
    };
    let v = json!({
        "activity_id": 1,
        "activity_name": "Create",
        "category_uid": 2,
        "class_uid": 2004,
        "type_uid": 200401,
        "severity_id": sev,
        "severity": sev_name,
        "status_id": 1,
        "status": "New",
        "time": at.time_ms,
        "message": desc,
        "actor": {"user": {"name": actor}},
        "chain_uid": at.origin,
        "fingerprint": hex::encode(at.hash),
        "finding_info": {
            "uid": uid,
            "title": rule.title(),
            "desc": desc,
            "types": [rule.as_str()],
            "analytic": {"name": format!("stele.{}", rule.as_str()), "uid": rule.as_str(), "type_id": 1, "type": "Rule"},
            "related_events": [{"uid": format!("{}/{}", at.origin, at.seq)}],
        },
        "metadata": {
            "version": stele_audit::export::ocsf::OCSF_VERSION,
            "uid": uid,
            "log_name": at.origin,
            "sequence": at.seq,
            "product": {"name": "stele", "vendor_name": "stele", "version": format!("stele/{}", env!("CARGO_PKG_VERSION"))},
        },
        "unmapped": {"stele_rule": rule.as_str(), "log_index": at.seq, "leaf_hash": hex::encode(at.hash), "fields": fields},
    });
    Finding {
        rule,
        json: serde_json::to_vec(&v).unwrap_or_default(),
    }
}

#[cfg(test)]
#[path = "alerts_tests.rs"]
mod tests;
