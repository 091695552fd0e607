#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Every event kind maps to its intended OCSF 1.3 class (docs/siem.md,
//! "Field mapping"; docs/export-format.md §7) with the fields that class
//! needs: Network Activity (4001) for connections, HTTP Activity (4002) for
//! model requests, File System (1001) and Process (1007) Activity, API
//! Activity (6003) for the rest, decisions and approvals carrying their
//! outcome in `actor.authorizations`. Exhaustive over `EventKind::ALL`; the
//! expected table is written here, independently of the mapping.

use serde_json::Value;
use stele_audit::export::ocsf::{event, write_event, OcsfOrigin};
use stele_audit::leaf::Leaf;
use stele_audit::leaf_view::LeafText;
use stele_audit::{Actor, DecisionRecord, Effect, EventKind, Target};

/// (class_uid, activity_id) each kind must have.
fn expected(kind: &str) -> (u64, u64) {
    match kind {
        "file.open" => (1001, 14),
        "file.close" => (1001, 99),
        "exec.start" => (1007, 1),
        "exec.end" => (1007, 2),
        "net.connect" => (4001, 1),
        "net.close" => (4001, 2),
        "model.request" => (4002, 6),
        "tool.intent" | "mcp.call" | "hold.place" => (6003, 1),
        "audit.read" | "audit.export" | "mcp.list" => (6003, 2),
        "hold.release" => (6003, 3),
        "redaction" | "payload.expiry" | "log.archive" => (6003, 4),
        "log.genesis"
        | "log.open"
        | "log.close"
        | "heartbeat"
        | "clock.state"
        | "clock.step"
        | "session.start"
        | "session.end"
        | "session.interrupted"
        | "interrupted"
        | "model.response"
        | "tool.result"
        | "mcp.result"
        | "policy.decision"
        | "policy.load"
        | "approval.request"
        | "approval.grant"
        | "approval.deny"
        | "key.rotation"
        | "key.revocation"
        | "audit.alert" => (6003, 99),
        other => panic!("no expected class for {other}: add it here and to docs/siem.md"),
    }
}

fn leaf(kind: EventKind, target: Option<Target>, decision: Option<Effect>) -> Leaf {
    Leaf {
        actor: Actor {
            host: "build-7".into(),
            principal: "alice".into(),
            runtime: "stele/test".into(),
            teams: vec![],
        },
        boot: "0123456789abcdef".into(),
        data: None,
        decision: decision.map(|effect| DecisionRecord {
            bundle: "sha256:abc".into(),
            effect,
            layer: None,
            policies: vec!["p1".into()],
            reason: Some("because".into()),
        }),
        kind,
        log: "o.test/log".into(),
        outcome: None,
        payload: vec![],
        prev: None,
        refs: None,
        seq: 7,
        session: None,
        target,
        ts: "2026-01-02T03:04:05.000006Z".into(),
        v: 1,
    }
}

fn host_target() -> Target {
    Target {
        host: Some("api.example.com".into()),
        port: Some(443),
        scheme: Some("https".into()),
        model: Some("m-1".into()),
        provider: Some("example".into()),
        ..Default::default()
    }
}

/// The event, checked to be the bytes the exporter and the feed write.
fn ocsf(l: &Leaf) -> Value {
    let want = event(l, &[3; 32], "o.test/log");
    let mut got = Vec::new();
    write_event(
        &LeafText::of(l),
        &[3; 32],
        &OcsfOrigin::new("o.test/log"),
        &mut got,
    );
    assert_eq!(
        String::from_utf8(got).unwrap(),
        serde_json::to_string(&want).unwrap()
    );
    want
}

#[test]
fn every_kind_maps_to_its_class_with_the_fields_the_class_needs() {
    for kind in EventKind::ALL {
        for target in [None, Some(host_target())] {
            let e = ocsf(&leaf(kind, target.clone(), None));
            let (class, activity) = expected(kind.as_str());
            let what = format!("{} (target {})", kind.as_str(), target.is_some());
            assert_eq!(e["class_uid"], class, "{what}: {e}");
            assert_eq!(e["activity_id"], activity, "{what}");
            assert_eq!(e["category_uid"], class / 1000, "{what}");
            assert_eq!(e["type_uid"], class * 100 + activity, "{what}");
            assert_eq!(e["unmapped"]["stele_kind"], kind.as_str());
            match class {
                4001 => {
                    assert_eq!(e["connection_info"]["direction_id"], 2, "{what}");
                    assert_eq!(e["src_endpoint"]["hostname"], "build-7", "{what}");
                    assert!(e["dst_endpoint"].is_object(), "{what}");
                    assert!(e.get("http_request").is_none(), "{what}");
                }
                4002 => {
                    assert_eq!(e["http_request"]["http_method"], "POST", "{what}");
                    assert!(e["http_request"]["url"].is_object(), "{what}");
                    assert_eq!(e["src_endpoint"]["hostname"], "build-7", "{what}");
                    assert!(e["dst_endpoint"].is_object(), "{what}");
                    assert!(e.get("connection_info").is_none(), "{what}");
                }
                _ => {
                    for f in ["connection_info", "http_request", "src_endpoint"] {
                        assert!(e.get(f).is_none(), "{what}: {f} outside network classes");
                    }
                }
            }
            if target.is_some() && (class == 4001 || class == 4002) {
                assert_eq!(e["dst_endpoint"]["hostname"], "api.example.com", "{what}");
                assert_eq!(e["dst_endpoint"]["port"], 443, "{what}");
            }
            if class == 4002 && target.is_some() {
                let u = &e["http_request"]["url"];
                assert_eq!(
                    (&u["hostname"], &u["port"], &u["scheme"]),
                    (
                        &Value::from("api.example.com"),
                        &Value::from(443),
                        &Value::from("https")
                    )
                );
                assert_eq!(e["ai_model"]["name"], "m-1");
            }
            // Only approvals say an authorization outcome without a decision.
            let approval = match kind.as_str() {
                "approval.request" => Some("Approval required"),
                "approval.grant" => Some("Approved"),
                "approval.deny" => Some("Denied"),
                _ => None,
            };
            match approval {
                Some(d) => assert_eq!(e["actor"]["authorizations"][0]["decision"], d),
                None => assert!(e["actor"].get("authorizations").is_none(), "{what}"),
            }
        }
    }
}

#[test]
fn a_decision_is_an_authorization_result_with_its_policy() {
    for (effect, decision, disposition) in [
        (Effect::Allow, "Allowed", "Allowed"),
        (Effect::Deny, "Denied", "Blocked"),
        (Effect::Ask, "Approval required", "Approval required"),
    ] {
        for kind in [
            EventKind::PolicyDecision,
            EventKind::ApprovalGrant,
            EventKind::NetConnect,
            EventKind::ModelRequest,
        ] {
            let e = ocsf(&leaf(kind, Some(host_target()), Some(effect)));
            let a = &e["actor"]["authorizations"];
            assert_eq!(a.as_array().unwrap().len(), 1, "{e}");
            assert_eq!(a[0]["decision"], decision);
            assert_eq!(a[0]["policy"]["uid"], "sha256:abc");
            assert_eq!(a[0]["policy"]["name"], "p1");
            assert_eq!(a[0]["policy"]["desc"], "because");
            assert_eq!(e["disposition"], disposition);
        }
    }
}
