#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Retention expiry and legal holds on a real log: due bodies are erased
//! under `payload.expiry` entries and the log still verifies; held bodies
//! (by session, principal, time range) are refused to expiry and redaction,
//! naming the hold; a release needs two different principals; tampering
//! with the writer's hold index or erasing a body without its entry is
//! caught by verification; `kill -9` during expiry loses nothing and a
//! re-run finishes.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::*;
use stele_audit::holds::HoldScope;
use stele_audit::payload::commit_text;
use stele_audit::retention::{Retention, RetentionConfig};
use stele_audit::retention_plan::{execute, plan};
use stele_audit::verify::{verify_db, VerifyFailure};
use stele_audit::{
    Actor, AuditError, AuditLog, Disclosure, Event, EventKind, ExpiryRequest, PayloadInput, Store,
};

fn retention(class: &str) -> Retention {
    let cfg = RetentionConfig {
        classes: [("pci".to_string(), class.to_string())].into(),
        default: Some("pci".into()),
        teams: Default::default(),
        hold_officers: vec!["alice".into(), "bob".into()],
    };
    Retention::new(&cfg, format!("sha256:{}", "ab".repeat(32))).unwrap()
}

/// A time far enough ahead that every body of a fresh log is past `1d`.
fn later() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::days(3)
}

fn as_user(name: &str) -> Actor {
    Actor {
        principal: name.into(),
        ..actor()
    }
}

/// A session by `who` with one payload-carrying decision; its commitment.
fn session_by(log: &AuditLog, id: &str, who: &str) -> String {
    log.append_blocking(Event::new(EventKind::SessionStart, as_user(who)).in_session(id))
        .unwrap();
    let r = log
        .append_blocking(
            Event::new(EventKind::PolicyDecision, as_user(who))
                .in_session(id)
                .with_payload(PayloadInput {
                    role: "args".into(),
                    media: "text/plain".into(),
                    body: format!("body of {id}").into_bytes(),
                    disclosure: Disclosure::CommitmentOnly,
                }),
        )
        .unwrap();
    log.append_blocking(Event::new(EventKind::SessionEnd, as_user(who)).in_session(id))
        .unwrap();
    let store = log.store().unwrap();
    let p = store
        .payloads()
        .unwrap()
        .into_iter()
        .find(|p| p.seq == r.seq)
        .unwrap();
    commit_text(&p.cmt.try_into().unwrap())
}

fn verified(f: &Fixture) -> stele_audit::verify::VerifyReport {
    verify_db(&f.db, &f.verifier(), None).unwrap_or_else(|e| panic!("verify: {e}"))
}

fn tampered(f: &Fixture) -> (Option<u64>, String) {
    match verify_db(&f.db, &f.verifier(), None) {
        Err(VerifyFailure::Tampered { index, reason }) => (index, reason),
        other => panic!("expected TAMPERED, got {other:?}"),
    }
}

fn expire_one(log: &AuditLog, commit: &str) -> Result<stele_audit::Receipt, AuditError> {
    log.expire_blocking(ExpiryRequest {
        commits: vec![commit.to_string()],
        class: "pci".into(),
        retention: "1d".into(),
        before: stele_audit::retention::leaf_time(later()),
        config: format!("sha256:{}", "ab".repeat(32)),
        actor: as_user("retention"),
    })
}

#[test]
fn expiry_erases_what_is_due_once_and_the_log_still_verifies() {
    let f = Fixture::new();
    let log = f.create();
    sample_session(&log, "s-1");
    let r = retention("1d");
    // Nothing is due today.
    let today = plan(&log.store().unwrap(), &r, time::OffsetDateTime::now_utc()).unwrap();
    assert!(today.classes.is_empty(), "{today:?}");
    let p = plan(&log.store().unwrap(), &r, later()).unwrap();
    assert_eq!(p.classes.len(), 1);
    assert_eq!(p.classes[0].due.len(), 2, "both payloads of the session");
    let done = execute(&log, &p, &as_user("retention")).unwrap();
    assert_eq!(done.len(), 1);
    // Idempotent: a second run finds nothing, a repeated request is refused.
    let again = plan(&log.store().unwrap(), &r, later()).unwrap();
    assert!(again.classes.is_empty(), "{again:?}");
    let e = expire_one(&log, &p.classes[0].due[0].commit).unwrap_err();
    assert!(e.to_string().contains("already erased"), "{e}");
    // A plain append of the kind is refused: only the log's call writes it.
    let forged = Event::new(EventKind::PayloadExpiry, actor()).with_data(serde_json::json!({}));
    let e = log.append_blocking(forged).unwrap_err();
    assert!(e.to_string().contains("written only by"), "{e}");
    log.close().unwrap();
    let store = Store::open(&f.db).unwrap();
    for p in store.payloads().unwrap() {
        assert!(p.body.is_none() && p.salt.is_none(), "{p:?}");
        assert_eq!(p.redacted_seq, Some(done[0].seq));
    }
    let rep = verified(&f);
    assert_eq!(rep.payloads_redacted, 2);
    assert_eq!(rep.expiries.len(), 1);
    assert_eq!(rep.expiries[0].class, "pci");
    assert_eq!(rep.expiries[0].count, 2);
    assert_eq!(rep.expiries[0].actor, "retention");
}

