#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Key rotation and revocation, end to end through a real log, real
//! exports and the offline verifier: each checkpoint is checked against
//! the key of its size, the schedule must match the log's rotation
//! entries, and a revoked key's checkpoints are refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stele_attest::{Checkpoint, Ed25519Signer, Signer};
use stele_audit::export::layout::{Selection, CHECKPOINTS_DIR};
use stele_audit::export::write::{export, ExportOptions};
use stele_audit::keys::Revocation;
use stele_audit::verify::verify_db;
use stele_audit::{Actor, AuditError, AuditLog, Event, EventKind, LogOptions};
use stele_verify::{verify, Bundle, Options};

const ORIGIN: &str = "audit.test.invalid/rot";

fn actor() -> Actor {
    Actor {
        host: "h".into(),
        principal: "carol".into(),
        runtime: "stele/test".into(),
        teams: vec![],
    }
}

fn key(seed: u8) -> Arc<Ed25519Signer> {
    Arc::new(Ed25519Signer::from_seed(ORIGIN, &[seed; 32]).unwrap())
}

fn lopts() -> LogOptions {
    LogOptions {
        heartbeat: None,
        ..LogOptions::default()
    }
}

fn session(log: &AuditLog, id: &str, n: usize) {
    log.append_blocking(Event::new(EventKind::SessionStart, actor()).in_session(id))
        .unwrap();
    for _ in 0..n {
        log.append_blocking(Event::new(EventKind::PolicyDecision, actor()).in_session(id))
            .unwrap();
    }
}

fn end(log: &AuditLog, id: &str) {
    log.append_blocking(Event::new(EventKind::SessionEnd, actor()).in_session(id))
        .unwrap();
}

fn opts(trusted: &[&Ed25519Signer]) -> Options {
    Options {
        log_key: trusted[0].verifier(),
        more_keys: trusted[1..].iter().map(|k| k.verifier()).collect(),
        revoked: Vec::new(),
        export_key: None,
        witnesses: vec![],
        quorum: None,
        anchors: vec![],
        now: 4_000_000_000,
        tsa: None,
    }
}

fn export_to(log: &AuditLog, signer: &dyn Signer, sel: Selection, out: &Path) -> PathBuf {
    let o = ExportOptions {
        selection: sel,
        payloads: true,
        policies: vec![],
        exporter: actor(),
        allow_open_session: false,
        tar: false,
    };
    export(log, signer, &o, out).unwrap();
    out.to_path_buf()
}

/// A log with genesis key 1, rotated to 2 in the middle of session "s"
/// (which ends after the rotation), then closed and reopened with key 2.
/// Returns the log (open) and the rotation's boundary size.
fn rotated(dir: &Path) -> (AuditLog, u64) {
    let db = dir.join("audit.db");
    let log = AuditLog::create(&db, key(1), lopts()).unwrap();
    session(&log, "s", 3);
    let r = log
        .rotate_blocking(key(2), "scheduled yearly rotation".into(), actor())
        .unwrap();
    session(&log, "t", 2);
    end(&log, "t");
    log.append_blocking(Event::new(EventKind::PolicyDecision, actor()).in_session("s"))
        .unwrap();
    end(&log, "s");
    log.close().unwrap();
    // The old key no longer opens it, and says which key does.
    let e = AuditLog::open(&db, key(1), lopts()).unwrap_err();
    assert!(matches!(e, AuditError::WrongKey { .. }), "{e}");
    assert!(
        e.to_string().contains(&key(2).verifier().to_string()),
        "{e}"
    );
    let log = AuditLog::open(&db, key(2), lopts()).unwrap();
    (log, r.size)
}

