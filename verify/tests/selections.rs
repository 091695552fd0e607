#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Time-range selections, withheld payloads, policy bundle copies and the
//! OCSF classes.

use std::sync::Arc;

use stele_attest::dsse::Envelope;
use stele_attest::intoto::{Statement, Subject};
use stele_attest::{Ed25519Signer, Signer};
use stele_audit::export::layout::{sha256, Selection, MANIFEST, PREDICATE_TYPE};
use stele_audit::export::write::{export, ExportOptions, PolicyInput};
use stele_audit::{
    Actor, AuditLog, Disclosure, Event, EventKind, LogOptions, PayloadInput, Refs, Target,
};
use stele_verify::{verify, Bundle, Options};

fn actor() -> Actor {
    Actor {
        host: "h".into(),
        principal: "carol".into(),
        runtime: "stele/test".into(),
        teams: vec![],
    }
}

fn fixture() -> (tempfile::TempDir, Arc<Ed25519Signer>, AuditLog) {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(Ed25519Signer::from_seed("audit.test.invalid/sel", &[5; 32]).unwrap());
    let log = AuditLog::create(
        &dir.path().join("audit.db"),
        key.clone(),
        LogOptions {
            heartbeat: None,
            ..LogOptions::default()
        },
    )
    .unwrap();
    (dir, key, log)
}

fn opts(key: &Ed25519Signer) -> Options {
    Options {
        log_key: key.verifier(),
        more_keys: Vec::new(),
        revoked: Vec::new(),
        export_key: None,
        witnesses: vec![],
        quorum: None,
        anchors: vec![],
        now: 4_000_000_000,
        tsa: None,
    }
}

fn exec_and_file(log: &AuditLog, id: &str) {
    log.append_blocking(Event::new(EventKind::SessionStart, actor()).in_session(id))
        .unwrap();
    let i = log
        .append_blocking(
            Event::new(EventKind::ExecStart, actor())
                .in_session(id)
                .with_target(Target {
                    program: Some("/usr/bin/ls".into()),
                    argv: Some(vec!["ls".into()]),
                    ..Target::default()
                }),
        )
        .unwrap();
    log.append_blocking(
        Event::new(EventKind::ExecEnd, actor())
            .in_session(id)
            .with_refs(Refs {
                intent_leaf: stele_audit::leaf::hash_b64(&i.leaf_hash),
                intent_seq: i.seq,
            })
            .with_outcome(stele_audit::Outcome::status(stele_audit::Status::Ok))
            .with_payload(PayloadInput {
                role: "stdout".into(),
                media: "text/plain".into(),
                body: b"a.txt\n".to_vec(),
                disclosure: Disclosure::WithDigest,
            }),
    )
    .unwrap();
    log.append_blocking(
        Event::new(EventKind::FileOpen, actor())
            .in_session(id)
            .with_target(Target {
                path: Some("a.txt".into()),
                ..Target::default()
            }),
    )
    .unwrap();
    log.append_blocking(Event::new(EventKind::SessionEnd, actor()).in_session(id))
        .unwrap();
}

#[test]
fn time_range_without_payloads_and_ocsf_classes() {
    let (dir, key, log) = fixture();
    exec_and_file(&log, "early");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let since = stele_audit::leaf::now_ts();
    exec_and_file(&log, "late");
    // The bound is exclusive: a later microsecond than the last entry's.
    std::thread::sleep(std::time::Duration::from_millis(2));
    let until = stele_audit::leaf::now_ts();
    let out = dir.path().join("exp");
    let o = ExportOptions {
        selection: Selection::Time { since, until },
        payloads: false,
        policies: vec![],
        exporter: actor(),
        allow_open_session: false,
        tar: false,
    };
    export(&log, key.as_ref(), &o, &out).unwrap();
    let r = verify(&Bundle::open(&out).unwrap(), &opts(&key)).unwrap();
    assert_eq!(r.selected, 5);
    assert_eq!(r.proofs, 5);
    assert_eq!((r.payloads_verified, r.payloads_withheld), (0, 1));
    assert_eq!(
        r.unfinished.len(),
        2,
        "the file.open intents have no close: {:?}",
        r.unfinished
    );
    let mut ocsf = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(
            std::fs::File::open(out.join("ocsf/events.jsonl.gz")).unwrap(),
        ),
        &mut ocsf,
    )
    .unwrap();
    let classes: Vec<u64> = ocsf
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["class_uid"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(classes, vec![6003, 1007, 1007, 1001, 6003]);
    let summary = std::fs::read_to_string(out.join("SUMMARY.md")).unwrap();
    assert!(summary.contains("- late: carol"), "{summary}");
    assert!(!summary.contains("early"), "{summary}");
    log.close().unwrap();
}

#[test]
fn policy_copies_are_digested_and_checked() {
    let (dir, key, log) = fixture();
    exec_and_file(&log, "s");
    let pol = dir.path().join("finance");
    std::fs::create_dir_all(pol.join("org")).unwrap();
    std::fs::write(
        pol.join("org/base.cedar"),
        "permit(principal, action, resource);",
    )
    .unwrap();
    std::fs::write(pol.join("members.toml"), "[teams]\n").unwrap();
    let out = dir.path().join("exp");
    let o = ExportOptions {
        selection: Selection::Session { id: "s".into() },
        payloads: true,
        policies: vec![PolicyInput {
            dir: pol,
            bundle_digest: Some("sha256:abc".into()),
        }],
        exporter: actor(),
        allow_open_session: false,
        tar: false,
    };
    export(&log, key.as_ref(), &o, &out).unwrap();
    let r = verify(&Bundle::open(&out).unwrap(), &opts(&key)).unwrap();
    assert_eq!(r.policies.len(), 1);
    assert_eq!(r.policies[0].2.as_deref(), Some("sha256:abc"));
    // Alter a policy file and re-sign the manifest with the (log) key: the
    // signed predicate's digest no longer matches.
    std::fs::write(
        out.join("policies/0-finance/org/base.cedar"),
        "forbid(principal, action, resource);",
    )
    .unwrap();
    let env = Envelope::from_json(&std::fs::read(out.join(MANIFEST)).unwrap()).unwrap();
    let st = Statement::open(&env, &key.verifier(), PREDICATE_TYPE).unwrap();
    let subjects: Vec<Subject> = stele_audit::export::list_files(&out)
        .unwrap()
        .into_iter()
        .filter(|f| f != MANIFEST)
        .map(|f| Subject::sha256(f.clone(), &sha256(&std::fs::read(out.join(&f)).unwrap())))
        .collect();
    let env = Statement::new(subjects, PREDICATE_TYPE, st.predicate)
        .sign(key.as_ref())
        .unwrap();
    std::fs::write(out.join(MANIFEST), env.to_json().unwrap()).unwrap();
    let e = verify(&Bundle::open(&out).unwrap(), &opts(&key)).unwrap_err();
    assert_eq!(e.file, "policies/0-finance", "{e}");
    assert!(e.reason.contains("differs from the manifest"), "{e}");
    log.close().unwrap();
}
