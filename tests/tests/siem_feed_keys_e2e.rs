#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The live feed follows the log's key schedule (docs/siem.md, "Verified
//! before delivered"; docs/keys.md): across `stele keys rotate` and
//! `stele keys revoke` it keeps delivering, while a checkpoint signed by the
//! wrong key for its size — the old key past the rotation, a stranger's,
//! a rotation checkpoint missing a signature, the revoked key — is refused
//! as a verification failure and stops the sink.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use serde_json::{json, Value};
use stele_attest::{Checkpoint, Ed25519Signer, SignedNote, Signer};
use stele_audit::{Actor, AuditLog, Event, EventKind, LogOptions, Store};
use stele_tests::siem::{wait_for, HttpReceiver, Received};
use stele_tests::{stele_bin, Stele};

const TOKEN: &str = "11111111-2222-3333-4444-555555555555";
const ORIGIN: &str = "feed-keys.stele.invalid/log";

struct Setup {
    dir: tempfile::TempDir,
    stele: Stele,
    db: PathBuf,
    old_key: PathBuf,
    new_key: PathBuf,
    config: PathBuf,
    hec: HttpReceiver,
}

fn ok(o: &std::process::Output) {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let stele = Stele::new(&dir.path().join("state"));
    ok(&stele.run(&["keys", "init", "--origin", ORIGIN]).unwrap());
    ok(&stele.run(&["audit", "init"]).unwrap());
    let new_key = dir.path().join("new.key");
    ok(&stele
        .run(&[
            "keys",
            "init",
            "--key",
            new_key.to_str().unwrap(),
            "--origin",
            ORIGIN,
        ])
        .unwrap());
    let token = dir.path().join("hec.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let hec = HttpReceiver::start(TOKEN, 0).unwrap();
    let config = dir.path().join("config.toml");
    let mut text = String::new();
    for name in ["splunk", "fresh"] {
        text.push_str(&format!(
            "[[feed]]\nname = \"{name}\"\nkind = \"hec\"\nendpoint = \"{}\"\npoll_ms = 50\ntoken_file = \"{}\"\n\n",
            hec.url(),
            token.display()
        ));
    }
    std::fs::write(&config, text).unwrap();
    let state = dir.path().join("state");
    Setup {
        db: state.join("audit.db"),
        old_key: state.join("keys/log.key"),
        new_key,
        config,
        stele,
        dir,
        hec,
    }
}

impl Setup {
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("STELE_CONFIG", self.config.display().to_string()),
            ("STELE_STATE_DIR", self.stele.state.display().to_string()),
            ("USER", "alice".into()),
        ]
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.stele.run_env(args, &env).unwrap()
    }

    fn spawn_feed(&self, key: &Path) -> Child {
        Command::new(stele_bin())
            .args(["audit", "feed", "run", "--sink", "splunk", "--key"])
            .arg(key)
            .envs(self.env())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn signer(&self, key: &Path) -> Arc<Ed25519Signer> {
        Arc::new(stele_attest::load_key_file(key).unwrap())
    }

    fn verifier(&self, key: &Path) -> String {
        self.signer(key).verifier().to_string()
    }

    /// Append `n` policy decisions signed by `key` (the log's current key).
    fn append(&self, key: &Path, n: u64) {
        let log = AuditLog::open(&self.db, self.signer(key), LogOptions::default()).unwrap();
        for i in 0..n {
            log.append_blocking(
                Event::new(EventKind::PolicyDecision, Actor::system()).with_data(json!({"n": i})),
            )
            .unwrap();
        }
        log.close().unwrap();
    }

    fn rotate(&self) -> u64 {
        let o = self.run(&[
            "keys",
            "rotate",
            "--key",
            self.old_key.to_str().unwrap(),
            "--to-key",
            self.new_key.to_str().unwrap(),
            "--reason",
            "scheduled rotation",
        ]);
        ok(&o);
        Store::open(&self.db)
            .unwrap()
            .key_schedule()
            .unwrap()
            .boundaries()
            .last()
            .unwrap()
    }

    fn revoke(&self, from: u64) {
        let old = self.verifier(&self.old_key);
        ok(&self.run(&[
            "keys",
            "revoke",
            &old,
            "--from-size",
            &from.to_string(),
            "--reason",
            "leaked",
            "--key",
            self.new_key.to_str().unwrap(),
        ]));
    }

    fn size(&self) -> u64 {
        Store::open(&self.db).unwrap().size().unwrap()
    }

    fn feed_until_caught_up(&self, sink: &str, key: &Path) -> std::process::Output {
        self.run(&[
            "audit",
            "feed",
            "run",
            "--until-caught-up",
            "--sink",
            sink,
            "--key",
            key.to_str().unwrap(),
        ])
    }

    /// Replace every stored checkpoint note of `size` (head and kept).
    fn replace_checkpoint(&self, size: u64, note: &str) {
        let c = rusqlite::Connection::open(&self.db).unwrap();
        drop_triggers(&c);
        let n = c
            .execute(
                "UPDATE checkpoints SET note = ?2 WHERE size = ?1",
                rusqlite::params![size as i64, note],
            )
            .unwrap()
            + c.execute(
                "UPDATE head SET note = ?2 WHERE size = ?1",
                rusqlite::params![size as i64, note],
            )
            .unwrap();
        assert!(n > 0, "no checkpoint stored for size {size}");
    }

    /// The stored checkpoint of `size`, its body re-signed by `signers`.
    fn resigned(&self, size: u64, signers: &[&dyn Signer]) -> String {
        let note = Store::open(&self.db)
            .unwrap()
            .checkpoint_at(size)
            .unwrap()
            .unwrap();
        let cp = Checkpoint::parse_body(&SignedNote::parse(&note).unwrap().text).unwrap();
        let mut signed = cp.sign(signers[0]).unwrap();
        for s in &signers[1..] {
            let more = cp.sign(*s).unwrap();
            signed.signatures.extend(more.signatures);
        }
        signed.to_text()
    }
}