/// A hold scope, given the time the held session starts.
type ScopeOf = fn(&str) -> HoldScope;

#[test]
fn held_payloads_are_refused_to_expiry_and_redaction_for_every_scope() {
    let scopes: [(&str, ScopeOf); 3] = [
        ("session", |_| HoldScope::Session("held".into())),
        ("principal", |_| HoldScope::Principal("carol".into())),
        ("time range", |from| HoldScope::Range {
            from: from.to_string(),
            until: "2999-01-01T00:00:00.000000Z".into(),
        }),
    ];
    for (name, scope) in scopes {
        let f = Fixture::new();
        let log = f.create();
        let free = session_by(&log, "free", "dave");
        // The range starts after `free` was written.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let from = stele_audit::leaf::now_ts();
        let held = session_by(&log, "held", "carol");
        let h = log
            .place_hold_blocking(scope(&from), "matter 42".into(), None, as_user("alice"))
            .unwrap();
        let p = plan(&log.store().unwrap(), &retention("1d"), later()).unwrap();
        let c = &p.classes[0];
        assert_eq!(
            c.due.iter().map(|d| d.commit.as_str()).collect::<Vec<_>>(),
            [free.as_str()],
            "{name}"
        );
        assert_eq!(c.held.len(), 1, "{name}");
        assert_eq!(c.held[0].0.commit, held, "{name}");
        assert_eq!(c.held[0].1, h.seq, "{name}");
        for e in [
            expire_one(&log, &held).unwrap_err(),
            log.redact_blocking(vec![held.clone()], "erasure".into(), as_user("alice"))
                .unwrap_err(),
        ] {
            assert!(matches!(e, AuditError::Held(_)), "{name}: {e:?}");
            let m = e.to_string();
            assert!(m.contains(&format!("legal hold {}", h.seq)), "{name}: {m}");
            assert!(m.contains("matter 42"), "{name}: {m}");
        }
        // One held commitment in a request refuses all of it.
        let e = log
            .redact_blocking(
                vec![free.clone(), held.clone()],
                "x".into(),
                as_user("alice"),
            )
            .unwrap_err();
        assert!(matches!(e, AuditError::Held(_)), "{name}: {e:?}");
        execute(&log, &p, &as_user("retention")).unwrap();
        log.close().unwrap();
        let store = Store::open(&f.db).unwrap();
        let body = |c: &str| {
            store
                .payload(&stele_audit::payload::parse_commit(c).unwrap())
                .unwrap()
                .unwrap()
                .body
        };
        assert!(body(&held).is_some(), "{name}: the held body is kept");
        assert!(body(&free).is_none(), "{name}: the free one expired");
        let rep = verified(&f);
        assert_eq!(rep.holds.len(), 1, "{name}");
        assert!(rep.holds[0].released.is_none(), "{name}");
    }
}

