#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The derived views written the fast way — OCSF events written directly
//! from borrowed text, the summary counted on it — are byte for byte what
//! the straightforward construction gives (`ocsf::event` as a
//! `serde_json::Value`, the summary of typed leaves), whether the text is
//! read from the leaf bytes (the verifier) or borrowed from a typed leaf
//! (the exporter): over leaves of every kind, with and without each
//! optional field, strings with escapes, quotes, control characters and
//! non-ASCII text, and times valid or not.

use proptest::prelude::*;
use stele_audit::event::PayloadRef;
use stele_audit::export::ocsf::{event, write_event, OcsfOrigin};
use stele_audit::export::summary::SummaryBuilder;
use stele_audit::leaf::{Leaf, SessionLink};
use stele_audit::leaf_view::{LeafText, LeafView};
use stele_audit::{Actor, DecisionRecord, Effect, EventKind, Outcome, Refs, Status, Target};

fn arb_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            6 => proptest::char::range('a', 'z'),
            1 => any::<char>(),
            1 => Just('"'),
            1 => Just('\\'),
            1 => Just('/'),
            1 => Just(' '),
            1 => Just(','),
            1 => Just('\n'),
            1 => Just('\u{1f}'),
            1 => Just('\u{7f}'),
            1 => Just('é'),
            1 => Just('中'),
            1 => Just('😀'),
        ],
        0..12,
    )
    .prop_map(|v| v.into_iter().collect())
}

/// Times: mostly valid leaf times (any year from 0000, leap days), some
/// not (which the OCSF view maps to 0).
fn arb_ts() -> impl Strategy<Value = String> {
    let valid = (
        0u32..10_000,
        1u32..13,
        1u32..32,
        0u32..24,
        0u32..60,
        0u32..60,
        0u32..1_000_000,
    )
        .prop_map(|(y, mo, d, h, mi, s, us)| {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{us:06}Z")
        });
    prop_oneof![
        8 => valid,
        1 => Just("2024-02-29T23:59:59.999999Z".to_string()),
        1 => Just("1969-12-31T23:59:59.999500Z".to_string()),
        1 => arb_text(),
    ]
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(serde_json::Value::from),
        arb_text().prop_map(serde_json::Value::from),
    ];
    let value = leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-z_]{0,6}", inner, 0..3)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    (
        proptest::collection::btree_map("[a-z_]{0,6}", value, 0..3),
        proptest::option::of(arb_text()),
    )
        .prop_map(|(mut m, reason)| {
            if let Some(r) = reason {
                m.insert("reason".into(), r.into());
            }
            serde_json::Value::Object(m.into_iter().collect())
        })
}

fn arb_hash_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => any::<[u8; 32]>().prop_map(|h| stele_audit::leaf::hash_b64(&h)),
        1 => arb_text(),
    ]
}

prop_compose! {
    fn arb_payload()(h in any::<[u8; 32]>(), media in arb_text(), role in arb_text(),
        sha in proptest::option::of("[0-9a-f]{64}"), size in 0..(1u64 << 53)) -> PayloadRef {
        PayloadRef { commit: stele_audit::payload::commit_text(&h), media, role, sha256: sha, size }
    }
}

prop_compose! {
    fn arb_outcome()(a in proptest::option::of(0..(1u64 << 53)), detail in proptest::option::of(arb_text()),
        status in 0usize..5, code in proptest::option::of(-(1i64 << 53) + 1..(1i64 << 53))) -> Outcome {
        let mut o = Outcome::status([Status::Ok, Status::Error, Status::Denied, Status::Interrupted, Status::Timeout][status]);
        o.bytes_in = a;
        o.code = code;
        o.detail = detail;
        o
    }
}

prop_compose! {
    fn arb_target()(
        argv in proptest::option::of(proptest::collection::vec(arb_text(), 0..4)),
        host in proptest::option::of(arb_text()), model in proptest::option::of(arb_text()),
        path in proptest::option::of(arb_text()), port in proptest::option::of(any::<u16>()),
        program in proptest::option::of(arb_text()), provider in proptest::option::of(arb_text()),
        scheme in proptest::option::of(arb_text()), server in proptest::option::of(arb_text()),
        tool in proptest::option::of(arb_text()),
    ) -> Target {
        Target { argv, host, model, path, port, program, provider, scheme, server, tool }
    }
}

