#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Every kind of damage to an export is rejected with a message naming the
//! file (and entry) concerned — including damage by someone holding the
//! export key who re-signs the manifest, which the log key still catches.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stele_attest::dsse::Envelope;
use stele_attest::intoto::{Statement, Subject};
use stele_attest::{Checkpoint, Ed25519Signer, NoteVerifier, Signer};
use stele_audit::export::layout::{sha256, Selection, MANIFEST, PREDICATE_TYPE};
use stele_audit::export::write::{export, ExportOptions};
use stele_audit::{Actor, AuditLog, Disclosure, Event, EventKind, LogOptions, PayloadInput};
use stele_verify::{verify, Bundle, Failure, Options, Report};

const ORIGIN: &str = "audit.test.invalid/log";

struct Setup {
    dir: tempfile::TempDir,
    log_key: Arc<Ed25519Signer>,
    export_key: Ed25519Signer,
}

fn actor() -> Actor {
    Actor {
        host: "h".into(),
        principal: "alice".into(),
        runtime: "stele/test".into(),
        teams: vec![],
    }
}

fn session(log: &AuditLog, id: &str, end: bool) {
    log.append_blocking(Event::new(EventKind::SessionStart, actor()).in_session(id))
        .unwrap();
    for i in 0..3 {
        let body = format!("prompt {i} of {id}").into_bytes();
        log.append_blocking(
            Event::new(EventKind::PolicyDecision, actor())
                .in_session(id)
                .with_payload(PayloadInput {
                    role: "args".into(),
                    media: "text/plain".into(),
                    body,
                    disclosure: Disclosure::CommitmentOnly,
                }),
        )
        .unwrap();
    }
    if end {
        log.append_blocking(Event::new(EventKind::SessionEnd, actor()).in_session(id))
            .unwrap();
    }
}

impl Setup {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            log_key: Arc::new(Ed25519Signer::from_seed(ORIGIN, &[7; 32]).unwrap()),
            export_key: Ed25519Signer::from_seed("export.test.invalid", &[8; 32]).unwrap(),
        }
    }
    fn log(&self) -> AuditLog {
        let opts = LogOptions {
            heartbeat: None,
            ..LogOptions::default()
        };
        AuditLog::open_or_create(
            &self.dir.path().join("audit.db"),
            self.log_key.clone(),
            opts,
        )
        .unwrap()
    }
    fn export(&self, log: &AuditLog, sel: Selection, name: &str, open: bool, tar: bool) -> PathBuf {
        let out = self.dir.path().join(name);
        let o = ExportOptions {
            selection: sel,
            payloads: true,
            policies: vec![],
            exporter: actor(),
            allow_open_session: open,
            tar,
        };
        export(log, &self.export_key, &o, &out).unwrap();
        out
    }
    fn opts(&self) -> Options {
        Options {
            log_key: self.log_key.verifier(),
            more_keys: Vec::new(),
            revoked: Vec::new(),
            export_key: Some(self.export_key.verifier()),
            witnesses: vec![],
            quorum: None,
            anchors: vec![],
            now: 4_000_000_000,
            tsa: None,
        }
    }
}

fn check(path: &Path, o: &Options) -> Result<Report, Failure> {
    verify(&Bundle::open(path)?, o)
}

fn copy_dir(from: &Path, to: &Path) {
    for f in stele_audit::export::list_files(from).unwrap() {
        let d = to.join(&f);
        std::fs::create_dir_all(d.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&f), d).unwrap();
    }
}

