//! Schedules and their runs; the webhook outbox.

use std::sync::Arc;

use stele_protocol::{CatchUp, NewSchedule, RunOutcome, UnattendedApprove};
use stele_server::store::schedules::{Paused, RunRecord, ScheduleRecord};
use stele_server::store::webhooks::OutboxRecord;
use stele_server::store::Store;

fn schedule(id: &str, created: i64) -> ScheduleRecord {
    ScheduleRecord {
        id: id.into(),
        owner: "alice".into(),
        spec: NewSchedule {
            cron: "*/5 * * * *".into(),
            timezone: Some("Europe/Paris".into()),
            workspace: "books".into(),
            task: "close the month".into(),
            model: Some("openai:gpt".into()),
            max_steps: Some(7),
            approve: UnattendedApprove::Queue,
            catch_up: CatchUp::Skip,
        },
        created,
        next_run: Some(100),
        paused: None,
    }
}

pub async fn a_paused_schedule_has_no_next_run_and_cannot_be_moved_on(s: Arc<dyn Store>) {
    s.add_schedule(schedule("b", 2)).await.unwrap();
    s.add_schedule(schedule("a", 1)).await.unwrap();
    assert_eq!(s.schedule("a").await.unwrap(), Some(schedule("a", 1)));
    let p = Paused {
        by: "bob".into(),
        at: 50,
    };
    // A next run given with a pause is not kept.
    assert!(s.set_paused("a", Some(p.clone()), Some(7)).await.unwrap());
    let a = s.schedule("a").await.unwrap().unwrap();
    assert_eq!((a.paused, a.next_run), (Some(p), None));
    // The scheduler cannot move a paused schedule on.
    assert!(!s.set_next_run("a", Some(200)).await.unwrap());
    assert_eq!(s.schedule("a").await.unwrap().unwrap().next_run, None);
    assert!(s.set_next_run("b", Some(200)).await.unwrap());
    assert!(s.set_paused("a", None, Some(300)).await.unwrap());
    let a = s.schedule("a").await.unwrap().unwrap();
    assert_eq!((a.paused, a.next_run), (None, Some(300)));
    assert!(s.set_next_run("a", None).await.unwrap());
    assert!(!s.set_paused("nope", None, None).await.unwrap());
    let ids: Vec<String> = s
        .schedules()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(s.delete_schedule("a").await.unwrap());
    assert!(!s.delete_schedule("a").await.unwrap());
    assert_eq!(s.schedule("a").await.unwrap(), None);
}

pub async fn runs_are_kept_in_order_with_their_outcomes(s: Arc<dyn Store>) {
    let outcomes = [
        RunOutcome::Started,
        RunOutcome::Missed,
        RunOutcome::SkippedBusy,
        RunOutcome::Refused,
        RunOutcome::Failed,
    ];
    for (i, outcome) in outcomes.iter().enumerate() {
        let i = i64::try_from(i).unwrap();
        s.add_run(RunRecord {
            schedule: "nightly".into(),
            due: 1_000 - i,
            at: 2_000 + i,
            outcome: *outcome,
            session: (i == 0).then(|| "s1".to_string()),
            detail: Some(format!("run {i}")),
            audit_entry: u64::try_from(i).ok().map(|e| e + (1 << 40)),
        })
        .await
        .unwrap();
    }
    let runs = s.runs("nightly").await.unwrap();
    assert_eq!(runs.iter().map(|r| r.outcome).collect::<Vec<_>>(), outcomes);
    assert_eq!(
        (runs[0].session.as_deref(), runs[4].due, runs[4].audit_entry),
        (Some("s1"), 996, Some((1 << 40) + 4))
    );
    assert!(s.runs("other").await.unwrap().is_empty());
}

pub async fn webhook_deliveries_wait_until_done(s: Arc<dyn Store>) {
    let d = |id: &str| OutboxRecord {
        delivery: id.into(),
        url: "https://chat.example.com/hook".into(),
        event: "approval_requested".into(),
        body: format!("{{\"delivery\":\"{id}\"}}"),
        notice: "{}".into(),
        attempts: 0,
        next_at: 1_700_000_000_000,
    };
    for id in ["d-z", "d-a", "d-m"] {
        s.add_delivery(d(id)).await.unwrap();
    }
    s.delivery_failed("d-a", 3, 1_700_000_009_000)
        .await
        .unwrap();
    s.delivery_done("d-z").await.unwrap();
    let left = s.deliveries().await.unwrap();
    assert_eq!(
        left,
        [
            OutboxRecord {
                attempts: 3,
                next_at: 1_700_000_009_000,
                ..d("d-a")
            },
            d("d-m")
        ]
    );
}