prop_compose! {
    fn arb_leaf()(
        host in arb_text(), principal in prop_oneof![3 => Just("alice".to_string()), 1 => arb_text()],
        teams in proptest::collection::vec(arb_text(), 0..3), runtime in arb_text(),
        data in proptest::option::of(arb_json()),
        decision in proptest::option::of((arb_text(), 0usize..3, proptest::option::of(arb_text()),
            proptest::collection::vec(arb_text(), 0..3), proptest::option::of(arb_text()))),
        kind in 0usize..EventKind::ALL.len(), outcome in proptest::option::of(arb_outcome()),
        payload in proptest::collection::vec(arb_payload(), 0..3), prev in proptest::option::of(arb_hash_text()),
        refs in proptest::option::of((arb_hash_text(), 0..(1u64 << 53))), seq in 0..(1u64 << 53),
        session in proptest::option::of((prop_oneof![3 => Just("s-1".to_string()), 1 => arb_text()], 0..(1u64 << 53))),
        target in proptest::option::of(arb_target()), ts in arb_ts(),
    ) -> Leaf {
        Leaf {
            actor: Actor { host, principal, runtime, teams },
            boot: "0123456789abcdef".into(),
            data,
            decision: decision.map(|(bundle, e, layer, policies, reason)| DecisionRecord {
                bundle, effect: [Effect::Allow, Effect::Deny, Effect::Ask][e], layer, policies, reason,
            }),
            kind: EventKind::ALL[kind],
            log: "audit.example/log".into(),
            outcome,
            payload,
            prev,
            refs: refs.map(|(intent_leaf, intent_seq)| Refs { intent_leaf, intent_seq }),
            seq,
            session: session.map(|(id, n)| SessionLink { id, n, prev: None }),
            target,
            ts,
            v: 1,
        }
    }
}

/// The straightforward serialisation of the reference event.
fn reference(leaf: &Leaf, hash: &[u8; 32], origin: &str) -> Vec<u8> {
    serde_json::to_vec(&event(leaf, hash, origin)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn ocsf_events_are_the_reference_bytes(
        leaf in arb_leaf(), hash in any::<[u8; 32]>(),
        origin in prop_oneof![3 => Just("audit.example/log".to_string()), 1 => arb_text()],
    ) {
        let bytes = leaf.encode().unwrap();
        let parsed = Leaf::parse_canonical(&bytes).unwrap();
        let want = reference(&parsed, &hash, &origin);
        let o = OcsfOrigin::new(&origin);
        let scanned = LeafText::scan(&bytes).expect("every canonical leaf is read");
        let mut got = Vec::new();
        write_event(&scanned, &hash, &o, &mut got);
        prop_assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want), "from the bytes");
        // The text the checks' one-pass scanner keeps (what `stele-verify`
        // uses), whenever the scanner reads the leaf.
        let mut kept = None;
        if LeafView::scan_text(&bytes, &mut kept).is_some() {
            let mut got = Vec::new();
            write_event(kept.as_ref().unwrap(), &hash, &o, &mut got);
            prop_assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want), "kept by the scanner");
        } else {
            prop_assert!(LeafView::scan(&bytes).is_none(), "scan_text reads what scan reads");
        }
        let mut typed = Vec::new();
        write_event(&LeafText::of(&parsed), &hash, &o, &mut typed);
        prop_assert_eq!(String::from_utf8_lossy(&typed), String::from_utf8_lossy(&want), "from the typed leaf");
        prop_assert_eq!(
            scanned.data_str("reason").map(|s| s.into_owned()),
            parsed.data.as_ref().and_then(|d| d.get("reason")).and_then(|r| r.as_str()).map(str::to_string)
        );
    }

    #[test]
    fn summaries_from_bytes_equal_summaries_of_typed_leaves(
        leaves in proptest::collection::vec(arb_leaf(), 1..40),
    ) {
        let mut typed = SummaryBuilder::default();
        let mut fast = SummaryBuilder::default();
        let encoded: Vec<Vec<u8>> = leaves.iter().map(|l| l.encode().unwrap()).collect();
        for b in &encoded {
            let parsed = Leaf::parse_canonical(b).unwrap();
            typed.add(&parsed);
            let mut kept = None;
            match LeafView::scan_text(b, &mut kept) {
                Some(_) => fast.add_text(kept.as_ref().unwrap()),
                None => fast.add_text(&LeafText::scan(b).unwrap()),
            }
        }
        let a = typed.render("audit.example/log", 99, "all entries");
        let b = fast.render("audit.example/log", 99, "all entries");
        prop_assert_eq!(a, b);
    }
}

/// The text read from bytes declines what is not a leaf of the schema (the
/// caller then uses the typed parse) instead of misreading it.
#[test]
fn text_declines_other_shapes() {
    for bad in [
        &b""[..],
        b"{}",
        b"[]",
        br#"{"actor":{"host":"h","principal":"p","runtime":"r"},"kind":"nope","seq":1,"ts":"t"}"#,
        br#"{"actor":{"host":"h","principal":"p"},"kind":"heartbeat","seq":1,"ts":"t"}"#,
        br#"{"actor":{"host":"h","principal":"p","runtime":"r"},"kind":"heartbeat","seq":1,"ts":"t","payload":[{"commit":"a\nb"}]}"#,
        br#"{"actor":{"host":"h","principal":"p","runtime":"r"},"kind":"heartbeat","seq":1,"ts":"t"} "#,
    ] {
        assert!(
            LeafText::scan(bad).is_none(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let ok = br#"{"actor":{"host":"h","principal":"p","runtime":"r"},"kind":"heartbeat","seq":1,"ts":"t"}"#;
    assert!(LeafText::scan(ok).is_some());
}
