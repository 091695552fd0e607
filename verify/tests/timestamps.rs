#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! RFC 3161 timestamps on checkpoints against a real TSA (`openssl ts
//! -reply` behind a small HTTP front-end, tests/tsa): tokens are fetched,
//! checked and stored by the log, carried in exports and checked again by
//! stele-verify — and refused when they stamp another checkpoint, come
//! from another TSA, were altered, or carry a time far from the
//! checkpoint's.

mod tsa;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stele_attest::timestamp::TsaTrust;
use stele_attest::{Ed25519Signer, Signer};
use stele_audit::clock::{ClockHandle, ClockSource, ClockState, SystemClock};
use stele_audit::export::layout::Selection;
use stele_audit::export::write::{export, ExportOptions};
use stele_audit::tsa::{stamp_latest, TsaError, TsaTarget};
use stele_audit::{Actor, AuditLog, Event, EventKind, LogOptions};
use stele_verify::{verify, Bundle, Options};
use tsa::{KeyKind, Tsa};

fn actor() -> Actor {
    Actor {
        host: "h".into(),
        principal: "carol".into(),
        runtime: "stele/test".into(),
        teams: vec![],
    }
}

/// The machine's clock moved by an offset (the log's entries carry it).
struct Shifted {
    real: SystemClock,
    offset_ns: Mutex<i128>,
}

impl ClockSource for Shifted {
    fn wall_ns(&self) -> i128 {
        self.real.wall_ns() + *self.offset_ns.lock().unwrap()
    }
    fn mono_ns(&self) -> u64 {
        self.real.mono_ns()
    }
    fn state(&self) -> ClockState {
        self.real.state()
    }
}

struct Log {
    dir: tempfile::TempDir,
    db: std::path::PathBuf,
    key: Arc<Ed25519Signer>,
    log: AuditLog,
}

fn new_log(offset_s: i64) -> Log {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let key = Arc::new(Ed25519Signer::from_seed("audit.test.invalid/tsa", &[4; 32]).unwrap());
    let clock = Arc::new(Shifted {
        real: SystemClock::new(),
        offset_ns: Mutex::new(i128::from(offset_s) * 1_000_000_000),
    });
    let log = AuditLog::create(
        &db,
        key.clone(),
        LogOptions {
            heartbeat: None,
            clock: ClockHandle(clock),
            ..LogOptions::default()
        },
    )
    .unwrap();
    Log { dir, db, key, log }
}

fn session(l: &Log, id: &str) {
    for k in [
        EventKind::SessionStart,
        EventKind::PolicyDecision,
        EventKind::SessionEnd,
    ] {
        l.log
            .append_blocking(Event::new(k, actor()).in_session(id))
            .unwrap();
    }
}

fn target(url: &str, trust_pem: &str) -> TsaTarget {
    TsaTarget {
        url: url.to_string(),
        trust: TsaTrust::from_pem(trust_pem).unwrap(),
        timeout: Duration::from_secs(20),
    }
}

fn export_all(l: &Log, name: &str) -> std::path::PathBuf {
    let out = l.dir.path().join(name);
    let o = ExportOptions {
        selection: Selection::All,
        payloads: true,
        policies: vec![],
        exporter: actor(),
        allow_open_session: false,
        tar: false,
    };
    export(&l.log, l.key.as_ref(), &o, &out).unwrap();
    out
}

fn opts(l: &Log, trust: Option<&str>) -> Options {
    Options {
        log_key: l.key.verifier(),
        export_key: None,
        witnesses: vec![],
        quorum: None,
        anchors: vec![],
        now: 4_000_000_000,
        tsa: trust.map(|p| TsaTrust::from_pem(p).unwrap()),
        more_keys: vec![],
        revoked: vec![],
    }
}

fn verify_err(bundle: &std::path::Path, o: &Options) -> stele_verify::Failure {
    match verify(&Bundle::open(bundle).unwrap(), o) {
        Ok(r) => panic!("verified although it must not: {:?}", r.timestamps),
        Err(f) => f,
    }
}

