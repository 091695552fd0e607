#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A session that moved between logs (export-format §8a): the target's
//! session bundle holds the source's bundle as `earlier/0.tar`, verified
//! with the source key the target recorded, and linked. A `continues`
//! that names the right file but the wrong checkpoint, last leaf or key
//! fails: the link is checked, not only the digest.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stele_attest::{Ed25519Signer, Signer};
use stele_audit::export::earlier::{
    bundle_digest, imported_bundle_path, Continues, SliceCheckpoint, SliceLast,
};
use stele_audit::export::layout::Selection;
use stele_audit::export::write::{export, ExportOptions};
use stele_audit::{Actor, AuditLog, Event, EventKind, LogOptions, Outcome, Status};
use stele_verify::{verify, Bundle, Failure, Options, Report};

const ID: &str = "s-moved";

fn actor() -> Actor {
    Actor {
        host: "h".into(),
        principal: "alice".into(),
        runtime: "stele/test".into(),
        teams: vec![],
    }
}

fn log(dir: &Path, key: &Arc<Ed25519Signer>) -> AuditLog {
    std::fs::create_dir_all(dir).unwrap();
    AuditLog::create(
        &dir.join("audit.db"),
        key.clone(),
        LogOptions {
            heartbeat: None,
            ..LogOptions::default()
        },
    )
    .unwrap()
}

