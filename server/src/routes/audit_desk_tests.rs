//! A timeline page is exactly the session's entries, in log order, once,
//! whichever way and at whatever size it is paged — with other sessions'
//! and the log's own entries interleaved between them.

use std::sync::Arc;

use stele_audit::{Actor, AuditLog, Event, EventKind, LogOptions};

use super::super::audit_facts::facts_of;
use super::{read_page, Direction};

/// A log where sessions `a` (30 entries) and `b` (20) interleave with
/// entries of no session; the indices of `a`'s entries.
fn interleaved(dir: &std::path::Path) -> (AuditLog, Vec<u64>) {
    let signer = stele_attest::Ed25519Signer::from_seed("desk.test/log", &[7; 32]).unwrap();
    let log = AuditLog::create(
        &dir.join("audit.db"),
        Arc::new(signer),
        LogOptions::default(),
    )
    .unwrap();
    let mut a = Vec::new();
    for i in 0..60u64 {
        let ev = match i % 6 {
            0..=2 => {
                let kind = if i == 0 {
                    EventKind::SessionStart
                } else {
                    EventKind::AuditRead
                };
                Event::new(kind, Actor::system()).in_session("a")
            }
            3 | 4 => Event::new(
                if i == 3 {
                    EventKind::SessionStart
                } else {
                    EventKind::AuditRead
                },
                Actor::system(),
            )
            .in_session("b"),
            _ => Event::new(EventKind::AuditRead, Actor::system()),
        };
        let in_a = i % 6 <= 2;
        let seq = log.append_blocking(ev).unwrap().seq;
        if in_a {
            a.push(seq);
        }
    }
    (log, a)
}

fn indices(p: &super::Page) -> Vec<u64> {
    p.entries
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect()
}

#[test]
fn forward_and_backward_pages_are_the_sessions_entries_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (log, want) = interleaved(dir.path());
    for limit in [1u64, 2, 7, 30, 31, 500] {
        let mut got = Vec::new();
        let mut page = read_page(&log, "a", Direction::Forward(0), limit).unwrap();
        assert_eq!(page.total, 30);
        loop {
            assert!(page.entries.len() as u64 <= limit);
            got.extend(indices(&page));
            match page.next {
                Some(n) => page = read_page(&log, "a", Direction::Forward(n), limit).unwrap(),
                None => break,
            }
        }
        assert_eq!(got, want, "forward, {limit} per page");
        let end = page.last.unwrap() + 1;
        let mut back: Vec<u64> = Vec::new();
        let mut page = read_page(&log, "a", Direction::Backward(end), limit).unwrap();
        loop {
            let mut i = indices(&page);
            i.append(&mut back);
            back = i;
            match page.prev {
                Some(b) => page = read_page(&log, "a", Direction::Backward(b), limit).unwrap(),
                None => break,
            }
        }
        assert_eq!(back, want, "backward, {limit} per page");
    }
}

#[test]
fn cursors_outside_the_session_give_its_edges_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, want) = interleaved(dir.path());
    // Before the session's start: its first page; past its end: nothing.
    let p = read_page(&log, "a", Direction::Forward(0), 3).unwrap();
    assert_eq!(indices(&p), want[..3]);
    assert_eq!(p.prev, None);
    let p = read_page(&log, "a", Direction::Forward(u64::MAX), 3).unwrap();
    assert!(p.entries.is_empty());
    let p = read_page(&log, "a", Direction::Backward(u64::MAX), 3).unwrap();
    assert_eq!(indices(&p), want[want.len() - 3..]);
    assert_eq!(p.next, None);
    let p = read_page(&log, "a", Direction::Backward(0), 3).unwrap();
    assert!(p.entries.is_empty());
    // A session the log does not have.
    let p = read_page(&log, "nope", Direction::Forward(0), 3).unwrap();
    assert!(p.entries.is_empty());
    assert_eq!((p.total, p.first, p.last), (0, None, None));
    // The counts are of the session's own entries only.
    let store = log.store().unwrap();
    let f = facts_of(&store, "a").unwrap();
    assert_eq!((f.entries, f.denials, f.approvals), (30, 0, 0));
    assert_eq!(facts_of(&store, "b").unwrap().entries, 20);
    // Counted again after the session grew: the new entry is counted.
    log.append_blocking(Event::new(EventKind::AuditRead, Actor::system()).in_session("a"))
        .unwrap();
    let store = log.store().unwrap();
    assert_eq!(facts_of(&store, "a").unwrap().entries, 31);
    assert_eq!(facts_of(&store, "a").unwrap().entries, 31);
}