fn drop_triggers(c: &rusqlite::Connection) {
    let triggers: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for t in triggers {
        c.execute_batch(&format!("DROP TRIGGER \"{t}\"")).unwrap();
    }
}

/// Entries received in order, none missing, up to `size`.
fn delivered_through(got: &[Received], size: u64) -> bool {
    let mut next = 0;
    for r in got.iter().filter(|r| !r.label.starts_with("finding.")) {
        if r.seq == next {
            next += 1;
        }
    }
    next >= size
}

fn failures(got: &[Received]) -> Vec<&Received> {
    got.iter()
        .filter(|r| r.label == "finding.verification_failure")
        .collect()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_feed_running_across_a_rotation_and_a_revocation_keeps_delivering() {
    let s = setup();
    s.append(&s.old_key, 5);
    // The feed starts with the genesis key, as it was configured before.
    let mut feed = s.spawn_feed(&s.old_key);
    assert!(wait_for(20, || delivered_through(&s.hec.received(), 6)));
    let boundary = s.rotate();
    s.append(&s.new_key, 4);
    s.revoke(3);
    s.append(&s.new_key, 3);
    let size = s.size();
    let caught_up = wait_for(30, || delivered_through(&s.hec.received(), size));
    let alive = feed.try_wait().unwrap().is_none();
    feed.kill().unwrap();
    let out = feed.wait_with_output().unwrap();
    assert!(
        caught_up && alive,
        "the feed stopped or fell behind across the rotation at {boundary}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = s.hec.received();
    assert!(
        failures(&got).is_empty(),
        "false alert: {:?}",
        failures(&got)
    );
    // The schedule and the revocation are kept with the cursor, so a
    // restart (now with the new key) resumes without a false alert.
    let cursor =
        std::fs::read_to_string(s.db.with_extension("db.feed").join("splunk.json")).unwrap();
    let v: Value = serde_json::from_str(&cursor).unwrap();
    assert_eq!(v["verified"]["keys"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["verified"]["revoked"][0]["from"], 3, "{v}");
    s.append(&s.new_key, 2);
    let o = s.feed_until_caught_up("splunk", &s.new_key);
    ok(&o);
    // A sink starting from the beginning verifies the whole schedule, with
    // either key as the trusted one.
    for key in [&s.new_key, &s.old_key] {
        std::fs::remove_file(s.db.with_extension("db.feed").join("fresh.json")).ok();
        let before = s.size();
        let o = s.feed_until_caught_up("fresh", key);
        ok(&o);
        let err = stderr(&o);
        let n: u64 = err
            .split("sink fresh: delivered ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("no summary: {err}"));
        assert!(n >= before, "delivered {n} of {before}: {err}");
    }
    assert!(failures(&s.hec.received()).is_empty());
    // A key that is not the log's is refused, naming the log's keys.
    let stranger = s.dir.path().join("stranger.key");
    ok(&s.run(&[
        "keys",
        "init",
        "--key",
        stranger.to_str().unwrap(),
        "--origin",
        ORIGIN,
    ]));
    let o = s.feed_until_caught_up("fresh", &stranger);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&s.verifier(&s.new_key)),
        "{}",
        stderr(&o)
    );
}

/// A log rotated at `boundary`, with entries past it; nothing delivered yet.
fn rotated(s: &Setup) -> u64 {
    s.append(&s.old_key, 4);
    let b = s.rotate();
    s.append(&s.new_key, 3);
    b
}

/// Run the feed over the altered log: exit 3, only the finding delivered,
/// naming `why`; the sink stays stopped.
fn refused(s: &Setup, why: &str) {
    let o = s.feed_until_caught_up("splunk", &s.new_key);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("failed verification"), "{}", stderr(&o));
    let got = s.hec.received();
    assert!(
        got.iter()
            .all(|r| r.label == "finding.verification_failure"),
        "nothing unverified delivered: {got:?}"
    );
    let f = failures(&got);
    assert_eq!(f.len(), 1, "{got:?}");
    assert_eq!(f[0].event["severity_id"], 5);
    let reason = f[0].event["unmapped"]["fields"]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains(why), "{reason}");
    let o = s.feed_until_caught_up("splunk", &s.new_key);
    assert_eq!(o.status.code(), Some(3));
}

