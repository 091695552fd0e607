#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A 100,000-entry export verifies (and reports its rate). Set
//! `STELE_VERIFY_ENTRIES` to change the size (the benchmark uses 1,000,000
//! and `STELE_VERIFY_KEEP` to keep the export for `stele-verify --bench`).

use std::sync::Arc;

use stele_attest::{Ed25519Signer, Signer};
use stele_audit::export::layout::Selection;
use stele_audit::export::write::{export, ExportOptions};
use stele_audit::{
    Actor, AuditLog, Disclosure, Event, EventKind, LogOptions, PayloadInput, Target,
};
use stele_verify::{verify, Bundle, Options};

#[test]
fn hundred_thousand_entries_verify() {
    let n: u64 = std::env::var("STELE_VERIFY_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(Ed25519Signer::from_seed("audit.test.invalid/big", &[1; 32]).unwrap());
    let opts = LogOptions {
        heartbeat: None,
        ..LogOptions::default()
    };
    let log = Arc::new(AuditLog::create(&dir.path().join("audit.db"), key.clone(), opts).unwrap());
    let threads = 64u64;
    let per = n / threads;
    let actor = Actor {
        host: "bench-host".into(),
        principal: "alice".into(),
        runtime: "stele/test".into(),
        teams: vec!["ops".into()],
    };
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let log = log.clone();
            let actor = actor.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    let ev = Event::new(EventKind::PolicyDecision, actor.clone())
                        .with_target(Target {
                            tool: Some("file.read".into()),
                            path: Some(format!("docs/{t}/{i}.txt")),
                            ..Target::default()
                        })
                        .with_payload(PayloadInput {
                            role: "args".into(),
                            media: "text/plain".into(),
                            body: format!("{t}-{i}").into_bytes(),
                            disclosure: Disclosure::CommitmentOnly,
                        });
                    log.append_blocking(ev).unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let out = match std::env::var("STELE_VERIFY_KEEP") {
        Ok(p) => std::path::PathBuf::from(p),
        Err(_) => dir.path().join("exp"),
    };
    let o = ExportOptions {
        selection: Selection::All,
        payloads: false,
        policies: vec![],
        exporter: actor,
        allow_open_session: false,
        tar: false,
    };
    let r = export(&log, key.as_ref(), &o, &out).unwrap();
    assert!(r.tree_size > threads * per);
    let opts = Options {
        log_key: key.verifier(),
        more_keys: Vec::new(),
        revoked: Vec::new(),
        export_key: None,
        witnesses: vec![],
        quorum: None,
        anchors: vec![],
        now: 4_000_000_000,
        tsa: None,
    };
    let rep = verify(&Bundle::open(&out).unwrap(), &opts).unwrap();
    assert_eq!(rep.entries, r.tree_size);
    assert_eq!(
        rep.payloads_withheld,
        threads * per,
        "--no-payloads: every body withheld, none silently missing"
    );
    eprintln!("{rep}");
    let log = Arc::try_unwrap(log).unwrap();
    log.close().unwrap();
}

/// The benchmark of a session export in a large log (figures printed, not
/// asserted): `STELE_EXPORT_LOG` entries (default 50,000) of which one
/// session holds `STELE_EXPORT_SESSION` (default 5,000), interleaved with
/// the rest. Prints the session export's time, the whole log's for
/// comparison, and the verification and report time of the session export.
/// The figures: `STELE_EXPORT_LOG=1000000 STELE_EXPORT_SESSION=10000`.
#[test]
fn a_session_export_in_a_large_log() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (n, in_session) = (
        env("STELE_EXPORT_LOG", 50_000),
        env("STELE_EXPORT_SESSION", 5_000),
    );
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(Ed25519Signer::from_seed("audit.test.invalid/big", &[1; 32]).unwrap());
    let opts = LogOptions {
        heartbeat: None,
        ..LogOptions::default()
    };
    let log = Arc::new(AuditLog::create(&dir.path().join("audit.db"), key.clone(), opts).unwrap());
    let actor = Actor {
        host: "bench-host".into(),
        principal: "alice".into(),
        runtime: "stele/test".into(),
        teams: vec!["ops".into()],
    };
    let event = |actor: &Actor, t: u64, i: u64| {
        Event::new(EventKind::PolicyDecision, actor.clone())
            .with_target(Target {
                path: Some(format!("docs/{t}/{i}.txt")),
                ..Target::default()
            })
            .with_payload(PayloadInput {
                role: "args".into(),
                media: "text/plain".into(),
                body: format!("{t}-{i}").into_bytes(),
                disclosure: Disclosure::CommitmentOnly,
            })
    };
    let threads = 63u64;
    let per = n.saturating_sub(in_session) / threads;
    let mut hs: Vec<_> = (0..threads)
        .map(|t| {
            let (log, actor) = (log.clone(), actor.clone());
            std::thread::spawn(move || {
                for i in 0..per {
                    log.append_blocking(event(&actor, t, i)).unwrap();
                }
            })
        })
        .collect();
    {
        let (log, actor) = (log.clone(), actor.clone());
        hs.push(std::thread::spawn(move || {
            let id = "s-bench";
            log.append_blocking(Event::new(EventKind::SessionStart, actor.clone()).in_session(id))
                .unwrap();
            for i in 0..in_session.saturating_sub(2) {
                log.append_blocking(event(&actor, 999, i).in_session(id))
                    .unwrap();
            }
            log.append_blocking(Event::new(EventKind::SessionEnd, actor.clone()).in_session(id))
                .unwrap();
        }));
    }
    for h in hs {
        h.join().unwrap();
    }
    let export_of = |sel: Selection, name: &str| {
        let out = dir.path().join(name);
        let o = ExportOptions {
            selection: sel,
            payloads: true,
            policies: vec![],
            exporter: actor.clone(),
            allow_open_session: false,
            tar: false,
        };
        let t = std::time::Instant::now();
        let r = export(&log, key.as_ref(), &o, &out).unwrap();
        (out, r, t.elapsed().as_secs_f64())
    };
    let (sout, sr, st) = export_of(
        Selection::Session {
            id: "s-bench".into(),
        },
        "session",
    );
    let (_, wr, wt) = export_of(Selection::All, "whole");
    let vopts = Options {
        log_key: key.verifier(),
        more_keys: Vec::new(),
        revoked: Vec::new(),
        export_key: None,
        witnesses: vec![],
        quorum: None,
        anchors: vec![],
        now: 4_000_000_000,
        tsa: None,
    };
    let t = std::time::Instant::now();
    let rep = verify(&Bundle::open(&sout).unwrap(), &vopts).unwrap();
    let html = stele_verify::account::html::render(&rep.account);
    let vt = t.elapsed().as_secs_f64();
    assert_eq!(rep.selected, sr.selected);
    assert_eq!(rep.account.sessions.len(), 1);
    assert_eq!(rep.account.sessions[0].entries, in_session);
    eprintln!(
        "session export: {} of {} entries in {st:.2} s ({} files); whole-log export: {} entries in {wt:.2} s; \
         verify + HTML report of the session export: {vt:.2} s ({} KB of HTML)",
        sr.selected,
        sr.tree_size,
        sr.files,
        wr.selected,
        html.len() / 1000
    );
    let log = Arc::try_unwrap(log).unwrap();
    log.close().unwrap();
}