#[test]
fn release_needs_two_different_principals_and_then_expiry_proceeds() {
    let f = Fixture::new();
    let log = f.create();
    let held = session_by(&log, "held", "carol");
    let h = log
        .place_hold_blocking(
            HoldScope::Session("held".into()),
            "litigation".into(),
            None,
            as_user("alice"),
        )
        .unwrap()
        .seq;
    let one = log
        .release_hold_blocking(h, "settled".into(), None, as_user("alice"))
        .unwrap();
    // The same principal twice: refused, and still held.
    let e = log
        .release_hold_blocking(h, "settled".into(), None, as_user("alice"))
        .unwrap_err();
    assert!(matches!(e, AuditError::Denied(_)), "{e:?}");
    assert!(e.to_string().contains("dual control"), "{e}");
    assert!(matches!(
        expire_one(&log, &held).unwrap_err(),
        AuditError::Held(_)
    ));
    // Not a hold; an empty reason.
    let e = log
        .release_hold_blocking(one.seq, "x".into(), None, as_user("bob"))
        .unwrap_err();
    assert!(e.to_string().contains("not a legal hold"), "{e}");
    let e = log
        .release_hold_blocking(h, " ".into(), None, as_user("bob"))
        .unwrap_err();
    assert!(e.to_string().contains("reason"), "{e}");
    // A second, different principal releases it.
    let two = log
        .release_hold_blocking(h, "settled".into(), None, as_user("bob"))
        .unwrap();
    let e = log
        .release_hold_blocking(h, "again".into(), None, as_user("carol"))
        .unwrap_err();
    assert!(e.to_string().contains("already released"), "{e}");
    expire_one(&log, &held).unwrap();
    log.close().unwrap();
    let rep = verified(&f);
    let hs = &rep.holds[0];
    assert_eq!(hs.first_approval, Some(("alice".to_string(), one.seq)));
    assert_eq!(hs.released, Some(two.seq));
    // The writer reads the holds back from the log after a restart.
    let log = f.open().unwrap();
    let e = log
        .release_hold_blocking(h, "again".into(), None, as_user("carol"))
        .unwrap_err();
    assert!(e.to_string().contains("already released"), "{e}");
}

#[test]
fn holds_survive_a_restart_of_the_writer() {
    let f = Fixture::new();
    let log = f.create();
    let held = session_by(&log, "held", "carol");
    let h = log
        .place_hold_blocking(
            HoldScope::Principal("carol".into()),
            "m".into(),
            None,
            as_user("alice"),
        )
        .unwrap()
        .seq;
    log.release_hold_blocking(h, "ok".into(), None, as_user("alice"))
        .unwrap();
    log.close().unwrap();
    let log = f.open().unwrap();
    assert!(matches!(
        expire_one(&log, &held).unwrap_err(),
        AuditError::Held(_)
    ));
    let e = log
        .release_hold_blocking(h, "ok".into(), None, as_user("alice"))
        .unwrap_err();
    assert!(e.to_string().contains("dual control"), "{e}");
}

#[test]
fn an_erasure_of_a_held_payload_is_caught_even_when_the_writers_index_was_emptied() {
    let f = Fixture::new();
    let log = f.create();
    let held = session_by(&log, "held", "carol");
    log.place_hold_blocking(
        HoldScope::Session("held".into()),
        "m".into(),
        None,
        as_user("alice"),
    )
    .unwrap();
    log.close().unwrap();
    // Someone with the file empties the derived index the writer trusts…
    raw(&f.db).execute("DELETE FROM hold_entries", []).unwrap();
    // …so the writer no longer knows the hold and erases the body.
    let log = f.open().unwrap();
    let r = log
        .redact_blocking(vec![held], "erasure".into(), as_user("alice"))
        .unwrap();
    log.close().unwrap();
    // Verification replays the signed hold.place entry, not the index.
    let (index, reason) = tampered(&f);
    assert_eq!(index, Some(r.seq), "{reason}");
    assert!(reason.contains("legal hold"), "{reason}");
}

#[test]
fn a_body_erased_without_its_expiry_entry_is_caught() {
    let f = Fixture::new();
    let log = f.create();
    let a = session_by(&log, "a", "dave");
    let b = session_by(&log, "b", "dave");
    let r = expire_one(&log, &a).unwrap();
    log.close().unwrap();
    // b's body erased and pointed at the expiry entry, which does not name it.
    let c = raw(&f.db);
    c.execute_batch("DROP TRIGGER payloads_redact_only")
        .unwrap();
    c.execute(
        "UPDATE payloads SET body = NULL, salt = NULL, redacted_seq = ?1 WHERE cmt = ?2",
        rusqlite::params![
            r.seq as i64,
            &stele_audit::payload::parse_commit(&b).unwrap()[..]
        ],
    )
    .unwrap();
    let (_, reason) = tampered(&f);
    assert!(
        reason.contains("without a redaction or expiry entry"),
        "{reason}"
    );
}