#[test]
fn a_checkpoint_forged_with_the_old_key_past_the_rotation_is_refused() {
    let s = setup();
    rotated(&s);
    let head = s.size();
    let old = s.signer(&s.old_key);
    // The real root, signed by the old key only: the attacker holds it.
    s.replace_checkpoint(head, &s.resigned(head, &[old.as_ref()]));
    refused(&s, "not signed by the key for size");
}

#[test]
fn a_checkpoint_signed_by_a_stranger_or_both_keys_out_of_turn_is_refused() {
    // A stranger's key of the same name.
    let s = setup();
    rotated(&s);
    let head = s.size();
    let stranger = Ed25519Signer::from_seed(ORIGIN, &[9; 32]).unwrap();
    s.replace_checkpoint(head, &s.resigned(head, &[&stranger]));
    refused(&s, "not signed by the key for size");

    // The old key's signature added to the new one's past the boundary is
    // not enough to make the old key trusted there: only the new key's
    // counts, so a note signed by the old key plus a stranger fails.
    let s = setup();
    rotated(&s);
    let head = s.size();
    let old = s.signer(&s.old_key);
    s.replace_checkpoint(head, &s.resigned(head, &[old.as_ref(), &stranger]));
    refused(&s, "not signed by the key for size");
}

#[test]
fn a_rotation_checkpoint_without_both_signatures_is_refused_unless_the_old_key_is_revoked() {
    // Signed by the new key alone: nothing links the old key to the new.
    let s = setup();
    let b = rotated(&s);
    let new = s.signer(&s.new_key);
    s.replace_checkpoint(b, &s.resigned(b, &[new.as_ref()]));
    refused(&s, &format!("size {b}"));

    // Signed by the old key alone: the new key's link is missing.
    let s = setup();
    let b = rotated(&s);
    let old = s.signer(&s.old_key);
    s.replace_checkpoint(b, &s.resigned(b, &[old.as_ref()]));
    refused(&s, &format!("size {b}"));

    // Once the old key is revoked from before the boundary, its signature
    // there no longer counts, and only the new key's is needed; a note
    // signed by the revoked key alone is refused.
    let s = setup();
    let b = rotated(&s);
    s.revoke(2);
    let old = s.signer(&s.old_key);
    s.replace_checkpoint(b, &s.resigned(b, &[old.as_ref()]));
    refused(&s, &format!("size {b}"));
    let s = setup();
    let b = rotated(&s);
    s.revoke(2);
    let new = s.signer(&s.new_key);
    s.replace_checkpoint(b, &s.resigned(b, &[new.as_ref()]));
    let size = s.size();
    let o = s.feed_until_caught_up("splunk", &s.new_key);
    ok(&o);
    assert!(failures(&s.hec.received()).is_empty());
    assert!(delivered_through(&s.hec.received(), size));
}

#[test]
fn a_revoked_key_checkpoint_past_its_revocation_is_refused() {
    // The newest checkpoint forged by the revoked key (its real root):
    // refused, as the old key past the rotation always is.
    let s = setup();
    rotated(&s);
    s.revoke(2);
    s.append(&s.new_key, 2);
    let head = s.size();
    let old = s.signer(&s.old_key);
    s.replace_checkpoint(head, &s.resigned(head, &[old.as_ref()]));
    refused(&s, "not signed by the key for size");
}
