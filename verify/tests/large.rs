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
        export_key: None,
        witnesses: vec![],
        quorum: None,
        anchors: vec![],
        now: 4_000_000_000,
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
