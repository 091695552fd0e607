#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The one-pass leaf scanner agrees with the typed parse: whenever it reads a
//! leaf, `Leaf::parse_canonical` accepts the same bytes and yields the same
//! fields; it reads every leaf the writer produces; and no mutation makes it
//! accept what the typed parse rejects.

use proptest::prelude::*;
use stele_audit::event::PayloadRef;
use stele_audit::leaf::{Leaf, SessionLink};
use stele_audit::leaf_view::{DataView, LeafView};
use stele_audit::{Actor, DecisionRecord, Effect, EventKind, Outcome, Refs, Status, Target};

fn arb_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            4 => proptest::char::range('a', 'z'),
            1 => any::<char>(),
            1 => Just('"'),
            1 => Just('\\'),
            1 => Just('\n'),
            1 => Just('\u{1f}'),
            1 => Just('é'),
        ],
        0..10,
    )
    .prop_map(|v| v.into_iter().collect())
}

/// Text the scanner keeps (ids, hashes, times): sometimes with characters
/// that need escapes, which send the leaf to the typed parse.
fn arb_plain() -> impl Strategy<Value = String> {
    prop_oneof![30 => "[A-Za-z0-9+/=:._-]{0,12}", 1 => arb_text()]
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(serde_json::Value::from),
        arb_text().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-z_]{0,6}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn hash_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<[u8; 32]>().prop_map(|h| stele_audit::leaf::hash_b64(&h)),
        1 => arb_plain(),
    ]
}

/// Integers: mostly within 2^53 (what leaves allow), sometimes beyond.
fn arb_int() -> impl Strategy<Value = u64> {
    prop_oneof![20 => 0..(1u64 << 53), 1 => any::<u64>()]
}

fn arb_sha() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[0-9a-f]{64}", 1 => arb_text()]
}

prop_compose! {
    fn arb_payload()(
        h in any::<[u8; 32]>(), media in arb_text(), role in arb_text(),
        sha in proptest::option::of(arb_sha()), size in arb_int(), odd in proptest::option::of(arb_plain()),
    ) -> PayloadRef {
        PayloadRef {
            commit: odd.unwrap_or_else(|| stele_audit::payload::commit_text(&h)),
            media, role, sha256: sha, size,
        }
    }
}

prop_compose! {
    fn arb_outcome()(
        a in proptest::option::of(arb_int()), b in proptest::option::of(arb_int()),
        code in proptest::option::of(prop_oneof![20 => -(1i64 << 53) + 1..(1i64 << 53), 1 => any::<i64>()]),
        detail in proptest::option::of(arb_text()),
        d in proptest::option::of(arb_int()), status in 0usize..5,
        ti in proptest::option::of(arb_int()), to in proptest::option::of(arb_int()),
    ) -> Outcome {
        Outcome {
            bytes_in: a, bytes_out: b, code, detail, duration_ms: d,
            status: [Status::Ok, Status::Error, Status::Denied, Status::Interrupted, Status::Timeout][status],
            tokens_in: ti, tokens_out: to,
        }
    }
}

prop_compose! {
    fn arb_target()(
        argv in proptest::option::of(proptest::collection::vec(arb_text(), 0..3)),
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
        host in arb_text(), principal in arb_text(), teams in proptest::collection::vec(arb_text(), 0..3),
        boot in arb_plain(), data in proptest::option::of(arb_json()),
        decision in proptest::option::of((arb_text(), 0usize..3, proptest::option::of(arb_text()),
            proptest::collection::vec(arb_text(), 0..3), proptest::option::of(arb_text()))),
        kind in 0usize..EventKind::ALL.len(), log in arb_plain(), outcome in proptest::option::of(arb_outcome()),
        payload in proptest::collection::vec(arb_payload(), 0..3), prev in proptest::option::of(hash_text()),
        refs in proptest::option::of((hash_text(), arb_int())), seq in arb_int(),
        session in proptest::option::of((arb_plain(), arb_int(), proptest::option::of(hash_text()))),
        target in proptest::option::of(arb_target()), ts in arb_plain(), v in any::<u32>(),
    ) -> Leaf {
        Leaf {
            actor: Actor { host, principal, runtime: "stele/t".into(), teams },
            boot,
            // Mostly an object (the format's only `data`), sometimes not.
            data: data.filter(|d| !d.is_null()).map(|d| match d {
                o @ serde_json::Value::Object(_) => o,
                other if seq % 8 == 0 => other,
                other => serde_json::json!({ "value": other }),
            }),
            decision: decision.map(|(bundle, e, layer, policies, reason)| DecisionRecord {
                bundle, effect: [Effect::Allow, Effect::Deny, Effect::Ask][e], layer, policies, reason,
            }),
            kind: EventKind::ALL[kind],
            log, outcome, payload, prev,
            refs: refs.map(|(intent_leaf, intent_seq)| Refs { intent_leaf, intent_seq }),
            seq,
            session: session.map(|(id, n, prev)| SessionLink { id, n, prev }),
            target, ts, v,
        }
    }
}