#[test]
fn an_expiry_before_its_cut_off_is_refused_by_the_writer() {
    let f = Fixture::new();
    let log = f.create();
    let a = session_by(&log, "a", "dave");
    let e = log
        .expire_blocking(ExpiryRequest {
            commits: vec![a],
            class: "pci".into(),
            retention: "1d".into(),
            before: "2000-01-01T00:00:00.000000Z".into(),
            config: format!("sha256:{}", "ab".repeat(32)),
            actor: as_user("retention"),
        })
        .unwrap_err();
    assert!(e.to_string().contains("not before the cut-off"), "{e}");
}

const CHILD_ENV: &str = "STELE_RETENTION_KILL_CHILD";
const PAYLOADS: usize = 240;

/// The expiring process (run as a child): expires the log's payloads five
/// at a time, printing each acknowledged expiry entry's index.
#[test]
fn expiry_child() {
    let Ok(db) = std::env::var(CHILD_ENV) else {
        return;
    };
    let f = Fixture::new();
    let log = AuditLog::open(std::path::Path::new(&db), f.signer.clone(), Fixture::opts()).unwrap();
    let p = plan(&log.store().unwrap(), &retention("1d"), later()).unwrap();
    let mut out = std::io::stdout();
    for chunk in p.classes[0].due.chunks(5) {
        let r = log
            .expire_blocking(ExpiryRequest {
                commits: chunk.iter().map(|d| d.commit.clone()).collect(),
                class: "pci".into(),
                retention: "1d".into(),
                before: p.classes[0].before.clone(),
                config: p.config.clone(),
                actor: as_user("retention"),
            })
            .unwrap();
        writeln!(out, "{}", r.seq).unwrap();
        out.flush().unwrap();
    }
    writeln!(out, "done").unwrap();
}

#[test]
fn kill_9_during_expiry_loses_nothing_and_a_rerun_finishes() {
    let f = Fixture::new();
    let log = std::sync::Arc::new(f.create());
    // Payloads written by several threads (group commit keeps it quick).
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..PAYLOADS / 8 {
                    log.append_blocking(
                        Event::new(EventKind::PolicyDecision, actor()).with_payload(PayloadInput {
                            role: "args".into(),
                            media: "text/plain".into(),
                            body: format!("{t}/{i}").into_bytes(),
                            disclosure: Disclosure::CommitmentOnly,
                        }),
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    std::sync::Arc::into_inner(log).unwrap().close().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "expiry_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &f.db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    // Kill it part-way: after a few acknowledged expiry entries.
    while acked.len() < 6 {
        let l = lines.next().unwrap().unwrap();
        if let Ok(seq) = l.trim().parse::<u64>() {
            acked.push(seq);
        }
    }
    // SIGKILL (std's kill on Unix): no chance to finish anything.
    child.kill().unwrap();
    child.wait().unwrap();
    // The log verifies as it was left: every erased body is named by an
    // expiry entry that is in the log, and every acknowledged one is there.
    let rep = verified(&f);
    assert!(
        rep.expiries.len() >= acked.len(),
        "{} < {}",
        rep.expiries.len(),
        acked.len()
    );
    assert!(
        rep.expiries.len() < PAYLOADS / 5,
        "the kill came before the end"
    );
    let seen: Vec<u64> = rep.expiries.iter().map(|e| e.seq).collect();
    for a in &acked {
        assert!(
            seen.contains(a),
            "acknowledged expiry entry {a} is in the log"
        );
    }
    let store = Store::open(&f.db).unwrap();
    let erased = store
        .payloads()
        .unwrap()
        .into_iter()
        .filter(|p| p.body.is_none())
        .count();
    assert_eq!(
        erased,
        5 * rep.expiries.len(),
        "exactly the named bodies are gone"
    );
    drop(store);
    // A re-run finishes the job.
    let log = f.open().unwrap();
    let p = plan(&log.store().unwrap(), &retention("1d"), later()).unwrap();
    assert_eq!(p.classes[0].due.len(), PAYLOADS - erased);
    execute(&log, &p, &as_user("retention")).unwrap();
    log.close().unwrap();
    let rep = verified(&f);
    assert_eq!(rep.payloads_redacted as usize, PAYLOADS);
    assert_eq!(rep.payloads_present, 0);
}
