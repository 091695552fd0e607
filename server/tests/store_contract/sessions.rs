//! The sessions index, each session's events, the approvals queue.

use std::sync::Arc;

use stele_protocol::{ApprovalState, SessionState};
use stele_server::store::{ApprovalRecord, SessionRecord, Store};

fn session(id: &str, created: i64) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        owner: "alice".into(),
        workspace: "books".into(),
        state: SessionState::Starting,
        detail: None,
        created,
        updated: created,
    }
}

fn approval(id: &str) -> ApprovalRecord {
    ApprovalRecord {
        id: id.into(),
        session: "s1".into(),
        shown: format!("delete {id}?"),
        shown_sha256: "ab".repeat(32),
        requester: "alice".into(),
        deadline: 1_000,
        state: ApprovalState::Pending,
        approver: None,
    }
}

pub async fn the_sessions_index_is_newest_first_and_keeps_details(s: Arc<dyn Store>) {
    for (id, created) in [("s-b", 20), ("s-a", 20), ("s-c", 10), ("s-d", 30)] {
        s.put_session(session(id, created)).await.unwrap();
    }
    let order: Vec<String> = s
        .sessions()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(order, ["s-d", "s-a", "s-b", "s-c"]);
    // The same id twice is refused.
    assert!(s.put_session(session("s-a", 40)).await.is_err());
    s.set_session_state("s-a", SessionState::Failed, Some("model down".into()), 50)
        .await
        .unwrap();
    // A change without a detail keeps the one there was.
    s.set_session_state("s-a", SessionState::Paused, None, 60)
        .await
        .unwrap();
    let a = s.session("s-a").await.unwrap().unwrap();
    assert_eq!(
        (a.state, a.detail.as_deref(), a.created, a.updated),
        (SessionState::Paused, Some("model down"), 20, 60)
    );
    for state in [
        SessionState::Running,
        SessionState::WaitingApproval,
        SessionState::Ended,
    ] {
        s.set_session_state("s-b", state, None, 70).await.unwrap();
        assert_eq!(s.session("s-b").await.unwrap().unwrap().state, state);
    }
    assert_eq!(s.session("nope").await.unwrap(), None);
}

pub async fn events_keep_their_numbers_and_replay_in_order(s: Arc<dyn Store>) {
    for n in 1..=5u64 {
        s.append_event("s1", n, &format!("{{\"n\":{n}}}"))
            .await
            .unwrap();
    }
    s.append_event("s2", 1, "{\"other\":true}").await.unwrap();
    let all = s.events_after("s1", 0).await.unwrap();
    assert_eq!(
        all.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(all[2].1, "{\"n\":3}");
    let tail = s.events_after("s1", 3).await.unwrap();
    assert_eq!(
        tail,
        [(4, "{\"n\":4}".to_string()), (5, "{\"n\":5}".to_string())]
    );
    assert!(s.events_after("s1", 5).await.unwrap().is_empty());
    // A number is kept once: a second event 3 is refused, the first stays.
    assert!(s.append_event("s1", 3, "{\"dup\":1}").await.is_err());
    assert_eq!(s.events_after("s1", 2).await.unwrap()[0].1, "{\"n\":3}");
    assert_eq!(s.events_after("s2", 0).await.unwrap().len(), 1);
}

pub async fn an_answer_counts_once_even_when_answers_race(s: Arc<dyn Store>) {
    for id in ["a1", "a2", "a3"] {
        s.add_approval(approval(id)).await.unwrap();
    }
    let pending: Vec<String> = s
        .pending_approvals()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(pending, ["a1", "a2", "a3"]);
    assert!(s
        .settle_approval("a1", ApprovalState::Granted, Some("bob"))
        .await
        .unwrap());
    assert!(!s
        .settle_approval("a1", ApprovalState::Refused, Some("carol"))
        .await
        .unwrap());
    let a1 = s.approval("a1").await.unwrap().unwrap();
    assert_eq!(
        (a1.state, a1.approver.as_deref()),
        (ApprovalState::Granted, Some("bob"))
    );
    // Sixteen answers to a2 at once, half granting, half refusing: one counts.
    let mut answers = tokio::task::JoinSet::new();
    for i in 0..16 {
        let s = s.clone();
        answers.spawn(async move {
            let (state, who) = if i % 2 == 0 {
                (ApprovalState::Granted, format!("approver{i}"))
            } else {
                (ApprovalState::Refused, format!("approver{i}"))
            };
            let won = s.settle_approval("a2", state, Some(&who)).await.unwrap();
            (won, state, who)
        });
    }
    let mut winners = Vec::new();
    while let Some(r) = answers.join_next().await {
        let (won, state, who) = r.unwrap();
        if won {
            winners.push((state, who));
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let a2 = s.approval("a2").await.unwrap().unwrap();
    assert_eq!(
        (a2.state, a2.approver),
        (winners[0].0, Some(winners[0].1.clone()))
    );
    // Expiry settles without an approver.
    assert!(s
        .settle_approval("a3", ApprovalState::Expired, None)
        .await
        .unwrap());
    assert!(s.pending_approvals().await.unwrap().is_empty());
    let a3 = s.approval("a3").await.unwrap().unwrap();
    assert_eq!((a3.state, a3.approver), (ApprovalState::Expired, None));
    assert_eq!(s.approval("nope").await.unwrap(), None);
}
