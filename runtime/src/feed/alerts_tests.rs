#![allow(clippy::unwrap_used)]
//! Each rule fires on its case and stays quiet on the near miss.

use super::*;
use stele_audit::leaf::Leaf;

fn leaf(seq: u64, kind: &str, ts: &str, principal: &str, extra: Value) -> Leaf {
    let mut v = json!({
        "v": 1, "seq": seq, "kind": kind, "log": "o", "boot": "0123456789abcdef",
        "ts": ts, "actor": {"host": "h", "principal": principal, "runtime": "stele/0"},
    });
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    serde_json::from_value(v).unwrap()
}

fn run(rules: &AlertRules, leaves: &[Leaf]) -> Vec<(u64, Rule, Value)> {
    let mut st = DetectorState::default();
    let mut out = Vec::new();
    let mut found = Vec::new();
    for l in leaves {
        let t = LeafText::of(l);
        let at = Anchor {
            origin: "o",
            seq: l.seq,
            hash: &[1; 32],
            time_ms: epoch_ms(&l.ts).unwrap(),
        };
        // Round-trip the state as the cursor file does.
        st = serde_json::from_str(&serde_json::to_string(&st).unwrap()).unwrap();
        st.observe(rules, &t, at, &mut found);
        for f in found.drain(..) {
            let v: Value = serde_json::from_slice(&f.json).unwrap();
            out.push((l.seq, f.rule, v));
        }
    }
    out
}

fn ts(s: u64) -> String {
    format!("2026-01-01T00:{:02}:{:02}.000000Z", s / 60, s % 60)
}

#[test]
fn gaps_between_entries_of_a_running_writer_are_found() {
    let r = AlertRules {
        gap_secs: 100,
        ..Default::default()
    };
    let none = json!({});
    let found = run(
        &r,
        &[
            leaf(1, "log.open", &ts(0), "system", none.clone()),
            leaf(2, "heartbeat", &ts(60), "system", none.clone()),
            // 101 s later: a gap.
            leaf(3, "heartbeat", &ts(161), "system", none.clone()),
            leaf(4, "log.close", &ts(170), "system", none.clone()),
            // After a clean close, any pause is fine.
            leaf(5, "log.open", &ts(3000), "system", none.clone()),
            // Opened again without a close: the writer died.
            leaf(6, "log.open", &ts(3001), "system", none),
        ],
    );
    let gaps: Vec<_> = found.iter().map(|(s, r, _)| (*s, *r)).collect();
    assert_eq!(gaps, vec![(3, Rule::LoggingGap), (6, Rule::LoggingGap)]);
    let f = &found[0].2;
    assert_eq!(f["class_uid"], 2004);
    assert_eq!(f["metadata"]["sequence"], 3);
    assert_eq!(f["unmapped"]["fields"]["gap_secs"], 101);
    assert_eq!(
        found[1].2["unmapped"]["fields"]["reason"],
        "unclean_restart"
    );
}

#[test]
fn policy_changes_denial_bursts_and_unusual_approvers() {
    let r = AlertRules {
        denials: 3,
        denials_window_secs: 10,
        approver_history: 2,
        ..Default::default()
    };
    let deny = json!({"decision": {"bundle": "sha256:b", "effect": "deny", "policies": ["p"]}});
    let load = |d: &str| json!({"data": {"policy_bundle": d}});
    let appr = |w: &str| json!({"data": {"approver": w, "method": "tty"}});
    let found = run(
        &r,
        &[
            leaf(0, "session.start", &ts(0), "ann", load("sha256:a")),
            leaf(1, "policy.load", &ts(1), "ann", load("sha256:a")),
            leaf(2, "policy.load", &ts(2), "ann", load("sha256:b")),
            // Two denials within 10 s, then a third 20 s later: no burst.
            leaf(3, "policy.decision", &ts(3), "ann", deny.clone()),
            leaf(4, "policy.decision", &ts(4), "ann", deny.clone()),
            leaf(5, "policy.decision", &ts(24), "ann", deny.clone()),
            // Another principal's denials do not count for ann.
            leaf(6, "policy.decision", &ts(25), "bob", deny.clone()),
            leaf(7, "policy.decision", &ts(26), "ann", deny.clone()),
            leaf(8, "policy.decision", &ts(27), "ann", deny),
            leaf(9, "approval.grant", &ts(30), "ann", appr("carol")),
            leaf(10, "approval.grant", &ts(31), "ann", appr("carol")),
            leaf(11, "approval.deny", &ts(32), "ann", appr("dave")),
            leaf(12, "approval.grant", &ts(33), "ann", appr("dave")),
            leaf(13, "approval.grant", &ts(34), "ann", appr("erin")),
            // carol fell out of the last 2 approvals.
            leaf(14, "approval.grant", &ts(35), "ann", appr("carol")),
        ],
    );
    let hits: Vec<_> = found.iter().map(|(s, r, _)| (*s, *r)).collect();
    assert_eq!(
        hits,
        vec![
            (0, Rule::PolicyChange),
            (2, Rule::PolicyChange),
            (8, Rule::DenialBurst),
            (9, Rule::UnusualApprover),
            (11, Rule::UnusualApprover),
            (13, Rule::UnusualApprover),
            (14, Rule::UnusualApprover),
        ]
    );
    assert_eq!(
        found[1].2["unmapped"]["fields"]["previous_digest"],
        "sha256:a"
    );
    assert_eq!(found[2].2["actor"]["user"]["name"], "ann");
    // With a list, only the list counts.
    let listed = AlertRules {
        approvers: vec!["carol".into()],
        ..Default::default()
    };
    let found = run(
        &listed,
        &[
            leaf(0, "approval.grant", &ts(0), "ann", appr("carol")),
            leaf(1, "approval.grant", &ts(1), "ann", appr("mallory")),
        ],
    );
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, 1);
    assert_eq!(found[0].2["unmapped"]["fields"]["basis"], "list");
}

#[test]
fn log_alerts_become_findings_with_their_severity() {
    let a = |check: &str| json!({"data": {"check": check, "reason": "r", "size": 3}});
    let found = run(
        &AlertRules::default(),
        &[
            leaf(1, "audit.alert", &ts(0), "system", a("full")),
            leaf(2, "audit.alert", &ts(1), "system", a("feed.backlog")),
        ],
    );
    let sev: Vec<_> = found
        .iter()
        .map(|(_, _, v)| v["severity_id"].clone())
        .collect();
    assert_eq!(sev, vec![json!(5), json!(4)]);
}
