#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `AuditLog::commits`: readers in the writer's process wake when entries
//! are committed, and what they are told is already visible to a reader of
//! the database (the size a reader would poll for).

mod common;

use std::time::Duration;

use common::*;
use stele_audit::{Event, EventKind, Store};

fn decision() -> Event {
    Event::new(EventKind::PolicyDecision, actor())
}

#[test]
fn a_commit_wakes_a_waiter_with_a_size_readers_already_see() {
    let f = Fixture::new();
    let log = f.create();
    let watch = log.commits();
    let start = Store::open(&f.db).unwrap().size().unwrap();
    assert_eq!(watch.size(), start, "the watch starts at the log's size");
    let waiter = {
        let w = watch.clone();
        let db = f.db.clone();
        // An hour's timeout: only a commit can end the wait in time.
        std::thread::spawn(move || {
            let seen = w.wait_past(start, Duration::from_secs(3600));
            (seen, Store::open(&db).unwrap().size().unwrap())
        })
    };
    let r = log.append_blocking(decision()).unwrap();
    let (seen, visible) = waiter.join().unwrap();
    assert!(seen > start && seen <= r.size, "{seen} of {}", r.size);
    assert!(visible >= seen, "told {seen}, a reader saw only {visible}");
    // Released entries are told once written, not when only sequenced.
    let s = log.append_released_blocking(decision()).unwrap();
    let told = watch.wait_past(r.size, Duration::from_secs(30));
    assert!(told > s.seq, "the released entry's commit was told: {told}");
    assert!(Store::open(&f.db).unwrap().size().unwrap() >= told);
    log.close().unwrap();
}
