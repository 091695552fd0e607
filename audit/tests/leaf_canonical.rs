#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The leaf encoding is RFC 8785 canonical: checked against `serde_jcs`.

use proptest::prelude::*;
use stele_audit::leaf::{Leaf, LeafError, SessionLink};
use stele_audit::{Actor, DecisionRecord, Effect, EventKind, Outcome, Status, Target};

fn arb_text() -> impl Strategy<Value = String> {
    // Control characters, quotes, backslashes, non-ASCII and astral characters.
    proptest::collection::vec(
        prop_oneof![
            any::<char>(),
            Just('"'),
            Just('\\'),
            Just('\u{7f}'),
            Just('\n'),
            Just('\u{1}')
        ],
        0..12,
    )
    .prop_map(|v| v.into_iter().collect())
}

prop_compose! {
    fn arb_leaf()(
        principal in arb_text(), path in proptest::option::of(arb_text()), seq in 0u64..(1 << 53),
        n in 0u64..1000, kind in 0usize..30, key in "[a-z_]{1,8}", val in arb_text(), num in -(1i64 << 52)..(1i64 << 52),
        policies in proptest::collection::vec(arb_text(), 0..3),
    ) -> Leaf {
        Leaf {
            actor: Actor { host: "h".into(), principal, runtime: "stele/t".into(), teams: vec!["b".into(), "a".into()] },
            boot: "b00t".into(),
            data: Some(serde_json::json!({ key.clone(): val, "zz": num, "aa": [1, "x", {"k": true}] })),
            decision: Some(DecisionRecord { bundle: "sha256:00".into(), effect: Effect::Ask, layer: None, policies, reason: Some("r".into()) }),
            kind: EventKind::ALL[kind],
            log: "example.org/log".into(),
            outcome: Some(Outcome { code: Some(num), ..Outcome::status(Status::Ok) }),
            payload: vec![],
            prev: Some("AAAA".into()),
            refs: None,
            seq,
            session: Some(SessionLink { id: "s".into(), n, prev: None }),
            target: Some(Target { path, port: Some(443), ..Target::default() }),
            ts: "2026-01-01T00:00:00.000000Z".into(),
            v: 1,
        }
    }
}

proptest! {
    #[test]
    fn validator_accepts_jcs_and_rejects_whitespace(leaf in arb_leaf(), pos in any::<prop::sample::Index>()) {
        let jcs = serde_jcs::to_vec(&serde_json::to_value(&leaf).unwrap()).unwrap();
        prop_assert!(stele_audit::canonical::check(&jcs).is_ok());
        // A space anywhere that leaves the JSON value unchanged is non-canonical.
        let at = pos.index(jcs.len() + 1);
        let mut spaced = jcs.clone();
        spaced.insert(at, b' ');
        let same = serde_json::from_slice::<serde_json::Value>(&spaced).ok()
            == serde_json::from_slice::<serde_json::Value>(&jcs).ok();
        if same {
            prop_assert!(stele_audit::canonical::check(&spaced).is_err());
        }
    }

    #[test]
    fn encoding_equals_jcs_and_round_trips(leaf in arb_leaf()) {
        let ours = leaf.encode().unwrap();
        let jcs = serde_jcs::to_vec(&serde_json::to_value(&leaf).unwrap()).unwrap();
        prop_assert_eq!(&String::from_utf8_lossy(&ours), &String::from_utf8_lossy(&jcs));
        let mut scratch = Vec::new();
        let back = Leaf::decode_canonical(&ours, &mut scratch).unwrap();
        prop_assert_eq!(back.encode().unwrap(), ours);
    }
}

#[test]
fn non_canonical_forms_are_rejected() {
    let leaf = Leaf {
        actor: Actor {
            host: "h".into(),
            principal: "p".into(),
            runtime: "r".into(),
            teams: vec![],
        },
        boot: "b".into(),
        data: Some(serde_json::json!({"b": 1, "a": 2})),
        decision: None,
        kind: EventKind::Heartbeat,
        log: "l".into(),
        outcome: None,
        payload: vec![],
        prev: None,
        refs: None,
        seq: 3,
        session: None,
        target: None,
        ts: "t".into(),
        v: 1,
    };
    let good = leaf.encode().unwrap();
    let text = String::from_utf8(good.clone()).unwrap();
    assert!(text.contains(r#""data":{"a":2,"b":1}"#), "{text}");
    let mut s = Vec::new();
    assert!(Leaf::decode_canonical(&good, &mut s).is_ok());
    for bad in [
        text.replacen(r#""data":{"a":2,"b":1}"#, r#""data":{"b":1,"a":2}"#, 1), // key order
        text.replacen(r#""seq":3"#, r#""seq": 3"#, 1),                          // whitespace
        text.replacen(r#""seq":3"#, r#""seq":3.0"#, 1),                         // float spelling
        text.replacen(r#""boot":"b""#, r#""boot":"\u0062""#, 1),                // escaped letter
        text.replacen("{", r#"{"zzz":null,"#, 1),                               // unknown field
    ] {
        let r = Leaf::decode_canonical(bad.as_bytes(), &mut s);
        assert!(
            matches!(r, Err(LeafError::NotCanonical) | Err(LeafError::Schema(_))),
            "{bad} -> {r:?}"
        );
    }
    let mut big = leaf.clone();
    big.data = Some(serde_json::json!({"x": "y".repeat(70_000)}));
    assert!(matches!(big.encode(), Err(LeafError::TooLarge(_))));
    let mut float = leaf;
    float.data = Some(serde_json::json!({"x": 1.5}));
    assert!(matches!(float.encode(), Err(LeafError::Data(_))));
}

/// Data whose keys are already in order is encoded as it is; data out of
/// order at any depth is sorted first. Both give the JCS bytes.
#[test]
fn data_is_sorted_at_every_depth_whatever_its_order() {
    let base = |data: serde_json::Value| Leaf {
        actor: Actor {
            host: "h".into(),
            principal: "p".into(),
            runtime: "r".into(),
            teams: vec![],
        },
        boot: "b".into(),
        data: Some(data),
        decision: None,
        kind: EventKind::Heartbeat,
        log: "l".into(),
        outcome: None,
        payload: vec![],
        prev: None,
        refs: None,
        seq: 3,
        session: None,
        target: None,
        ts: "t".into(),
        v: 1,
    };
    let sorted = serde_json::json!({"a": [{"x": 1, "y": {"m": 1, "n": 2}}], "b": {"c": 1, "d": 2}});
    for data in [
        sorted.clone(),
        serde_json::json!({"b": {"c": 1, "d": 2}, "a": [{"x": 1, "y": {"m": 1, "n": 2}}]}),
        serde_json::json!({"a": [{"x": 1, "y": {"n": 2, "m": 1}}], "b": {"c": 1, "d": 2}}),
        serde_json::json!({"a": [{"y": {"m": 1, "n": 2}, "x": 1}], "b": {"d": 2, "c": 1}}),
    ] {
        let leaf = base(data);
        let ours = leaf.encode().unwrap();
        let jcs = serde_jcs::to_vec(&serde_json::to_value(&leaf).unwrap()).unwrap();
        assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&jcs));
        assert_eq!(ours, base(sorted.clone()).encode().unwrap());
    }
}