fn stored_count(db: &std::path::Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("SELECT count(*) FROM timestamps", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn tokens_from_a_real_tsa_travel_in_the_export_and_verify_for_rsa_and_ecdsa() {
    for kind in [KeyKind::P256, KeyKind::Rsa2048] {
        let t = Tsa::start("Acme", kind);
        let l = new_log(0);
        session(&l, "s-1");
        let stamped = stamp_latest(&l.db, &l.key.verifier(), &target(&t.url, &t.ca_pem)).unwrap();
        eprintln!(
            "TSA round trip ({kind:?}): {:.1} ms",
            stamped.round_trip.as_secs_f64() * 1000.0
        );
        assert!(
            stamped.stamp.tsa.contains("Acme TSA"),
            "{:?}",
            stamped.stamp
        );
        session(&l, "s-2");
        let out = export_all(&l, "exp");
        assert!(out
            .join(format!("timestamps/{}.tsr", stamped.size))
            .is_file());
        // Trusting the CA, or the TSA's own certificate.
        for trust in [t.ca_pem.clone(), t.tsa_pem()] {
            let r = verify(&Bundle::open(&out).unwrap(), &opts(&l, Some(&trust))).unwrap();
            assert_eq!(r.timestamps.len(), 1, "{kind:?}");
            let line = &r.timestamps[0];
            assert!(line.checked);
            assert_eq!(line.size, stamped.size);
            assert_eq!(
                line.gen_time.as_deref(),
                Some(stamped.stamp.gen_time.as_str())
            );
        }
        // A time-range export's report has the period section, with the
        // token checked by this verification and the clock's states.
        let all = l.dir.path().join("exp-period");
        let o = ExportOptions {
            selection: Selection::Time {
                since: "2000-01-01T00:00:00.000000Z".into(),
                until: "2999-01-01T00:00:00.000000Z".into(),
            },
            payloads: true,
            policies: vec![],
            exporter: actor(),
            allow_open_session: false,
            tar: false,
        };
        export(&l.log, l.key.as_ref(), &o, &all).unwrap();
        let r = verify(&Bundle::open(&all).unwrap(), &opts(&l, Some(&t.ca_pem))).unwrap();
        let p = r.account.period.as_ref().expect("a period section");
        assert_eq!(p.timestamps.len(), 1, "{p:?}");
        assert!(p.timestamps[0].checked);
        assert!(
            p.clock_states.iter().any(|c| c.reason == "log.open"),
            "{p:?}"
        );
        assert_eq!(
            p.clock_states
                .iter()
                .filter(|c| c.reason == "session.start")
                .count(),
            2
        );
        assert!(p.logging.iter().any(|e| e.kind == "log.genesis"));
        // Without a TSA certificate: listed, said to be unchecked.
        let r = verify(&Bundle::open(&out).unwrap(), &opts(&l, None)).unwrap();
        assert!(!r.timestamps[0].checked);
        assert!(r.to_string().contains("NOT checked"), "{r}");
        // The command line.
        let cli = std::process::Command::new(env!("CARGO_BIN_EXE_stele-verify"))
            .arg(&out)
            .args(["--key", &l.key.verifier().to_string(), "--tsa-cert"])
            .arg(&t.ca_path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&cli.stdout);
        assert!(
            cli.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&cli.stderr)
        );
        assert!(text.contains("RFC 3161, verified"), "{text}");
    }
}

#[test]
fn a_session_bundle_carries_the_token_and_its_checks() {
    let t = Tsa::start("Acme", KeyKind::P256);
    let other = Tsa::start("Other", KeyKind::P256);
    let l = new_log(0);
    session(&l, "s-1");
    let s = stamp_latest(&l.db, &l.key.verifier(), &target(&t.url, &t.ca_pem)).unwrap();
    session(&l, "s-2");
    let out = l.dir.path().join("exp-session");
    let o = ExportOptions {
        selection: Selection::Session { id: "s-2".into() },
        payloads: true,
        policies: vec![],
        exporter: actor(),
        allow_open_session: false,
        tar: false,
    };
    export(&l.log, l.key.as_ref(), &o, &out).unwrap();
    assert!(out.join(format!("timestamps/{}.tsr", s.size)).is_file());
    let r = verify(&Bundle::open(&out).unwrap(), &opts(&l, Some(&t.ca_pem))).unwrap();
    assert_eq!(r.timestamps.len(), 1);
    assert!(r.timestamps[0].checked);
    let f = verify_err(&out, &opts(&l, Some(&other.ca_pem)));
    assert!(f.reason.contains("not signed by a trusted TSA"), "{f}");
}

#[test]
fn a_token_from_another_tsa_is_refused_when_stamping_and_when_verifying() {
    let ours = Tsa::start("Ours", KeyKind::P256);
    let other = Tsa::start("Other", KeyKind::P256);
    let l = new_log(0);
    session(&l, "s-1");
    // Asking the other TSA while trusting ours: refused, nothing stored.
    let e = stamp_latest(&l.db, &l.key.verifier(), &target(&other.url, &ours.ca_pem)).unwrap_err();
    assert!(matches!(e, TsaError::Token { .. }), "{e}");
    assert!(e.to_string().contains("not signed by a trusted TSA"), "{e}");
    assert_eq!(stored_count(&l.db), 0);
    // Stored under the other TSA's trust, then verified with ours: refused.
    stamp_latest(&l.db, &l.key.verifier(), &target(&other.url, &other.ca_pem)).unwrap();
    let out = export_all(&l, "exp");
    let f = verify_err(&out, &opts(&l, Some(&ours.ca_pem)));
    assert!(f.reason.contains("not signed by a trusted TSA"), "{f}");
    assert!(f.file.starts_with("timestamps/"), "{f}");
    // A CA certificate is not a TSA certificate: a token signed with the
    // CA's key directly would lack the time-stamping purpose; a TSA
    // certificate that another CA issued is not chained either.
    let f = verify_err(&out, &opts(&l, Some(&ours.tsa_pem())));
    assert!(f.reason.contains("not signed by a trusted TSA"), "{f}");
}

#[test]
fn a_token_for_another_checkpoint_is_refused() {
    let t = Tsa::start("Acme", KeyKind::P256);
    let l = new_log(0);
    session(&l, "s-1");
    let first = stamp_latest(&l.db, &l.key.verifier(), &target(&t.url, &t.ca_pem)).unwrap();
    session(&l, "s-2");
    let second = stamp_latest(&l.db, &l.key.verifier(), &target(&t.url, &t.ca_pem)).unwrap();
    assert!(second.size > first.size);
    // A TSA that answers with an old token (for another hash): refused.
    t.replay.store(true, Ordering::SeqCst);
    session(&l, "s-3");
    let e = stamp_latest(&l.db, &l.key.verifier(), &target(&t.url, &t.ca_pem)).unwrap_err();
    assert!(
        e.to_string().contains("not the checkpoint's SHA-256"),
        "{e}"
    );
    assert_eq!(stored_count(&l.db), 2);
    // The first token put in the place of the second in the database.
    let c = rusqlite::Connection::open(&l.db).unwrap();
    c.execute(
        "UPDATE timestamps SET token = (SELECT token FROM timestamps WHERE size = ?1) WHERE size = ?2",
        [first.size as i64, second.size as i64],
    )
    .unwrap();
    drop(c);
    let out = export_all(&l, "exp");
    let f = verify_err(&out, &opts(&l, Some(&t.ca_pem)));
    assert_eq!(f.file, format!("timestamps/{}.tsr", second.size), "{f}");
    assert!(f.reason.contains("not the checkpoint's SHA-256"), "{f}");
    // Without a TSA certificate the imprint is still checked.
    let f = verify_err(&out, &opts(&l, None));
    assert!(f.reason.contains("not the checkpoint's SHA-256"), "{f}");
}

/// Flip one byte of the stored token at `size` where `at` finds it.
fn alter_stored(db: &std::path::Path, size: u64, at: impl Fn(&[u8]) -> usize) {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut tok: Vec<u8> = c
        .query_row(
            "SELECT token FROM timestamps WHERE size = ?1",
            [size as i64],
            |r| r.get(0),
        )
        .unwrap();
    let i = at(&tok);
    tok[i] ^= 0x01;
    c.execute(
        "UPDATE timestamps SET token = ?1 WHERE size = ?2",
        rusqlite::params![tok, size as i64],
    )
    .unwrap();
}

/// Where the TSTInfo's genTime digits are (GeneralizedTime, 15 bytes).
fn gen_time_at(tok: &[u8]) -> usize {
    tok.windows(17)
        .position(|w| w[0] == 0x18 && w[1] == 15 && w[16] == b'Z')
        .expect("a GeneralizedTime in the token")
        + 2
        + 11
}

#[test]
fn an_altered_token_is_refused_in_the_bundle_and_when_the_exporter_signed_it() {
    let t = Tsa::start("Acme", KeyKind::Rsa2048);
    let l = new_log(0);
    session(&l, "s-1");
    let s = stamp_latest(&l.db, &l.key.verifier(), &target(&t.url, &t.ca_pem)).unwrap();
    session(&l, "s-2");
    // A byte of the bundle's token file: the signed manifest says otherwise.
    let out = export_all(&l, "exp");
    let file = out.join(format!("timestamps/{}.tsr", s.size));
    let mut b = std::fs::read(&file).unwrap();
    let n = b.len() - 1;
    b[n] ^= 0x01;
    std::fs::write(&file, &b).unwrap();
    let f = verify_err(&out, &opts(&l, Some(&t.ca_pem)));
    assert!(f.file.starts_with("timestamps/"), "{f}");
    // Altered before the export (the exporter signs what it holds): the
    // signature, then the stamped time.
    alter_stored(&l.db, s.size, |tok| tok.len() - 1);
    let out = export_all(&l, "exp-sig");
    let f = verify_err(&out, &opts(&l, Some(&t.ca_pem)));
    assert!(f.reason.contains("signature does not verify"), "{f}");
    alter_stored(&l.db, s.size, |tok| tok.len() - 1);
    alter_stored(&l.db, s.size, gen_time_at);
    let out = export_all(&l, "exp-time");
    let f = verify_err(&out, &opts(&l, Some(&t.ca_pem)));
    assert!(f.reason.contains("not the digest of the TSTInfo"), "{f}");
}

#[test]
fn a_token_whose_time_is_far_from_the_checkpoints_is_refused() {
    let t = Tsa::start("Acme", KeyKind::P256);
    // The log's clock two days behind the TSA's, then an hour ahead.
    for (offset_s, says) in [
        (-2 * 86_400, "after the newest entry"),
        (3_600, "before the newest entry"),
    ] {
        let l = new_log(offset_s);
        session(&l, "s-1");
        stamp_latest(&l.db, &l.key.verifier(), &target(&t.url, &t.ca_pem)).unwrap();
        session(&l, "s-2");
        let out = export_all(&l, "exp");
        let f = verify_err(&out, &opts(&l, Some(&t.ca_pem)));
        assert!(f.reason.contains(says), "{offset_s}: {f}");
    }
    // Within the tolerance (a minute behind): verifies.
    let l = new_log(-60);
    session(&l, "s-1");
    stamp_latest(&l.db, &l.key.verifier(), &target(&t.url, &t.ca_pem)).unwrap();
    let out = export_all(&l, "exp");
    verify(&Bundle::open(&out).unwrap(), &opts(&l, Some(&t.ca_pem))).unwrap();
}
