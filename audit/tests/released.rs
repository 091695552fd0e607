#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! External synchrony in the log itself: a released append gets its place
//! in the one sequence at once; a durable append after it covers it; and a
//! released entry that cannot be written stops the log for good, so that
//! nothing ordered after it can be acknowledged.

mod common;

use common::*;
use stele_audit::verify::verify_db;
use stele_audit::{AuditError, Event, EventKind, Store};

fn decision() -> Event {
    Event::new(EventKind::PolicyDecision, actor())
}

#[test]
fn released_and_durable_appends_share_one_order_and_one_flush() {
    let f = Fixture::new();
    let log = f.create();
    let mut seqs = Vec::new();
    for i in 0..50u64 {
        if i % 10 == 9 {
            let r = log.append_blocking(decision()).unwrap();
            // Everything ordered before a durable entry is written with it.
            let store = Store::open(&f.db).unwrap();
            assert_eq!(store.size().unwrap(), r.seq + 1, "entry {i}");
            assert_eq!(r.size, r.seq + 1);
            seqs.push(r.seq);
        } else {
            let s = log.append_released_blocking(decision()).unwrap();
            // The leaf hash handed out is the one later written.
            seqs.push(s.seq);
            if i % 10 == 8 {
                let r = log.append_blocking(decision()).unwrap();
                let e = Store::open(&f.db).unwrap().entry(s.seq).unwrap();
                assert_eq!(stele_audit::merkle::leaf_hash(&e.leaf), s.leaf_hash);
                seqs.push(r.seq);
            }
        }
    }
    let want: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, want, "one gapless sequence in call order");
    log.close().unwrap();
    let rep = verify_db(&f.db, &f.verifier(), None).unwrap();
    assert_eq!(rep.entries, seqs.len() as u64 + 2);
}