fn session_export(log: &AuditLog, key: &Ed25519Signer, out: &Path, tar: bool) {
    let o = ExportOptions {
        selection: Selection::Session { id: ID.into() },
        payloads: true,
        policies: vec![],
        exporter: actor(),
        allow_open_session: false,
        tar,
    };
    export(log, key, &o, out).unwrap();
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

struct Source {
    _dir: tempfile::TempDir,
    key: Arc<Ed25519Signer>,
    file: PathBuf,
    right: Continues,
}

/// Log A: the session starts, works, and leaves; its bundle as a file.
fn source() -> Source {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(Ed25519Signer::from_seed("a.test.invalid/log", &[31; 32]).unwrap());
    let a = log(&dir.path().join("a"), &key);
    a.append_blocking(
        Event::new(EventKind::SessionStart, actor())
            .in_session(ID)
            .with_data(serde_json::json!({"workspace": "/w"})),
    )
    .unwrap();
    a.append_blocking(Event::new(EventKind::PolicyLoad, actor()).in_session(ID))
        .unwrap();
    let mut o = Outcome::status(Status::Interrupted);
    o.detail = Some("moved".into());
    a.append_blocking(
        Event::new(EventKind::SessionEnd, actor())
            .in_session(ID)
            .with_outcome(o)
            .with_data(serde_json::json!({"moved": {"out": "/x.tar"}})),
    )
    .unwrap();
    let file = dir.path().join("moved.tar");
    session_export(&a, &key, &file, true);
    a.close().unwrap();
    let right = continues_for(&file, &key);
    Source {
        _dir: dir,
        key,
        file,
        right,
    }
}

/// Log B: the session continues `c` (the file kept beside its database),
/// ends; its session bundle verified with B's key.
fn target(src: &Source, c: &Continues) -> Result<Report, Failure> {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(Ed25519Signer::from_seed("b.test.invalid/log", &[32; 32]).unwrap());
    let b = log(dir.path(), &key);
    let kept = imported_bundle_path(&dir.path().join("audit.db"), ID);
    std::fs::create_dir_all(kept.parent().unwrap()).unwrap();
    std::fs::copy(&src.file, &kept).unwrap();
    b.append_blocking(
        Event::new(EventKind::SessionStart, actor())
            .in_session(ID)
            .with_data(serde_json::json!({"workspace": "/w", "continues": c})),
    )
    .unwrap();
    b.append_blocking(
        Event::new(EventKind::SessionEnd, actor())
            .in_session(ID)
            .with_outcome(Outcome::status(Status::Ok)),
    )
    .unwrap();
    let out = dir.path().join("export");
    session_export(&b, &key, &out, false);
    assert!(out.join("earlier/0.tar").is_file());
    verify(&Bundle::open(&out)?, &opts(&key))
}

#[test]
fn a_moved_session_verifies_across_both_logs() {
    let src = source();
    let r = target(&src, &src.right).unwrap();
    assert_eq!(r.earlier.len(), 1);
    assert_eq!(r.earlier[0].origin, "a.test.invalid/log");
    assert_eq!(r.earlier[0].entries, 3);
    assert!(
        r.to_string().contains("moved from:   a.test.invalid/log"),
        "{r}"
    );
}

#[test]
fn a_wrong_link_fails_even_with_the_right_file() {
    let src = source();
    let mut c = src.right.clone();
    c.checkpoint.size += 1;
    let e = target(&src, &c).unwrap_err();
    assert!(
        e.reason.contains("broken link") && e.reason.contains("checkpoint"),
        "{e}"
    );
    let mut c = src.right.clone();
    c.checkpoint.root = src.right.last.hash.clone();
    let e = target(&src, &c).unwrap_err();
    assert!(e.reason.contains("broken link"), "{e}");
    let mut c = src.right.clone();
    c.last.seq -= 1;
    c.last.n -= 1;
    let e = target(&src, &c).unwrap_err();
    assert!(
        e.reason.contains("broken link") && e.reason.contains("ends at entry"),
        "{e}"
    );
    let mut c = src.right.clone();
    c.last.hash = src.right.checkpoint.root.clone();
    let e = target(&src, &c).unwrap_err();
    assert!(
        e.reason.contains("broken link") && e.reason.contains("last leaf"),
        "{e}"
    );
    let mut c = src.right.clone();
    c.origin = "elsewhere.test.invalid/log".into();
    let e = target(&src, &c).unwrap_err();
    assert!(e.reason.contains("broken link"), "{e}");
}

#[test]
fn an_earlier_slice_checked_with_another_key_fails_inside_it() {
    let src = source();
    let mut c = src.right.clone();
    let other = Ed25519Signer::from_seed("a.test.invalid/log", &[33; 32]).unwrap();
    c.vkey = other.verifier().to_string();
    let e = target(&src, &c).unwrap_err();
    assert!(e.file.starts_with("earlier/0.tar: "), "{e}");
    assert!(
        e.reason.contains("earlier slice (log a.test.invalid/log)"),
        "{e}"
    );
    let _ = &src.key;
}

/// The `continues` a log would record for the session bundle `file`
/// (verified with `key`).
fn continues_for(file: &Path, key: &Ed25519Signer) -> Continues {
    let bundle = Bundle::open(file).unwrap();
    verify(&bundle, &opts(key)).unwrap();
    let slice = stele_verify::slice::read_session(&bundle, &opts(key)).unwrap();
    let last = slice.leaves.last().unwrap();
    Continues {
        origin: slice.origin.clone(),
        vkey: key.verifier().to_string(),
        checkpoint: SliceCheckpoint {
            size: slice.tree_size,
            root: slice.root.clone(),
        },
        last: SliceLast {
            seq: last.seq,
            hash: stele_audit::leaf::hash_b64(&slice.last_hash),
            n: last.session.as_ref().unwrap().n,
        },
        bundle: bundle_digest(&std::fs::read(file).unwrap()),
        failover: None,
    }
}

#[test]
fn a_session_that_moved_twice_carries_both_slices_nested() {
    let src = source();
    // B: continues A's slice, then moves on itself.
    let bdir = tempfile::tempdir().unwrap();
    let bkey = Arc::new(Ed25519Signer::from_seed("b.test.invalid/log", &[32; 32]).unwrap());
    let b = log(bdir.path(), &bkey);
    let kept = imported_bundle_path(&bdir.path().join("audit.db"), ID);
    std::fs::create_dir_all(kept.parent().unwrap()).unwrap();
    std::fs::copy(&src.file, &kept).unwrap();
    b.append_blocking(
        Event::new(EventKind::SessionStart, actor())
            .in_session(ID)
            .with_data(serde_json::json!({"continues": src.right})),
    )
    .unwrap();
    b.append_blocking(
        Event::new(EventKind::SessionEnd, actor())
            .in_session(ID)
            .with_outcome(Outcome::status(Status::Interrupted))
            .with_data(serde_json::json!({"moved": {}})),
    )
    .unwrap();
    let bfile = bdir.path().join("moved-again.tar");
    session_export(&b, &bkey, &bfile, true);
    // C: continues B's slice, ends.
    let cdir = tempfile::tempdir().unwrap();
    let ckey = Arc::new(Ed25519Signer::from_seed("c.test.invalid/log", &[34; 32]).unwrap());
    let c = log(cdir.path(), &ckey);
    let kept = imported_bundle_path(&cdir.path().join("audit.db"), ID);
    std::fs::create_dir_all(kept.parent().unwrap()).unwrap();
    std::fs::copy(&bfile, &kept).unwrap();
    c.append_blocking(
        Event::new(EventKind::SessionStart, actor())
            .in_session(ID)
            .with_data(serde_json::json!({"continues": continues_for(&bfile, &bkey)})),
    )
    .unwrap();
    c.append_blocking(
        Event::new(EventKind::SessionEnd, actor())
            .in_session(ID)
            .with_outcome(Outcome::status(Status::Ok)),
    )
    .unwrap();
    let out = cdir.path().join("export.tar");
    session_export(&c, &ckey, &out, true);
    let r = verify(&Bundle::open(&out).unwrap(), &opts(&ckey)).unwrap();
    let origins: Vec<&str> = r.earlier.iter().map(|e| e.origin.as_str()).collect();
    assert_eq!(origins, ["b.test.invalid/log", "a.test.invalid/log"]);
}
