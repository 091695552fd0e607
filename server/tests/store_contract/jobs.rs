//! The job queue: claims under leases.

use std::collections::BTreeMap;
use std::sync::Arc;

use stele_server::store::jobs::JobState;
use stele_server::store::Store;

pub async fn concurrent_claimers_never_hold_one_job_twice(s: Arc<dyn Store>) {
    const JOBS: i64 = 60;
    const CLAIMERS: usize = 8;
    let mut ids = Vec::new();
    for i in 0..JOBS {
        ids.push(
            s.enqueue("session.run", &serde_json::json!({"i": i}), 100)
                .await
                .unwrap(),
        );
    }
    let mut claimers = tokio::task::JoinSet::new();
    for w in 0..CLAIMERS {
        let s = s.clone();
        claimers.spawn(async move {
            let worker = format!("worker-{w}");
            let mut got = Vec::new();
            while let Some(job) = s.claim(&worker, 60, 100).await.unwrap() {
                assert_eq!(job.kind, "session.run");
                assert_eq!(job.lease.attempt, 1);
                got.push((job.lease.job, job.payload["i"].as_i64().unwrap()));
                // Yield between claims so that claimers interleave.
                tokio::task::yield_now().await;
                assert!(s.complete(&job.lease, 101).await.unwrap());
            }
            (worker, got)
        });
    }
    let mut holder: BTreeMap<i64, String> = BTreeMap::new();
    while let Some(r) = claimers.join_next().await {
        let (worker, got) = r.unwrap();
        for (job, i) in got {
            assert_eq!(ids[usize::try_from(i).unwrap()], job);
            if let Some(first) = holder.insert(job, worker.clone()) {
                panic!("job {job} claimed by {first} and by {worker}");
            }
        }
    }
    assert_eq!(holder.len(), ids.len(), "every job claimed once");
    for id in ids {
        assert_eq!(s.job(id).await.unwrap().unwrap().state, JobState::Done);
    }
    assert!(s.claim("late", 60, 200).await.unwrap().is_none());
}

pub async fn an_expired_lease_is_claimed_again_and_fences_the_old_worker(s: Arc<dyn Store>) {
    let id = s
        .enqueue("ship", &serde_json::json!({"batch": [1, 2]}), 10)
        .await
        .unwrap();
    let first = s.claim("w1", 10, 100).await.unwrap().unwrap();
    assert_eq!(
        (first.lease.job, first.lease.attempt, first.lease_until),
        (id, 1, 110)
    );
    assert_eq!(first.payload, serde_json::json!({"batch": [1, 2]}));
    // Still leased: nobody else gets it.
    assert!(s.claim("w2", 10, 109).await.unwrap().is_none());
    // The lease ran out: the next claimer takes it over.
    let second = s.claim("w2", 10, 110).await.unwrap().unwrap();
    assert_eq!(
        (
            second.lease.job,
            second.lease.worker.as_str(),
            second.lease.attempt
        ),
        (id, "w2", 2)
    );
    // The first worker can no longer touch it.
    assert_eq!(s.heartbeat(&first.lease, 10, 111).await.unwrap(), None);
    assert!(!s.complete(&first.lease, 111).await.unwrap());
    assert!(!s.fail(&first.lease, "late", 111).await.unwrap());
    // Even the same worker, reclaiming, fences its own older claim.
    let third = s.claim("w2", 10, 200).await.unwrap().unwrap();
    assert_eq!(third.lease.attempt, 3);
    assert!(!s.complete(&second.lease, 201).await.unwrap());
    assert!(s.complete(&third.lease, 201).await.unwrap());
    let j = s.job(id).await.unwrap().unwrap();
    assert_eq!(
        (j.state, j.worker.as_deref(), j.attempts, j.lease_until),
        (JobState::Done, Some("w2"), 3, None)
    );
    // Done is done: not claimable, not completable again.
    assert!(s.claim("w3", 10, 10_000).await.unwrap().is_none());
    assert!(!s.complete(&third.lease, 202).await.unwrap());
}

pub async fn heartbeats_keep_a_lease_and_failures_are_kept(s: Arc<dyn Store>) {
    let a = s.enqueue("a", &serde_json::json!(1), 1).await.unwrap();
    let b = s.enqueue("b", &serde_json::json!("two"), 1).await.unwrap();
    // Oldest first.
    let ja = s.claim("w1", 10, 100).await.unwrap().unwrap();
    assert_eq!((ja.lease.job, ja.kind.as_str()), (a, "a"));
    assert_eq!(s.heartbeat(&ja.lease, 10, 108).await.unwrap(), Some(118));
    // Renewed: not claimable at the old expiry.
    let jb = s.claim("w2", 10, 115).await.unwrap().unwrap();
    assert_eq!(jb.lease.job, b);
    assert!(s.claim("w3", 10, 115).await.unwrap().is_none());
    assert!(s.fail(&ja.lease, "tool image missing", 116).await.unwrap());
    let fa = s.job(a).await.unwrap().unwrap();
    assert_eq!(
        (fa.state, fa.error.as_deref()),
        (JobState::Failed, Some("tool image missing"))
    );
    // A failed job is not retried.
    assert!(s.claim("w3", 10, 1_000).await.unwrap().map(|j| j.lease.job) == Some(b));
    assert!(s.claim("w4", 10, 1_000).await.unwrap().is_none());
    assert_eq!(s.job(9_999).await.unwrap(), None);
}