#[test]
fn released_entries_alone_are_written_soon_and_on_close() {
    let f = Fixture::new();
    let log = f.create();
    let mut last = 0;
    for _ in 0..20 {
        last = log.append_released_blocking(decision()).unwrap().seq;
    }
    // Written within moments even with no durable append after them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while Store::open(&f.db).unwrap().size().unwrap() <= last {
        assert!(
            std::time::Instant::now() < deadline,
            "released entries never written"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let more = log.append_released_blocking(decision()).unwrap();
    log.close().unwrap();
    let rep = verify_db(&f.db, &f.verifier(), None).unwrap();
    assert_eq!(
        rep.entries,
        more.seq + 2,
        "the last released one and log.close"
    );
}

/// A write that fails: the next insert at or after `seq` is refused by a
/// trigger another connection adds (a stand-in for a failing disk).
fn fail_inserts_from(f: &Fixture, seq: u64) {
    raw(&f.db)
        .execute_batch(&format!(
            "CREATE TRIGGER fail_from BEFORE INSERT ON entries WHEN NEW.seq >= {seq} \
             BEGIN SELECT RAISE(ABORT, 'simulated write failure'); END;"
        ))
        .unwrap();
}

fn heal(f: &Fixture) {
    raw(&f.db).execute_batch("DROP TRIGGER fail_from;").unwrap();
}

#[test]
fn a_lost_released_entry_stops_every_later_write() {
    let f = Fixture::new();
    let log = f.create();
    let first = log.append_blocking(decision()).unwrap();
    fail_inserts_from(&f, first.seq + 1);
    // Released before it is written: the caller already holds its index.
    let s = log.append_released_blocking(decision()).unwrap();
    assert_eq!(s.seq, first.seq + 1);
    // The durable entry after it is never acknowledged.
    let e = log.append_blocking(decision()).unwrap_err();
    assert!(e.to_string().contains("simulated write failure"), "{e}");
    heal(&f);
    // Nor is anything after, released or durable, even once the disk is back:
    // an index was handed out for an entry that is not in the log.
    let e = log.append_blocking(decision()).unwrap_err();
    assert!(matches!(e, AuditError::Refused(_)), "{e}");
    let e = log.append_released_blocking(decision()).unwrap_err();
    assert!(matches!(e, AuditError::Refused(_)), "{e}");
    assert_eq!(Store::open(&f.db).unwrap().size().unwrap(), first.seq + 1);
}

#[test]
fn a_failed_durable_batch_is_undone_when_nothing_was_released() {
    let f = Fixture::new();
    let log = f.create();
    let first = log.append_blocking(decision()).unwrap();
    fail_inserts_from(&f, first.seq + 1);
    assert!(log.append_blocking(decision()).is_err());
    heal(&f);
    // Nobody held the failed entry's index: the log goes on and reuses it.
    let r = log.append_blocking(decision()).unwrap();
    assert_eq!(r.seq, first.seq + 1);
    log.close().unwrap();
    verify_db(&f.db, &f.verifier(), None).unwrap();
}

/// Released appends are ordered on their callers' own threads, under the
/// lock the sequencer writes under, and blocking durable ones are committed
/// and flushed there too: with many threads mixing released and durable
/// appends (async ones through the sequencer among them), every index handed out is the entry later written with
/// that caller's data, each thread's entries are in its call order, and a
/// durable reply covers every released entry its thread was given before.
#[test]
fn released_appends_ordered_on_many_threads_keep_one_sequence() {
    let f = Fixture::new();
    let log = std::sync::Arc::new(f.create());
    let threads = 6u64;
    let per = 150u64;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = log.clone();
            let db = f.db.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let mut got = Vec::new();
                for i in 0..per {
                    let ev = decision().with_data(serde_json::json!({ "t": t, "i": i }));
                    if i % 25 == 24 {
                        // Thread 0's durable entries go through the
                        // sequencer and its syncer (async callers), the
                        // others' are committed on their own threads.
                        let r = if t == 0 {
                            rt.block_on(log.append(ev)).unwrap()
                        } else {
                            log.append_blocking(ev).unwrap()
                        };
                        // Durable: everything this thread was given before
                        // is written (and was flushed with it).
                        let size = Store::open(&db).unwrap().size().unwrap();
                        assert!(size > r.seq, "durable {t}/{i} not written");
                        assert!(got.iter().all(|&(s, _)| s < r.seq));
                        got.push((r.seq, i));
                    } else {
                        let s = log.append_released_blocking(ev).unwrap();
                        if let Some(&(prev, _)) = got.last() {
                            assert!(s.seq > prev, "thread {t}: {} after {prev}", s.seq);
                        }
                        got.push((s.seq, i));
                    }
                }
                (t, got)
            })
        })
        .collect();
    let results: Vec<(u64, Vec<(u64, u64)>)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    let log = std::sync::Arc::into_inner(log).unwrap();
    log.close().unwrap();
    let store = Store::open(&f.db).unwrap();
    let mut all = std::collections::BTreeSet::new();
    for (t, got) in &results {
        for &(seq, i) in got {
            assert!(all.insert(seq), "index {seq} handed out twice");
            let leaf: serde_json::Value =
                serde_json::from_slice(&store.entry(seq).unwrap().leaf).unwrap();
            assert_eq!(leaf["data"]["t"], serde_json::json!(t), "entry {seq}");
            assert_eq!(leaf["data"]["i"], serde_json::json!(i), "entry {seq}");
        }
    }
    assert_eq!(all.len() as u64, threads * per);
    let rep = verify_db(&f.db, &f.verifier(), None).unwrap();
    assert!(rep.entries >= threads * per + 2);
}

/// Callers now append without a message to the sequencer: its linger for
/// released entries may end after a caller wrote them itself, and that
/// must not become a heartbeat (none is configured here), nor may a
/// heartbeat come while callers are appending.
#[test]
fn callers_writing_lingering_entries_themselves_never_cause_a_heartbeat() {
    let f = Fixture::new();
    let log = f.create();
    for i in 0..300u32 {
        log.append_released_blocking(decision()).unwrap();
        if i % 3 == 2 {
            // Let the sequencer's linger end about when the caller commits.
            std::thread::sleep(std::time::Duration::from_millis(2));
            log.append_blocking(decision()).unwrap();
        }
    }
    log.close().unwrap();
    let store = Store::open(&f.db).unwrap();
    for seq in 0..store.size().unwrap() {
        let leaf: serde_json::Value =
            serde_json::from_slice(&store.entry(seq).unwrap().leaf).unwrap();
        assert_ne!(leaf["kind"], serde_json::json!("heartbeat"), "entry {seq}");
    }
}
