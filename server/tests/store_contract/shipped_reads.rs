//! Reading shipped logs back for session bundles: a session's entries and
//! origins, the bodies (kept once per commitment, under the first entry),
//! the tree's nodes as a local tree has them, and inclusion proofs from
//! them that verify for every index of a log shipped in several batches.

use std::collections::HashMap;
use std::sync::Arc;

use stele_audit::merkle::{leaf_hash, verify_inclusion, Frontier, Hash};
use stele_server::shipped::proofs::inclusion_proofs;
use stele_server::store::shipping::{
    Appended, ShippedEntry, ShippedLog, ShippedNode, ShippedParts, ShippedPayload,
};
use stele_server::store::Store;

const ORIGIN: &str = "w1.test.invalid/log";

fn leaf(seq: i64) -> Vec<u8> {
    format!("{{\"seq\":{seq},\"x\":\"leaf\"}}").into_bytes()
}

fn entry(seq: i64) -> ShippedEntry {
    ShippedEntry {
        seq,
        leaf: leaf(seq),
        ts: format!("2026-01-01T00:00:{:02}.000000Z", seq % 60),
        // Session s1 on every third entry.
        session: (seq % 3 == 0).then(|| "s1".to_string()),
        principal: "alice".into(),
        teams: ",ops,".into(),
        // Some denials and approval entries, for the reviewer's counts.
        kind: if seq % 7 == 0 {
            "approval.request".into()
        } else {
            "policy.decision".into()
        },
        effect: (seq % 5 == 0).then(|| "deny".to_string()),
        path: None,
        leaf_hash: leaf_hash(&leaf(seq)),
    }
}

fn log(origin: &str, f: &Frontier, last: i64) -> ShippedLog {
    ShippedLog {
        origin: origin.into(),
        verifier: format!("{origin}+01020304+AQID"),
        account: "ops".into(),
        worker: "w1".into(),
        size: f.size() as i64,
        root: f.root().to_vec(),
        frontier: f.nodes().concat(),
        last_hash: Some(leaf_hash(&leaf(last)).to_vec()),
        last_time: None,
        checkpoint: format!("note at {}", f.size()),
        updated: 1,
        revoked_at: None,
    }
}

fn body(cmt: u8, seq: i64) -> ShippedPayload {
    ShippedPayload {
        cmt: vec![cmt; 32],
        seq,
        media: "text/plain".into(),
        salt: vec![cmt ^ 0x55; 32],
        body: format!("body {cmt}\u{0}\u{ff}").into_bytes(),
    }
}

/// Ship `sizes` batches of `origin` (each with the nodes it completes and
/// `bodies(batch)`); the local tree's every node.
async fn ship(
    s: &Arc<dyn Store>,
    origin: &str,
    sizes: &[i64],
    bodies: impl Fn(usize) -> ShippedParts,
) -> (Frontier, HashMap<(u8, u64), Hash>) {
    let mut f = Frontier::new();
    let mut all = HashMap::new();
    let mut from = 0i64;
    for (b, &n) in sizes.iter().enumerate() {
        let entries: Vec<ShippedEntry> = (from..from + n).map(entry).collect();
        let mut nodes = Vec::new();
        for e in &entries {
            all.insert((0, e.seq as u64), e.leaf_hash);
            f.push(e.leaf_hash, |c| {
                all.insert((c.level, c.index), c.hash);
                nodes.push(ShippedNode {
                    level: c.level,
                    index: c.index,
                    hash: c.hash,
                });
            });
        }
        let parts = ShippedParts { nodes, ..bodies(b) };
        let to = log(origin, &f, from + n - 1);
        assert_eq!(
            s.append_shipped(from, &to, &entries, &parts).await.unwrap(),
            Appended::Yes
        );
        from += n;
    }
    (f, all)
}

