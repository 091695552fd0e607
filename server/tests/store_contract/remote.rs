//! Remote workers' shared state: names bound to accounts, claims whose
//! progress moves once per batch whichever server takes it.

use std::sync::Arc;

use stele_server::store::jobs::Lease;
use stele_server::store::remote::{Progress, Registered, RemoteRun, Standing};
use stele_server::store::Store;

pub async fn a_worker_name_stays_with_the_account_that_registered_it(s: Arc<dyn Store>) {
    let Registered::Yes(w) = s
        .register_worker("w1", "ops", Some("key-1"), 100)
        .await
        .unwrap()
    else {
        panic!("a new name registers");
    };
    assert_eq!(
        (
            w.account.as_str(),
            w.verifier.as_str(),
            w.first_seen,
            w.last_seen
        ),
        ("ops", "key-1", 100, 100)
    );
    // Heard from again without a key: the key is kept, last_seen moves.
    let Registered::Yes(w) = s.register_worker("w1", "ops", None, 150).await.unwrap() else {
        panic!("the same account keeps its name");
    };
    assert_eq!(
        (w.verifier.as_str(), w.first_seen, w.last_seen),
        ("key-1", 100, 150)
    );
    // Another account cannot take the name, and changes nothing.
    assert_eq!(
        s.register_worker("w1", "mallory", Some("key-m"), 200)
            .await
            .unwrap(),
        Registered::OtherAccount("ops".into())
    );
    s.register_worker("w2", "mallory", Some("key-m"), 210)
        .await
        .unwrap();
    let all = s.workers().await.unwrap();
    let names: Vec<_> = all
        .iter()
        .map(|w| {
            (
                w.name.as_str(),
                w.account.as_str(),
                w.verifier.as_str(),
                w.last_seen,
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![("w1", "ops", "key-1", 150), ("w2", "mallory", "key-m", 210)]
    );
}

fn run(job: i64, worker: &str, attempt: i64, account: &str) -> RemoteRun {
    RemoteRun {
        lease: Lease {
            job,
            worker: worker.into(),
            attempt,
        },
        session: format!("s-{job}"),
        account: account.into(),
        verifier: format!("key-{worker}"),
        progress: Progress {
            next_msg: 1,
            events: 3,
            effects: false,
            started: false,
        },
    }
}

pub async fn a_claims_progress_moves_once_from_where_it_stands(s: Arc<dyn Store>) {
    let r = run(7, "w1", 1, "ops");
    s.open_run(&r).await.unwrap();
    assert_eq!(s.remote_run(7).await.unwrap().unwrap(), r);
    assert!(s.remote_run(8).await.unwrap().is_none());
    let to = Progress {
        next_msg: 4,
        events: 5,
        effects: true,
        started: true,
    };
    assert!(s.advance_run(&r.lease, 1, to).await.unwrap());
    // A second server taking the same batch from the same place loses.
    let again = Progress {
        next_msg: 4,
        events: 7,
        ..to
    };
    assert!(!s.advance_run(&r.lease, 1, again).await.unwrap());
    assert_eq!(s.remote_run(7).await.unwrap().unwrap().progress, to);
    // Another claim of the job (a later attempt) cannot move it either.
    let other = Lease {
        attempt: 2,
        ..r.lease.clone()
    };
    assert!(!s.advance_run(&other, 4, again).await.unwrap());
    assert!(!s.close_run(&other).await.unwrap());

    // Racing servers: of eight moves from the same place, one wins.
    let s2 = s.clone();
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..8 {
        let s = s2.clone();
        let lease = r.lease.clone();
        racers.spawn(async move {
            let to = Progress {
                next_msg: 5,
                events: 6 + i,
                ..to
            };
            s.advance_run(&lease, 4, to).await.unwrap()
        });
    }
    let mut won = 0;
    while let Some(w) = racers.join_next().await {
        won += usize::from(w.unwrap());
    }
    assert_eq!(won, 1);
    assert_eq!(s.remote_run(7).await.unwrap().unwrap().progress.next_msg, 5);

    // A reclaim replaces the row; the old claim can no longer close it.
    let r2 = run(7, "w2", 2, "ops");
    s.open_run(&r2).await.unwrap();
    s.open_run(&run(9, "w1", 1, "ops")).await.unwrap();
    let all: Vec<_> = s
        .remote_runs()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.lease.job, r.lease.worker, r.progress.next_msg))
        .collect();
    assert_eq!(all, vec![(7, "w2".into(), 1), (9, "w1".into(), 1)]);
    assert!(!s.close_run(&r.lease).await.unwrap());
    assert!(s.close_run(&r2.lease).await.unwrap());
    assert!(!s.close_run(&r2.lease).await.unwrap(), "closed once");
    assert!(s.remote_run(7).await.unwrap().is_none());
}

pub async fn the_reaper_finds_expired_and_left_over_claims_in_one_list(s: Arc<dyn Store>) {
    let j1 = s
        .enqueue("session.run", &serde_json::json!({}), 100)
        .await
        .unwrap();
    let j2 = s
        .enqueue("session.run", &serde_json::json!({}), 100)
        .await
        .unwrap();
    let c1 = s.claim("w1", 10, 100).await.unwrap().unwrap();
    let c2 = s.claim("w2", 30, 100).await.unwrap().unwrap();
    assert_eq!((c1.lease.job, c2.lease.job), (j1, j2));
    for c in [&c1, &c2] {
        let mut r = run(c.lease.job, &c.lease.worker, c.lease.attempt, "ops");
        r.lease = c.lease.clone();
        s.open_run(&r).await.unwrap();
    }
    // A row whose job is gone altogether.
    s.open_run(&run(999, "w3", 1, "ops")).await.unwrap();
    let stale = |now| {
        let s = s.clone();
        async move {
            s.stale_runs(now)
                .await
                .unwrap()
                .into_iter()
                .map(|(r, st)| (r.lease.job, st))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(stale(105).await, vec![(999, Standing::Superseded)]);
    // j1's lease (until 110) ran out; j2's (until 130) not yet.
    assert_eq!(
        stale(110).await,
        vec![(j1, Standing::Expired), (999, Standing::Superseded)]
    );
    // j2 finished: its row is left over, whatever the time.
    assert!(s.complete(&c2.lease, 111).await.unwrap());
    assert_eq!(
        stale(111).await,
        vec![
            (j1, Standing::Expired),
            (j2, Standing::Superseded),
            (999, Standing::Superseded)
        ]
    );
    // j1 claimed again by another worker: the old claim's row is left over.
    let again = s.claim("w4", 10, 120).await.unwrap().unwrap();
    assert_eq!((again.lease.job, again.lease.attempt), (j1, 2));
    assert_eq!(stale(121).await[0], (j1, Standing::Superseded));
}