#[test]
fn a_rotated_log_reopens_verifies_and_exports_under_either_key() {
    let dir = tempfile::tempdir().unwrap();
    let (log, boundary) = rotated(dir.path());
    // The boundary checkpoint carries both signatures.
    let note = log
        .store()
        .unwrap()
        .checkpoint_at(boundary)
        .unwrap()
        .unwrap();
    Checkpoint::open(&note, &key(1).verifier()).unwrap();
    Checkpoint::open(&note, &key(2).verifier()).unwrap();
    // The live log verifies with the old or the new key, not a stranger's.
    let db = dir.path().join("audit.db");
    let r = verify_db(&db, &key(1).verifier(), None).unwrap();
    assert_eq!(r.keys.len(), 2);
    assert_eq!(r.keys[0].until, Some(boundary));
    verify_db(&db, &key(2).verifier(), None).unwrap();
    assert!(verify_db(&db, &key(3).verifier(), None).is_err());

    let all = export_to(
        &log,
        key(2).as_ref(),
        Selection::All,
        &dir.path().join("all"),
    );
    let b = Bundle::open(&all).unwrap();
    for trusted in [key(1), key(2)] {
        let rep = verify(&b, &opts(&[&trusted])).unwrap();
        assert!(rep.entries > boundary);
    }
    assert!(verify(&b, &opts(&[&key(3)])).is_err());
    // A session export spanning the rotation.
    let s = export_to(
        &log,
        key(2).as_ref(),
        Selection::Session { id: "s".into() },
        &dir.path().join("s"),
    );
    let b = Bundle::open(&s).unwrap();
    verify(&b, &opts(&[&key(1)])).unwrap();
    verify(&b, &opts(&[&key(2)])).unwrap();
    log.close().unwrap();
}

#[test]
fn rotation_entries_cannot_be_appended_by_hand_nor_to_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::create(&dir.path().join("audit.db"), key(1), lopts()).unwrap();
    let forged = Event::new(EventKind::KeyRotation, actor()).with_data(serde_json::json!({
        "old": key(1).verifier().to_string(), "new": key(9).verifier().to_string(),
        "from_size": 2, "reason": "forged"
    }));
    assert!(log.append_blocking(forged).is_err());
    assert!(log.rotate_blocking(key(1), "same".into(), actor()).is_err());
    let other = Arc::new(Ed25519Signer::from_seed("other.invalid/log", &[4; 32]).unwrap());
    assert!(log
        .rotate_blocking(other, "wrong name".into(), actor())
        .is_err());
    assert!(log.rotate_blocking(key(2), " ".into(), actor()).is_err());
    // Revoking the current key is refused: rotate first.
    assert!(log
        .revoke_blocking(key(1).verifier().to_string(), 1, "x".into(), actor())
        .is_err());
    log.close().unwrap();
}

/// The export's manifest rewritten with `edit` applied to its predicate
/// and re-signed with `signer` (an exporter holding the current key).
fn resign(bundle: &Path, signer: &dyn Signer, edit: impl Fn(&mut serde_json::Value)) {
    use base64::Engine as _;
    let path = bundle.join("manifest.intoto.jsonl");
    let env: stele_attest::dsse::Envelope =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&env.payload)
        .unwrap();
    let mut st: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    edit(&mut st["predicate"]);
    let st: stele_attest::intoto::Statement = serde_json::from_value(st).unwrap();
    let env = st.sign(signer).unwrap();
    std::fs::write(&path, env.to_json().unwrap() + "\n").unwrap();
}

