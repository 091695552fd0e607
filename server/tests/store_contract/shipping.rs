//! Workers' shipped logs: a batch is stored once, from where the origin
//! stands, never after its key is revoked; entries come back byte for byte.

use std::sync::Arc;

use stele_server::store::shipping::{
    Appended, ShippedEntry, ShippedLog, ShippedParts, ShippedQuery,
};
use stele_server::store::Store;

fn none() -> ShippedParts {
    ShippedParts::default()
}

fn log(size: i64, now: i64) -> ShippedLog {
    ShippedLog {
        origin: "w1.test.invalid/log".into(),
        verifier: "w1.test.invalid/log+01020304+AQID".into(),
        account: "ops".into(),
        worker: "w1".into(),
        size,
        root: vec![size as u8; 32],
        frontier: vec![1; 32 * size.count_ones() as usize],
        last_hash: (size > 0).then(|| vec![2; 32]),
        last_time: (size > 0).then(|| {
            (
                "boot-a".to_string(),
                format!("2026-01-01T00:00:0{size}.000000Z"),
            )
        }),
        checkpoint: format!("note at {size}"),
        updated: now,
        revoked_at: None,
    }
}

fn entries(from: i64, to: i64) -> Vec<ShippedEntry> {
    (from..to)
        .map(|seq| ShippedEntry {
            seq,
            leaf: format!("{{\"seq\":{seq}}}\u{0}\u{ff}").into_bytes(),
            ts: format!("2026-01-01T00:00:0{seq}.000000Z"),
            session: (seq % 2 == 1).then(|| "s1".to_string()),
            principal: "alice".into(),
            teams: ",ops,".into(),
            kind: "policy.decision".into(),
            effect: (seq == 2).then(|| "deny".to_string()),
            path: (seq == 2).then(|| "secrets/a.txt".to_string()),
            leaf_hash: [seq as u8; 32],
        })
        .collect()
}

pub async fn a_shipped_batch_is_stored_once_from_where_the_origin_stands(s: Arc<dyn Store>) {
    let origin = "w1.test.invalid/log";
    assert_eq!(s.shipped_log(origin).await.unwrap(), None);
    // A first batch must start at 0.
    assert_eq!(
        s.append_shipped(2, &log(4, 10), &entries(2, 4), &none())
            .await
            .unwrap(),
        Appended::Moved(0)
    );
    assert_eq!(
        s.append_shipped(0, &log(2, 10), &entries(0, 2), &none())
            .await
            .unwrap(),
        Appended::Yes
    );
    assert_eq!(s.shipped_log(origin).await.unwrap(), Some(log(2, 10)));
    // The same batch again (another server, a retry) is refused and changes nothing.
    assert_eq!(
        s.append_shipped(0, &log(2, 11), &entries(0, 2), &none())
            .await
            .unwrap(),
        Appended::Moved(2)
    );
    // Two servers storing the next batch at once: one keeps it.
    let (next, batch) = (log(4, 12), entries(2, 4));
    let parts = none();
    let (a, b) = tokio::join!(
        s.append_shipped(2, &next, &batch, &parts),
        s.append_shipped(2, &next, &batch, &parts),
    );
    let mut got = [a.unwrap(), b.unwrap()];
    got.sort_by_key(|x| format!("{x:?}"));
    assert_eq!(got, [Appended::Moved(4), Appended::Yes]);
    assert_eq!(s.shipped_log(origin).await.unwrap(), Some(log(4, 12)));
    assert_eq!(
        s.shipped_entries(origin, 0, 10).await.unwrap(),
        entries(0, 4)
    );
    assert_eq!(
        s.shipped_entries(origin, 1, 3).await.unwrap(),
        entries(1, 3)
    );
    assert!(s.shipped_entries("other", 0, 10).await.unwrap().is_empty());
    // A batch that ended with a key rotation: the key it names is held next.
    let mut rotated = log(6, 13);
    rotated.verifier = "w1.test.invalid/log+05060708+BQYH".into();
    assert_eq!(
        s.append_shipped(4, &rotated, &entries(4, 6), &none())
            .await
            .unwrap(),
        Appended::Yes
    );
    assert_eq!(s.shipped_log(origin).await.unwrap(), Some(rotated));
}