pub async fn a_shipped_sessions_entries_bodies_and_nodes_read_back(s: Arc<dyn Store>) {
    // Batch 0 carries bodies 1 and 2; batch 1 again 2 (listed again by a
    // later entry: the first stays), 3 and 4; batch 2 erases 4 (and 9,
    // never held).
    let bodies = |b: usize| match b {
        0 => ShippedParts {
            payloads: vec![body(1, 0), body(2, 3)],
            ..Default::default()
        },
        1 => {
            let mut again = body(2, 7);
            again.body = b"another".to_vec();
            ShippedParts {
                payloads: vec![again, body(3, 8), body(4, 9)],
                ..Default::default()
            }
        }
        2 => ShippedParts {
            erased: vec![vec![4; 32], vec![9; 32]],
            ..Default::default()
        },
        _ => ShippedParts::default(),
    };
    let (f, all) = ship(&s, ORIGIN, &[7, 9, 1, 16], bodies).await;
    ship(&s, "w2.test.invalid/log", &[4], |_| ShippedParts::default()).await;

    let got = s.shipped_session_entries(ORIGIN, "s1").await.unwrap();
    let want: Vec<ShippedEntry> = (0..33).filter(|i| i % 3 == 0).map(entry).collect();
    assert_eq!(got, want);
    assert!(s
        .shipped_session_entries(ORIGIN, "none")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.shipped_session_origins("s1").await.unwrap(),
        [ORIGIN.to_string(), "w2.test.invalid/log".to_string()]
    );
    assert!(s.shipped_session_origins("none").await.unwrap().is_empty());
    // Counted across both logs: s1 is 0, 3, …, 30 in the first and 0, 3
    // in the second; denials where seq % 5 == 0, approvals where seq % 7 == 0.
    let counts = s
        .shipped_session_counts(&["s1".to_string(), "none".to_string()])
        .await
        .unwrap();
    assert_eq!(counts.len(), 1, "{counts:?}");
    let c = counts["s1"];
    assert_eq!((c.entries, c.denials, c.approvals), (13, 4, 3), "{c:?}");

    let mut got = s
        .shipped_payloads(
            ORIGIN,
            &[vec![2; 32], vec![1; 32], vec![3; 32], vec![9; 32]],
        )
        .await
        .unwrap();
    got.sort_by_key(|p| p.cmt.clone());
    assert_eq!(got, [body(1, 0), body(2, 3), body(3, 8)]);
    assert!(s
        .shipped_payloads("w2.test.invalid/log", &[vec![1; 32]])
        .await
        .unwrap()
        .is_empty());

    // Every node of the tree (levels 0..5 of 33 leaves), as held.
    let positions: Vec<(u8, u64)> = all.keys().copied().collect();
    assert!(positions.iter().any(|p| p.0 == 5), "a level-5 node");
    assert_eq!(s.shipped_nodes(ORIGIN, &positions).await.unwrap(), all);
    // Beyond the size held: absent.
    let beyond = s
        .shipped_nodes(ORIGIN, &[(0, 33), (1, 16), (6, 0)])
        .await
        .unwrap();
    assert!(beyond.is_empty(), "{beyond:?}");

    // Every index's proof verifies against the root held, at the full size
    // and at an earlier batch's end.
    let held = s.shipped_log(ORIGIN).await.unwrap().unwrap();
    let root: Hash = held.root.as_slice().try_into().unwrap();
    assert_eq!(root, f.root());
    for size in [33u64, 16, 17] {
        let indexes: Vec<u64> = (0..size).collect();
        let proofs = inclusion_proofs(s.as_ref(), ORIGIN, &indexes, size)
            .await
            .unwrap();
        let mut part = Frontier::new();
        (0..size).for_each(|i| part.push(all[&(0, i)], |_| {}));
        let root = if size == 33 { root } else { part.root() };
        for (i, p) in indexes.iter().zip(&proofs) {
            verify_inclusion(&all[&(0, *i)], *i, size, p, &root)
                .unwrap_or_else(|e| panic!("index {i} of {size}: {e}"));
        }
    }
    let e = inclusion_proofs(s.as_ref(), ORIGIN, &[3], 40)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not held"), "{e}");
}