#[test]
fn wrong_ranges_wrong_keys_and_missing_links_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (log, boundary) = rotated(dir.path());
    let all = export_to(
        &log,
        key(2).as_ref(),
        Selection::All,
        &dir.path().join("all"),
    );
    let copy = |name: &str| {
        let to = dir.path().join(name);
        std::process::Command::new("cp")
            .args(["-r"])
            .arg(&all)
            .arg(&to)
            .status()
            .unwrap();
        to
    };
    let fails = |p: &Path, trusted: &[&Ed25519Signer]| {
        verify(&Bundle::open(p).unwrap(), &opts(trusted))
            .unwrap_err()
            .to_string()
    };
    // A gap and an overlap between the ranges.
    for (name, delta) in [("gap", 1i64), ("overlap", -1)] {
        let p = copy(name);
        resign(&p, key(2).as_ref(), |pr| {
            let f = pr["keys"][1]["from"].as_i64().unwrap();
            pr["keys"][1]["from"] = (f + delta).into();
        });
        let e = fails(&p, &[&key(2)]);
        assert!(e.contains(name), "{name}: {e}");
    }
    // Ranges that move the boundary (consistent, but not what the log's
    // rotation entry says): the checkpoint there is then checked against
    // the wrong key, or the schedule differs from the entries.
    let p = copy("moved");
    resign(&p, key(2).as_ref(), |pr| {
        pr["keys"][0]["until"] = (boundary + 1).into();
        pr["keys"][1]["from"] = (boundary + 1).into();
    });
    fails(&p, &[&key(2)]);
    // An export that hides the rotation (claims key 2 from size 0): the
    // earlier checkpoints are not signed by key 2.
    let p = copy("hidden");
    resign(&p, key(2).as_ref(), |pr| {
        pr.as_object_mut().unwrap().remove("keys");
    });
    fails(&p, &[&key(2)]);
    // The boundary checkpoint removed: nothing links key 1 to key 2.
    let p = copy("unlinked");
    let cp = format!("{CHECKPOINTS_DIR}{boundary}");
    std::fs::remove_file(p.join(&cp)).unwrap();
    resign(&p, key(2).as_ref(), |pr| {
        let sizes: Vec<u64> = pr["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_u64())
            .filter(|s| *s != boundary)
            .collect();
        pr["checkpoints"] = serde_json::json!(sizes);
    });
    let e = fails(&p, &[&key(1)]);
    assert!(e.contains(&cp) || e.contains("rotation"), "{e}");
    // The boundary checkpoint signed by the new key alone (the old key's
    // signature, the announcement's, stripped).
    let p = copy("one-signature");
    let text = std::fs::read_to_string(p.join(&cp)).unwrap();
    let (body, sigs) = text.split_once("\n\n").unwrap();
    let kept: Vec<&str> = sigs
        .lines()
        .filter(|l| {
            let b64 = l.rsplit(' ').next().unwrap();
            use base64::Engine as _;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            raw[..4] != key(1).key_id()
        })
        .collect();
    std::fs::write(p.join(&cp), format!("{body}\n\n{}\n", kept.join("\n"))).unwrap();
    let e = fails(&p, &[&key(1)]);
    assert!(e.contains(&cp), "{e}");
    log.close().unwrap();
}

#[test]
fn a_revoked_key_signs_nothing_from_its_revocation_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let log = AuditLog::create(&db, key(1), lopts()).unwrap();
    session(&log, "s", 4);
    end(&log, "s");
    // Key 1 leaked at size 3: rotate, then revoke it from there.
    let r = log
        .rotate_blocking(key(2), "key 1 compromised".into(), actor())
        .unwrap();
    log.revoke_blocking(
        key(1).verifier().to_string(),
        3,
        "leaked on a laptop".into(),
        actor(),
    )
    .unwrap();
    // Not its own key, not a stranger's, not from size 0.
    assert!(log
        .revoke_blocking(key(7).verifier().to_string(), 3, "x".into(), actor())
        .is_err());
    let all = export_to(
        &log,
        key(2).as_ref(),
        Selection::All,
        &dir.path().join("all"),
    );
    let b = Bundle::open(&all).unwrap();
    // Every key must now be given; with both, it verifies.
    let e = verify(&b, &opts(&[&key(2)])).unwrap_err().to_string();
    assert!(e.contains("every key"), "{e}");
    verify(&b, &opts(&[&key(2), &key(1)])).unwrap();

    // A forger who holds key 1 signs a checkpoint past the revocation,
    // inside key 1's old range (offered as a held checkpoint): refused.
    let forged = Checkpoint {
        origin: ORIGIN.into(),
        size: r.size - 2,
        root: [0; 32],
    }
    .sign(key(1).as_ref())
    .unwrap()
    .to_text();
    let mut o = opts(&[&key(2), &key(1)]);
    o.anchors.push((forged, "forged".into()));
    let e = verify(&b, &o).unwrap_err().to_string();
    assert!(e.contains("revoked"), "{e}");
    // The reviewer's own revocation works the same on an export of a log
    // that never recorded one.
    let dir2 = tempfile::tempdir().unwrap();
    let log2 = AuditLog::create(&dir2.path().join("audit.db"), key(1), lopts()).unwrap();
    session(&log2, "s", 2);
    end(&log2, "s");
    let plain = export_to(
        &log2,
        key(1).as_ref(),
        Selection::All,
        &dir2.path().join("e"),
    );
    let b2 = Bundle::open(&plain).unwrap();
    let mut o = opts(&[&key(1)]);
    o.revoked.push(Revocation {
        key: key(1).verifier().to_string(),
        from: 2,
    });
    let e = verify(&b2, &o).unwrap_err().to_string();
    assert!(e.contains("revoked"), "{e}");
    o.revoked[0].from = 1_000;
    verify(&b2, &o).unwrap();
    log2.close().unwrap();
    log.close().unwrap();
}