/// The view's fields, owned, for comparing.
fn fields(v: &LeafView<'_>) -> String {
    let data = v.data.map(|d| match d {
        DataView::Raw(b) => serde_json::from_slice::<serde_json::Value>(b).unwrap(),
        DataView::Typed(t) => t.clone(),
    });
    format!(
        "{} {} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
        v.seq,
        v.kind,
        v.log,
        v.boot,
        v.ts,
        v.prev,
        v.session,
        v.refs,
        v.commits().collect::<Vec<_>>(),
        data
    )
}

/// If the scanner reads `bytes`, the typed parse must accept them and agree.
fn agrees(bytes: &[u8]) -> Result<bool, TestCaseError> {
    let Some(view) = LeafView::scan(bytes) else {
        return Ok(false);
    };
    let typed = Leaf::parse_canonical(bytes);
    prop_assert!(
        typed.is_ok(),
        "scanner accepted what the typed parse rejects: {}: {:?}",
        String::from_utf8_lossy(bytes),
        typed.err()
    );
    let typed = typed.unwrap();
    prop_assert_eq!(fields(&view), fields(&LeafView::of(&typed)));
    Ok(true)
}

fn needs_escape(s: &str) -> bool {
    s.chars().any(|c| c == '"' || c == '\\' || c < ' ')
}

/// Whether a kept field of `leaf` needs an escape (then the scanner declines).
fn kept_needs_escape(l: &Leaf) -> bool {
    let mut kept = vec![&l.boot, &l.log, &l.ts];
    kept.extend(l.prev.iter());
    kept.extend(l.refs.iter().map(|r| &r.intent_leaf));
    if let Some(s) = &l.session {
        kept.push(&s.id);
        kept.extend(s.prev.iter());
    }
    kept.extend(l.payload.iter().map(|p| &p.commit));
    kept.into_iter().any(|s| needs_escape(s))
}

/// Replacements that produce near-miss spellings.
const TOKENS: &[&str] = &[
    "null",
    "0",
    "-0",
    "01",
    "1.0",
    "1e3",
    "-1",
    "true",
    "\"\"",
    "[]",
    "{}",
    " ",
    ",",
    ":",
    "\"",
    "\\",
    "\\u0041",
    "\\u001f",
    "\\n",
    "\\/",
    "18446744073709551616",
    "18446744073709551615",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "9007199254740992",
    "9007199254740991",
    "-9007199254740992",
    "4294967296",
    "65536",
    "65535",
    "\u{7f}",
    "\u{e9}",
    "\u{1}",
    "\"x\":1,",
    ",\"zzz\":1",
    "\"ask\"",
    "\"maybe\"",
    "\"heartbeat\"",
];

