#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The index by session: written with each entry, built once for a log
//! that predates it when it is opened for writing, the same as reading
//! every entry where it is absent — and never trusted: an export through a
//! damaged index fails closed and leaves nothing behind.

mod common;

use common::*;
use stele_audit::export::layout::Selection;
use stele_audit::export::write::{export, ExportOptions};
use stele_audit::store::SessionLookup;
use stele_audit::Store;

/// (n, seq, leaf) of session `id` as the store gives them, and how.
fn read(store: &Store, id: &str) -> (Vec<(u64, u64, Vec<u8>)>, SessionLookup) {
    let mut v = Vec::new();
    let how = store
        .for_each_session_entry(id, u64::MAX, |e| {
            v.push((e.n, e.seq, e.leaf.to_vec()));
            Ok(())
        })
        .unwrap();
    (v, how)
}

/// The same, from the leaves themselves.
fn by_hand(store: &Store, id: &str) -> Vec<(u64, u64, Vec<u8>)> {
    let mut v = Vec::new();
    store
        .for_each_entry(0, store.size().unwrap(), |seq, leaf, _| {
            let l = stele_audit::leaf::Leaf::parse_canonical(leaf).unwrap();
            if let Some(s) = l.session.filter(|s| s.id == id) {
                v.push((s.n, seq, leaf.to_vec()));
            }
            Ok(())
        })
        .unwrap();
    v
}

/// Sessions a and b2 side by side, with whole sessions b and c between.
fn interleaved(log: &stele_audit::AuditLog) {
    use stele_audit::{Event, EventKind};
    let ev = |k, id: &str| {
        log.append_blocking(Event::new(k, actor()).in_session(id))
            .unwrap()
    };
    sample_session(log, "c");
    ev(EventKind::SessionStart, "a");
    ev(EventKind::SessionStart, "b2");
    sample_session(log, "b");
    for _ in 0..5 {
        ev(EventKind::PolicyDecision, "a");
        ev(EventKind::PolicyDecision, "b2");
    }
    ev(EventKind::SessionEnd, "a");
    ev(EventKind::SessionEnd, "b2");
}

fn session_opts(id: &str) -> ExportOptions {
    ExportOptions {
        selection: Selection::Session { id: id.into() },
        payloads: true,
        policies: vec![],
        exporter: actor(),
        allow_open_session: false,
        tar: false,
    }
}

#[test]
fn the_index_is_written_with_each_entry() {
    let f = Fixture::new();
    let log = f.create();
    interleaved(&log);
    let store = log.store().unwrap();
    for id in ["a", "b", "b2", "c"] {
        let (got, how) = read(&store, id);
        assert_eq!(how, SessionLookup::Index);
        assert!(!got.is_empty(), "{id}");
        assert_eq!(got, by_hand(&store, id), "{id}");
    }
    assert!(read(&store, "nobody").0.is_empty());
    log.close().unwrap();
}

#[test]
fn an_old_log_gets_the_index_once_opened_for_writing_and_reads_the_same_without_it() {
    let f = Fixture::new();
    let log = f.create();
    interleaved(&log);
    let store = log.store().unwrap();
    let want: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|id| read(&store, id).0)
        .collect();
    drop(store);
    log.close().unwrap();
    // As a schema-2 log: no index.
    let c = rusqlite::Connection::open(&f.db).unwrap();
    c.execute_batch(
        "DROP TABLE session_links; UPDATE meta SET v = '2' WHERE k = 'schema'; UPDATE sessions SET first = NULL, last = NULL;",
    )
        .unwrap();
    drop(c);
    // Read-only: by scan, the same entries.
    let store = Store::open(&f.db).unwrap();
    assert!(!store.has_session_index().unwrap());
    for (id, w) in ["a", "b", "c"].iter().zip(&want) {
        let (got, how) = read(&store, id);
        assert_eq!(how, SessionLookup::Scan);
        assert_eq!(&got, w, "{id}");
    }
    drop(store);
    // Opened for writing: built, schema 3, the same entries through it,
    // and kept from then on.
    let log = f.open().unwrap();
    let store = log.store().unwrap();
    assert_eq!(
        store.meta("schema").unwrap().as_deref(),
        Some(stele_audit::schema::SCHEMA_VERSION)
    );
    for (id, w) in ["a", "b", "c"].iter().zip(&want) {
        let (got, how) = read(&store, id);
        assert_eq!(how, SessionLookup::Index);
        assert_eq!(&got, w, "{id}");
    }
    sample_session(&log, "d");
    let (got, how) = read(&store, "d");
    assert_eq!((got.len(), how), (4, SessionLookup::Index));
    // An export through the rebuilt index holds the same entries.
    let out = f.dir.path().join("exp");
    let r = export(&log, f.signer.as_ref(), &session_opts("a"), &out).unwrap();
    assert_eq!(r.selected, want[0].len() as u64);
    for (_, seq, _) in &want[0] {
        assert!(out.join(format!("proofs/{seq}.tlog-proof")).is_file());
    }
    log.close().unwrap();
}

/// Each kind of damage to the derived index is caught by what the export
/// checks (session id, n, sub-chain, the `sessions` row), and nothing is
/// written.
#[test]
fn a_damaged_index_fails_the_export_closed() {
    // `{aN}`: the index of session a's entry n; `{b}`: of session b's last.
    let damages: [(&str, &str); 5] = [
        (
            "a middle link deleted",
            "DELETE FROM session_links WHERE seq = {a3}",
        ),
        (
            "a link to another session's entry",
            "UPDATE session_links SET prev = {b} WHERE seq = {a1}",
        ),
        (
            "the session's newest entry moved back",
            "UPDATE sessions SET last = {a4} WHERE id = 'a'",
        ),
        (
            "a link that loops",
            "UPDATE session_links SET prev = {a3} WHERE seq = {a3}",
        ),
        (
            "a link that skips an entry",
            "UPDATE session_links SET prev = {a1} WHERE seq = {a3}",
        ),
    ];
    for (what, sql) in damages {
        let f = Fixture::new();
        let log = f.create();
        interleaved(&log);
        let store = log.store().unwrap();
        let a = by_hand(&store, "a");
        let b = by_hand(&store, "b");
        drop(store);
        log.close().unwrap();
        let mut sql = sql.replace("{b}", &b.last().unwrap().1.to_string());
        for (k, (_, seq, _)) in a.iter().enumerate() {
            sql = sql.replace(&format!("{{a{k}}}"), &seq.to_string());
        }
        let c = rusqlite::Connection::open(&f.db).unwrap();
        assert!(c.execute(&sql, []).unwrap() > 0, "{what}");
        drop(c);
        let log = f.open().unwrap();
        let out = f.dir.path().join("exp");
        let e = export(&log, f.signer.as_ref(), &session_opts("a"), &out)
            .expect_err(what)
            .to_string();
        assert!(e.contains("damaged"), "{what}: {e}");
        assert!(e.contains("session a"), "{what}: {e}");
        assert!(!out.exists(), "{what}");
        log.close().unwrap();
    }
}
