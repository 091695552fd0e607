#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `stele keys` and `stele audit` as a user and a reviewer would run them.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Output;

use stele_tests::Stele;

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(s: &Stele, args: &[&str]) -> String {
    let o = s.run(args).unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "stele {args:?} failed: {err}");
    out
}

fn setup() -> (tempfile::TempDir, Stele) {
    let d = tempfile::tempdir().unwrap();
    let s = Stele::new(&d.path().join("state"));
    ok(&s, &["keys", "init", "--origin", "audit.test.invalid/cli"]);
    ok(&s, &["audit", "init"]);
    (d, s)
}

#[test]
fn keys_are_private_and_never_overwritten() {
    let (_d, s) = setup();
    let key = s.state.join("keys/log.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let o = s.run(&["keys", "init"]).unwrap();
    assert!(
        !o.status.success(),
        "a second init must not overwrite the key"
    );
    let vkey = ok(&s, &["keys", "show"]);
    assert!(vkey.starts_with("audit.test.invalid/cli+"), "{vkey}");
}

#[test]
fn reading_is_logged_and_the_log_verifies() {
    let (_d, s) = setup();
    ok(&s, &["audit", "show"]);
    let json = ok(&s, &["audit", "tail", "-n", "50", "--json"]);
    let kinds: Vec<String> = json
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        kinds.iter().filter(|k| *k == "audit.read").count() >= 2,
        "{kinds:?}"
    );
    assert!(
        json.contains(r#""principal":"alice""#),
        "the reader is named"
    );
    let out = ok(&s, &["audit", "verify"]);
    assert!(out.starts_with("OK:"), "{out}");
    let o = s.run(&["audit", "show", "--kind", "no.such.kind"]).unwrap();
    assert!(!o.status.success() && text(&o).1.contains("unknown kind"));
}

#[test]
fn tampering_exits_3_and_names_the_index() {
    let (_d, s) = setup();
    ok(&s, &["audit", "show"]);
    let db = s.state.join("audit.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("DROP TRIGGER entries_no_update;").unwrap();
    c.execute("UPDATE entries SET leaf = CAST(replace(CAST(leaf AS TEXT), 'alice', 'eve__') AS BLOB) WHERE seq = 3", [])
        .unwrap();
    drop(c);
    let o = s.run(&["audit", "verify"]).unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("index 3"), "{err}");
    // Writing to a tampered log is refused too.
    let o = s.run(&["audit", "show"]).unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).1.contains("integrity check failed"),
        "{}",
        text(&o).1
    );
}

#[test]
fn unreadable_log_exits_4_and_missing_key_is_named() {
    let (_d, s) = setup();
    std::fs::write(s.state.join("audit.db"), b"garbage".repeat(1000)).unwrap();
    let _ = std::fs::remove_file(s.state.join("audit.db-wal"));
    let o = s.run(&["audit", "verify"]).unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", text(&o).1);
    let missing = s.state.join("nope.key");
    let o = s
        .run(&["audit", "show", "--key", missing.to_str().unwrap()])
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).1.contains("nope.key"), "{}", text(&o).1);
}

#[test]
fn truncation_is_caught_against_a_kept_checkpoint() {
    let (d, s) = setup();
    ok(&s, &["audit", "show"]);
    let anchor = d.path().join("anchor.txt");
    std::fs::write(&anchor, ok(&s, &["audit", "checkpoint"])).unwrap();
    let db = s.state.join("audit.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "DROP TRIGGER entries_no_delete; DROP TRIGGER checkpoints_no_delete;
         DELETE FROM entries WHERE seq >= 4; DELETE FROM checkpoints WHERE size > 4;",
    )
    .unwrap();
    drop(c);
    let o = s
        .run(&["audit", "verify", "--checkpoint", anchor.to_str().unwrap()])
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o).1);
    assert!(text(&o).1.contains("truncated"), "{}", text(&o).1);
}

#[test]
fn proofs_round_trip_and_tampered_proofs_fail() {
    let (d, s) = setup();
    let proof = ok(&s, &["audit", "proof", "1"]);
    let vkey = ok(&s, &["keys", "show"]);
    let f = d.path().join("p.tlog-proof");
    std::fs::write(&f, &proof).unwrap();
    let out = ok(
        &s,
        &[
            "audit",
            "verify-proof",
            f.to_str().unwrap(),
            "--vkey",
            vkey.trim(),
        ],
    );
    assert!(out.starts_with("OK: entry 1"), "{out}");
    std::fs::write(&f, proof.replacen("index 1", "index 0", 1)).unwrap();
    let o = s
        .run(&[
            "audit",
            "verify-proof",
            f.to_str().unwrap(),
            "--vkey",
            vkey.trim(),
        ])
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
}