/// Replace the scalar value after the `k`-th `:` or `,` or `[` with `tok`.
fn replace_value(bytes: &mut Vec<u8>, k: usize, tok: &str) {
    let starts: Vec<usize> = (0..bytes.len())
        .filter(|&i| matches!(bytes[i], b':' | b',' | b'['))
        .map(|i| i + 1)
        .collect();
    if starts.is_empty() {
        return;
    }
    let at = starts[k % starts.len()];
    let mut end = at;
    if bytes.get(at) == Some(&b'"') {
        end += 1;
        while end < bytes.len() && bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        end = (end + 1).min(bytes.len());
    } else {
        while end < bytes.len() && !matches!(bytes[end], b',' | b'}' | b']' | b'{' | b'[') {
            end += 1;
        }
    }
    bytes.splice(at..end, tok.bytes());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn scanner_reads_what_the_writer_writes(leaf in arb_leaf()) {
        // The writer refuses what the format does not allow (unsafe
        // integers, a data that is not an object, a malformed digest).
        let Ok(bytes) = leaf.encode() else {
            return Ok(());
        };
        let read = agrees(&bytes)?;
        prop_assert_eq!(read, !kept_needs_escape(&leaf), "{}", String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn no_mutation_makes_the_scanner_accept_more(
        leaf in arb_leaf(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..6, 0usize..TOKENS.len(), any::<u8>()), 1..3),
    ) {
        let Ok(mut bytes) = leaf.encode() else {
            return Ok(());
        };
        for (at, op, tok, byte) in edits {
            let i = at.index(bytes.len() + 1);
            let end = (i + 1 + (byte as usize % 24)).min(bytes.len());
            match op {
                0 => { bytes.insert(i, byte); }
                1 => { if i < bytes.len() { bytes.remove(i); } }
                2 => { bytes.splice(i..i, TOKENS[tok].bytes()); }
                3 => { if i < end { bytes.splice(i..end, TOKENS[tok].bytes()); } }
                _ => replace_value(&mut bytes, i, TOKENS[tok]),
            }
        }
        agrees(&bytes)?;
    }
}

#[test]
fn unusual_but_valid_spellings_go_to_the_typed_parse() {
    let base = r#"{"actor":{"host":"h","principal":"p","runtime":"r"},"boot":"b","kind":"heartbeat","log":"l","seq":3,"ts":"t","v":1}"#;
    assert!(LeafView::scan(base.as_bytes()).is_some());
    // An escape inside a compared field.
    let odd = base.replace(r#""boot":"b""#, r#""boot":"b\n""#);
    assert!(LeafView::scan(odd.as_bytes()).is_none(), "{odd}");
    assert!(Leaf::parse_canonical(odd.as_bytes()).is_ok(), "{odd}");
    let with_decision = base.replace(
        r#""boot":"b","#,
        r#""boot":"b","decision":{"bundle":"x","effect":"allow","policies":[]},"#,
    );
    assert!(LeafView::scan(with_decision.as_bytes()).is_some());
    // Spellings the format does not allow, though JSON of the schema:
    // `null` for an absent field, `[]` for a list written by leaving it
    // out, a missing `policies`, integers beyond 2^53, data that is not an
    // object, a plain digest that is not 64 lowercase hex digits.
    for bad in [
        base.replace(r#""boot":"b","#, r#""boot":"b","data":null,"#),
        base.replace(r#""log":"l","#, r#""log":"l","prev":null,"#),
        base.replace(r#""log":"l","#, r#""log":"l","outcome":null,"#),
        base.replace(r#""runtime":"r""#, r#""runtime":"r","teams":[]"#),
        base.replace(r#""log":"l","#, r#""log":"l","payload":[],"#),
        with_decision.replace(r#","policies":[]"#, ""),
        base.replace(r#""seq":3"#, r#""seq":9007199254740992"#),
        base.replace(r#""boot":"b","#, r#""boot":"b","data":[1],"#),
        base.replace(r#""boot":"b","#, r#""boot":"b","data":"x","#),
        base.replace(
            r#""log":"l","#,
            r#""log":"l","outcome":{"code":-9007199254740992,"status":"ok"},"#,
        ),
        base.replace(
            r#""log":"l","#,
            r#""log":"l","payload":[{"commit":"c","media":"m","role":"r","sha256":"ABCD","size":1}],"#,
        ),
    ] {
        assert!(LeafView::scan(bad.as_bytes()).is_none(), "{bad}");
        assert!(Leaf::parse_canonical(bad.as_bytes()).is_err(), "{bad}");
    }
    for bad in [
        base.replace(r#""seq":3"#, r#""seq":03"#),
        base.replace(r#""v":1"#, r#""v":4294967296"#),
        base.replace(r#""kind":"heartbeat""#, r#""kind":"heartbeats""#),
        base.replace(r#""host":"h","#, ""),
        base.replace(
            r#""boot":"b","#,
            r#""boot":"b","data":{"x":9007199254740992},"#,
        ),
        base.replace(r#""boot":"b","#, r#""boot":"b","extra":1,"#),
        base.replace(r#""boot":"b""#, "\"boot\":\"\u{1}\""),
        base.replace(r#""boot":"b""#, r#""boot":"\u0062""#),
    ] {
        assert!(LeafView::scan(bad.as_bytes()).is_none(), "{bad}");
        assert!(Leaf::parse_canonical(bad.as_bytes()).is_err(), "{bad}");
    }
    let mut invalid_utf8 = base.as_bytes().to_vec();
    let at = base.find(r#""b""#).unwrap() + 1;
    invalid_utf8[at] = 0xc3;
    assert!(LeafView::scan(&invalid_utf8).is_none());
    assert!(Leaf::parse_canonical(&invalid_utf8).is_err());
}
