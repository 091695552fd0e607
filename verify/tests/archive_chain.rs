#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Archive bundles, verified by stele-verify on their own and joined to the
//! live log at its boundary: the procedure refuses a bundle stele-verify
//! rejects; a boundary with another root, another prev, another bundle
//! digest or another size fails the chain, and so does another log's
//! archive signed by the same key, or an archive bundle with one entry
//! changed.

use std::path::Path;
use std::sync::Arc;

use stele_attest::{Ed25519Signer, Signer};
use stele_audit::export::archive::{archive, ArchiveOptions};
use stele_audit::{Actor, AuditLog, Disclosure, Event, EventKind, LogOptions, PayloadInput, Store};
use stele_verify::chain::{verify_archive, Boundary};
use stele_verify::{Bundle, Options};

const ORIGIN: &str = "audit.test.invalid/log";

fn actor() -> Actor {
    Actor {
        host: "h".into(),
        principal: "alice".into(),
        runtime: "stele/test".into(),
        teams: vec![],
    }
}

fn key() -> Arc<Ed25519Signer> {
    Arc::new(Ed25519Signer::from_seed(ORIGIN, &[9u8; 32]).unwrap())
}

fn opts(k: &Ed25519Signer) -> Options {
    Options {
        log_key: k.verifier(),
        more_keys: vec![],
        revoked: vec![],
        export_key: None,
        witnesses: vec![],
        quorum: None,
        anchors: vec![],
        now: 0,
        tsa: None,
    }
}

fn session(log: &AuditLog, id: &str, n: usize) {
    log.append_blocking(Event::new(EventKind::SessionStart, actor()).in_session(id))
        .unwrap();
    for i in 0..n {
        log.append_blocking(
            Event::new(EventKind::PolicyDecision, actor())
                .in_session(id)
                .with_payload(PayloadInput {
                    role: "args".into(),
                    media: "text/plain".into(),
                    body: format!("{id} {i}").into_bytes(),
                    disclosure: Disclosure::CommitmentOnly,
                }),
        )
        .unwrap();
    }
    log.append_blocking(Event::new(EventKind::SessionEnd, actor()).in_session(id))
        .unwrap();
}

/// A log of `n` decisions archived into `dir/archive`, checked by
/// stele-verify before anything is removed; the live log's boundary.
fn archived(dir: &Path, n: usize) -> Boundary {
    let k = key();
    let db = dir.join("audit.db");
    let log = AuditLog::create(
        &db,
        k.clone(),
        LogOptions {
            heartbeat: None,
            ..Default::default()
        },
    )
    .unwrap();
    session(&log, "s1", n);
    let through = log.sync_blocking().unwrap().size;
    let o = ArchiveOptions {
        through,
        reason: "schedule".into(),
        actor: actor(),
        tar: false,
    };
    archive(
        &log,
        k.as_ref(),
        k.as_ref(),
        &o,
        &dir.join("archive"),
        &mut |p| {
            let b = Bundle::open(p).map_err(|e| e.to_string())?;
            stele_verify::verify(&b, &opts(&k))
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    )
    .unwrap();
    session(&log, "s2", 2);
    log.close().unwrap();
    stele_audit::verify::verify_db(&db, &k.verifier(), None).unwrap();
    let row = Store::open(&db).unwrap().archived().unwrap().unwrap();
    Boundary {
        size: row.size,
        root: row.root,
        prev: row.prev,
        bundle: row.bundle,
    }
}

#[test]
fn the_archive_and_the_live_log_verify_together() {
    // Sizes around tile edges: the last leaf is read from the right tile.
    for n in [3usize, 252, 253, 254, 300] {
        let d = tempfile::tempdir().unwrap();
        let b = archived(d.path(), n);
        let bundle = Bundle::open(&d.path().join("archive")).unwrap();
        let r = verify_archive(&bundle, &opts(&key()), &b).unwrap();
        assert_eq!(r.entries, b.size, "n={n}");
    }
}

#[test]
fn every_forged_boundary_fails_the_chain() {
    let d = tempfile::tempdir().unwrap();
    let b = archived(d.path(), 5);
    let bundle = Bundle::open(&d.path().join("archive")).unwrap();
    let mut cases = Vec::new();
    let mut x = b.clone();
    x.root[0] ^= 1;
    cases.push(("root", x, "root"));
    let mut x = b.clone();
    x.prev[0] ^= 1;
    cases.push(("prev", x, "last leaf hash"));
    let mut x = b.clone();
    x.bundle = format!("sha256:{}", "00".repeat(32));
    cases.push(("bundle", x, "manifest"));
    let mut x = b.clone();
    x.size -= 1;
    cases.push(("size", x, "entries"));
    for (what, forged, says) in cases {
        let e = verify_archive(&bundle, &opts(&key()), &forged).unwrap_err();
        assert!(e.to_string().contains(says), "{what}: {e}");
    }
    // Another log's archive, signed by the same key: not this boundary.
    let other = tempfile::tempdir().unwrap();
    archived(other.path(), 5);
    let theirs = Bundle::open(&other.path().join("archive")).unwrap();
    let e = verify_archive(&theirs, &opts(&key()), &b).unwrap_err();
    assert!(e.to_string().contains("archive chain"), "{e}");
}

#[test]
fn a_changed_archive_bundle_fails_on_its_own() {
    let d = tempfile::tempdir().unwrap();
    let b = archived(d.path(), 5);
    let tile = d.path().join("archive/tile/entries/000.p");
    let entries = std::fs::read_dir(&tile)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&entries).unwrap();
    let at = bytes.windows(5).position(|w| w == b"alice").unwrap();
    bytes[at] = b'm';
    std::fs::write(&entries, bytes).unwrap();
    let bundle = Bundle::open(&d.path().join("archive")).unwrap();
    let e = verify_archive(&bundle, &opts(&key()), &b).unwrap_err();
    assert!(e.to_string().contains("tile/entries"), "{e}");
}