pub async fn a_revoked_key_takes_no_more_batches(s: Arc<dyn Store>) {
    let origin = "w1.test.invalid/log";
    // Revoked before anything was shipped: the row is made, revoked.
    assert!(s.revoke_shipped(&log(0, 5), 5).await.unwrap());
    assert!(!s.revoke_shipped(&log(0, 6), 6).await.unwrap());
    let held = s.shipped_log(origin).await.unwrap().unwrap();
    assert_eq!((held.size, held.revoked_at), (0, Some(5)));
    assert_eq!(
        s.append_shipped(0, &log(2, 10), &entries(0, 2), &none())
            .await
            .unwrap(),
        Appended::Revoked
    );
    assert!(s.shipped_entries(origin, 0, 10).await.unwrap().is_empty());

    // Revoked after shipping: what was held stays, nothing more is taken.
    let mut other = log(2, 10);
    other.origin = "w2.test.invalid/log".into();
    assert_eq!(
        s.append_shipped(0, &other, &entries(0, 2), &none())
            .await
            .unwrap(),
        Appended::Yes
    );
    assert!(s.revoke_shipped(&log(0, 20), 20).await.is_ok());
    assert!(s.revoke_shipped(&other, 20).await.unwrap());
    let held = s.shipped_log(&other.origin).await.unwrap().unwrap();
    assert_eq!((held.size, held.revoked_at), (2, Some(20)));
    let mut next = log(4, 30);
    next.origin = other.origin.clone();
    assert_eq!(
        s.append_shipped(2, &next, &entries(2, 4), &none())
            .await
            .unwrap(),
        Appended::Revoked
    );
    assert_eq!(
        s.shipped_entries(&other.origin, 0, 10).await.unwrap(),
        entries(0, 2)
    );
}

pub async fn a_search_finds_a_sessions_timeline_and_a_teams_denials(s: Arc<dyn Store>) {
    let mut a = log(4, 10);
    a.origin = "a.test.invalid/log".into();
    let mut b = log(4, 10);
    b.origin = "b.test.invalid/log".into();
    let mut other_team = entries(0, 4);
    for e in &mut other_team {
        e.teams = ",eng,ops_x,".into();
        e.principal = "bob".into();
    }
    assert_eq!(
        s.append_shipped(0, &a, &entries(0, 4), &none())
            .await
            .unwrap(),
        Appended::Yes
    );
    assert_eq!(
        s.append_shipped(0, &b, &other_team, &none()).await.unwrap(),
        Appended::Yes
    );
    let q = |f: &dyn Fn(&mut ShippedQuery)| {
        let mut q = ShippedQuery {
            limit: 100,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    let seqs = |v: Vec<(String, ShippedEntry)>| -> Vec<(String, i64)> {
        v.into_iter().map(|(o, e)| (o, e.seq)).collect()
    };
    // A session's timeline, across logs, by time.
    let got = s
        .search_shipped(&q(&|q| q.session = Some("s1".into())))
        .await
        .unwrap();
    assert_eq!(
        seqs(got),
        [
            ("a.test.invalid/log".to_string(), 1),
            ("b.test.invalid/log".to_string(), 1),
            ("a.test.invalid/log".to_string(), 3),
            ("b.test.invalid/log".to_string(), 3),
        ]
    );
    // A team's denials over a time range: `ops` is not `ops_x`.
    let got = s
        .search_shipped(&q(&|q| {
            q.team = Some("ops".into());
            q.effect = Some("deny".into());
            q.since = Some("2026-01-01T00:00:00.000000Z".into());
            q.until = Some("2026-01-02T00:00:00.000000Z".into());
        }))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "a.test.invalid/log");
    assert_eq!(got[0].1, entries(2, 3)[0]);
    let got = s
        .search_shipped(&q(&|q| {
            q.team = Some("ops_x".into());
            q.principal = Some("bob".into());
            q.until = Some("2026-01-01T00:00:02.000000Z".into());
        }))
        .await
        .unwrap();
    assert_eq!(
        seqs(got),
        [
            ("b.test.invalid/log".to_string(), 0),
            ("b.test.invalid/log".to_string(), 1)
        ]
    );
    // A team with a wildcard in its name matches only itself.
    assert!(s
        .search_shipped(&q(&|q| q.team = Some("op%".into())))
        .await
        .unwrap()
        .is_empty());
    // The limit holds.
    assert_eq!(
        s.search_shipped(&q(&|q| q.limit = 3)).await.unwrap().len(),
        3
    );
}