/// What an attacker holding only the export key can do: re-sign the manifest over altered files.
fn resign(dir: &Path, key: &Ed25519Signer, log_key: &NoteVerifier) {
    let env = Envelope::from_json(&std::fs::read(dir.join(MANIFEST)).unwrap()).unwrap();
    let st = Statement::open(&env, &key.verifier(), PREDICATE_TYPE).unwrap();
    let _ = log_key;
    let subjects: Vec<Subject> = stele_audit::export::list_files(dir)
        .unwrap()
        .into_iter()
        .filter(|f| f != MANIFEST)
        .map(|f| Subject::sha256(f.clone(), &sha256(&std::fs::read(dir.join(&f)).unwrap())))
        .collect();
    let env = Statement::new(subjects, PREDICATE_TYPE, st.predicate)
        .sign(key)
        .unwrap();
    std::fs::write(dir.join(MANIFEST), env.to_json().unwrap() + "\n").unwrap();
}

#[test]
fn every_damage_is_rejected_precisely() {
    let s = Setup::new();
    let log = s.log();
    // Enough entries for several entry bundles and a level-1 hash tile.
    for i in 0..110 {
        session(&log, &format!("bulk-{i}"), true);
    }
    // A time range (session exports hold no tiles: tests/session_bundle.rs).
    std::thread::sleep(std::time::Duration::from_millis(2));
    let since = stele_audit::leaf::now_ts();
    session(&log, "s-1", true);
    std::thread::sleep(std::time::Duration::from_millis(2));
    let until = stele_audit::leaf::now_ts();
    let out = s.export(&log, Selection::Time { since, until }, "exp", false, false);
    let o = s.opts();
    let r = check(&out, &o).unwrap();
    assert_eq!(r.proofs, 5);
    assert_eq!(r.payloads_verified, 3);
    assert!(r.entries > 512);

    let files = stele_audit::export::list_files(&out).unwrap();
    assert!(files.iter().any(|f| f.starts_with("tile/1/")));
    // A byte flipped in any file, at the start, middle and end.
    for f in &files {
        let len = std::fs::metadata(out.join(f)).unwrap().len() as usize;
        for at in [0, len / 2, len.saturating_sub(1)] {
            let t = s.dir.path().join("t");
            let _ = std::fs::remove_dir_all(&t);
            copy_dir(&out, &t);
            let mut b = std::fs::read(t.join(f)).unwrap();
            b[at] ^= 0x20;
            std::fs::write(t.join(f), &b).unwrap();
            let e = check(&t, &o).expect_err(&format!("flip in {f} at {at} accepted"));
            if f == MANIFEST {
                assert_eq!(e.file, MANIFEST, "{e}");
            } else {
                assert_eq!(&e.file, f, "{e}");
                assert!(e.reason.contains("SHA-256 differs"), "{e}");
            }
        }
    }
    // Any file deleted.
    for f in &files {
        let t = s.dir.path().join("t");
        let _ = std::fs::remove_dir_all(&t);
        copy_dir(&out, &t);
        std::fs::remove_file(t.join(f)).unwrap();
        let e = check(&t, &o).expect_err(&format!("deletion of {f} accepted"));
        assert_eq!(&e.file, f, "{e}");
    }
    // A file added (an extra tile, an extra payload).
    for extra in ["tile/entries/999", "payloads/00", "notes.txt"] {
        let t = s.dir.path().join("t");
        let _ = std::fs::remove_dir_all(&t);
        copy_dir(&out, &t);
        std::fs::create_dir_all(t.join(extra).parent().unwrap()).unwrap();
        std::fs::write(t.join(extra), b"x").unwrap();
        let e = check(&t, &o).unwrap_err();
        assert_eq!(e.file, extra, "{e}");
        assert!(e.reason.contains("not listed"), "{e}");
    }
    // Entry bundles reordered, with the manifest re-signed by the export key:
    // the leaves catch it.
    let t = s.dir.path().join("t");
    let _ = std::fs::remove_dir_all(&t);
    copy_dir(&out, &t);
    let (a, b) = (t.join("tile/entries/000"), t.join("tile/entries/001"));
    let (ba, bb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    std::fs::write(&a, bb).unwrap();
    std::fs::write(&b, ba).unwrap();
    resign(&t, &s.export_key, &o.log_key);
    let e = check(&t, &o).unwrap_err();
    assert_eq!(
        (e.file.as_str(), e.index),
        ("tile/entries/000", Some(0)),
        "{e}"
    );
    // A hash tile altered and re-signed: the recomputed tile differs.
    let _ = std::fs::remove_dir_all(&t);
    copy_dir(&out, &t);
    let mut h = std::fs::read(t.join("tile/0/000")).unwrap();
    h[40] ^= 1;
    std::fs::write(t.join("tile/0/000"), h).unwrap();
    resign(&t, &s.export_key, &o.log_key);
    let e = check(&t, &o).unwrap_err();
    assert_eq!(e.file, "tile/0/000", "{e}");
    assert!(e.reason.contains("hash tile differs"), "{e}");
    // A leaf edited (canonically) and re-signed: the chain and root catch it.
    let _ = std::fs::remove_dir_all(&t);
    copy_dir(&out, &t);
    let mut bundle = std::fs::read(t.join("tile/entries/000")).unwrap();
    let pat = b"\"principal\":\"alice\"";
    for i in 0..bundle.len() - pat.len() {
        if &bundle[i..i + pat.len()] == pat {
            bundle[i + pat.len() - 2] = b'f'; // same length, still canonical
        }
    }
    std::fs::write(t.join("tile/entries/000"), &bundle).unwrap();
    resign(&t, &s.export_key, &o.log_key);
    let e = check(&t, &o).unwrap_err();
    assert_eq!(
        (e.file.as_str(), e.index),
        ("tile/entries/000", Some(2)),
        "{e}"
    );
    assert!(e.reason.contains("hash chain broken"), "{e}");
    // A checkpoint from another key (same origin), re-signed manifest.
    let _ = std::fs::remove_dir_all(&t);
    copy_dir(&out, &t);
    let other = Ed25519Signer::from_seed(ORIGIN, &[9; 32]).unwrap();
    let note = std::fs::read_to_string(t.join("checkpoint")).unwrap();
    let body = stele_attest::SignedNote::parse(&note).unwrap().text;
    let forged = Checkpoint::parse_body(&body)
        .unwrap()
        .sign(&other)
        .unwrap()
        .to_text();
    std::fs::write(t.join("checkpoint"), forged).unwrap();
    resign(&t, &s.export_key, &o.log_key);
    let e = check(&t, &o).unwrap_err();
    assert_eq!(e.file, "checkpoint", "{e}");
    assert!(
        e.reason
            .contains("does not verify with the trusted log key"),
        "{e}"
    );
    // The manifest signed by a key the reviewer does not trust.
    let mut wrong = o.clone();
    wrong.export_key = Some(other.verifier());
    let e = check(&out, &wrong).unwrap_err();
    assert_eq!(e.file, MANIFEST, "{e}");
    // A checkpoint held by the reviewer that is newer than the export: truncation.
    session(&log, "later", true);
    let newer = log.store().unwrap().latest_checkpoint().unwrap().unwrap().1;
    let mut anchored = o.clone();
    anchored.anchors = vec![(newer, "held.ckpt".into())];
    let e = check(&out, &anchored).unwrap_err();
    assert!(e.reason.contains("truncated or rolled back"), "{e}");
    log.close().unwrap();
}

#[test]
fn tar_exports_verify_and_truncated_tar_is_rejected() {
    let s = Setup::new();
    let log = s.log();
    session(&log, "s-1", true);
    let tar = s.export(
        &log,
        Selection::Session { id: "s-1".into() },
        "exp.tar",
        false,
        true,
    );
    check(&tar, &s.opts()).unwrap();
    let b = std::fs::read(&tar).unwrap();
    let cut = s.dir.path().join("cut.tar");
    for len in [b.len() - 1024, b.len() / 2, 700] {
        std::fs::write(&cut, &b[..len]).unwrap();
        let e = check(&cut, &s.opts()).unwrap_err();
        assert!(
            e.reason.contains("truncated") || e.reason.contains("missing"),
            "{len}: {e}"
        );
    }
    log.close().unwrap();
}

#[test]
fn export_missing_a_sessions_last_entries_is_rejected() {
    let s = Setup::new();
    let log = s.log();
    session(&log, "s-open", false);
    // The exporter was told to export a session whose end is not in the log yet.
    let out = s.export(
        &log,
        Selection::Session {
            id: "s-open".into(),
        },
        "exp",
        true,
        false,
    );
    let e = check(&out, &s.opts()).unwrap_err();
    assert!(e.reason.contains("session s-open is incomplete"), "{e}");
    assert_eq!(e.index, Some(4));
    log.close().unwrap();
}

#[test]
fn redacted_payloads_verify_as_redacted() {
    let s = Setup::new();
    let log = s.log();
    session(&log, "s-1", true);
    let store = log.store().unwrap();
    let cmt = stele_audit::payload::commit_text(
        &store.payloads().unwrap()[0].cmt.clone().try_into().unwrap(),
    );
    log.redact_blocking(vec![cmt], "GDPR art. 17".into(), actor())
        .unwrap();
    let out = s.export(&log, Selection::All, "exp", false, false);
    let r = check(&out, &s.opts()).unwrap();
    assert_eq!((r.payloads_verified, r.payloads_redacted), (2, 1));
    assert_eq!(r.redactions.len(), 1);
    log.close().unwrap();
}

/// Leaves are hashed two at a time; an altered leaf is reported at its own
/// index whether it is the first or second of a pair, or the last one of
/// a partial bundle standing alone.
#[test]
fn an_altered_leaf_is_named_wherever_it_falls_in_a_pair() {
    let s = Setup::new();
    let log = s.log();
    for i in 0..61 {
        session(&log, &format!("bulk-{i}"), true);
    }
    let out = s.export(&log, Selection::All, "exp", false, false);
    let o = s.opts();
    let r = check(&out, &o).unwrap();
    let last = r.entries - 1;
    assert!(last > 257, "{last}");
    // An odd partial bundle: its last leaf is hashed alone.
    assert_eq!((last + 1) % 256 % 2, 1, "{last}");
    let files = stele_audit::export::list_files(&out).unwrap();
    for k in [1, 2, 256, 257, 258, last - 1, last] {
        let name = files
            .iter()
            .find(|f| {
                f.starts_with(&format!("tile/entries/{:03}", k / 256))
                    && (k / 256 < last / 256) != f.contains(".p/")
            })
            .unwrap()
            .clone();
        let t = s.dir.path().join("t");
        let _ = std::fs::remove_dir_all(&t);
        copy_dir(&out, &t);
        let mut bundle = std::fs::read(t.join(&name)).unwrap();
        // Change the last digit of `"seq":k`: same length, still canonical.
        let pat = format!("\"seq\":{k},");
        let at = bundle
            .windows(pat.len())
            .position(|w| w == pat.as_bytes())
            .unwrap()
            + pat.len()
            - 2;
        bundle[at] = b'0' + (bundle[at] - b'0' + 1) % 10;
        std::fs::write(t.join(&name), &bundle).unwrap();
        resign(&t, &s.export_key, &o.log_key);
        let e = check(&t, &o).unwrap_err();
        assert_eq!((e.file.as_str(), e.index), (name.as_str(), Some(k)), "{e}");
        assert!(e.reason.contains("claims index"), "{e}");
        // The next bundle also altered (digest no longer matches, though
        // read and hashed together with this one): this leaf still comes first.
        if k < 256 * (last / 256) {
            let next = format!("tile/entries/{:03}", k / 256 + 1);
            let next = files.iter().find(|f| f.starts_with(&next)).unwrap();
            let mut b = std::fs::read(t.join(next)).unwrap();
            b[10] ^= 1;
            std::fs::write(t.join(next), &b).unwrap();
            let e = check(&t, &o).unwrap_err();
            assert_eq!((e.file.as_str(), e.index), (name.as_str(), Some(k)), "{e}");
        }
    }
    log.close().unwrap();
}
