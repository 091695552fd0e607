#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `stele audit hold` and `stele audit expire` as a compliance officer
//! would run them: classes and hold officers come only from the managed
//! configuration, a non-officer is refused, a release needs two different
//! officers, and the log verifies after each step.

use std::path::Path;
use std::process::Output;

use stele_tests::Stele;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Env {
    _d: tempfile::TempDir,
    s: Stele,
    managed: String,
    user_cfg: String,
}

impl Env {
    fn run(&self, user: &str, args: &[&str]) -> Output {
        self.s
            .run_env(
                args,
                &[
                    ("USER", user),
                    ("STELE_MANAGED_CONFIG", &self.managed),
                    ("STELE_CONFIG", &self.user_cfg),
                ],
            )
            .unwrap()
    }

    fn ok(&self, user: &str, args: &[&str]) -> String {
        let o = self.run(user, args);
        assert!(
            o.status.success(),
            "stele {args:?} as {user} failed: {}",
            text(&o)
        );
        text(&o)
    }

    fn refused(&self, user: &str, args: &[&str]) -> String {
        let o = self.run(user, args);
        assert!(
            !o.status.success(),
            "stele {args:?} as {user} must be refused: {}",
            text(&o)
        );
        text(&o)
    }
}

fn setup(user_file: &str) -> Env {
    assert!(
        !Path::new("/etc/stele/config.toml").exists(),
        "this test needs STELE_MANAGED_CONFIG to be honoured (no /etc/stele/config.toml)"
    );
    let d = tempfile::tempdir().unwrap();
    let s = Stele::new(&d.path().join("state"));
    let managed = d.path().join("managed.toml");
    std::fs::write(
        &managed,
        "[retention]\ndefault = \"pci\"\nhold_officers = [\"alice\", \"bob\"]\n[retention.classes]\npci = \"12mo\"\nhipaa = \"6y\"\n[retention.teams]\nclinical = \"hipaa\"\n",
    )
    .unwrap();
    let user_cfg = d.path().join("user.toml");
    std::fs::write(&user_cfg, user_file).unwrap();
    let e = Env {
        managed: managed.display().to_string(),
        user_cfg: user_cfg.display().to_string(),
        _d: d,
        s,
    };
    e.ok(
        "alice",
        &["keys", "init", "--origin", "audit.test.invalid/retention"],
    );
    e.ok("alice", &["audit", "init"]);
    e
}

#[test]
fn holds_need_officers_and_two_of_them_to_release() {
    let e = setup("");
    let m = e.refused(
        "mallory",
        &[
            "audit",
            "hold",
            "place",
            "--session",
            "s-1",
            "--reason",
            "matter 9",
        ],
    );
    assert!(m.contains("not a hold officer"), "{m}");
    let out = e.ok(
        "alice",
        &[
            "audit",
            "hold",
            "place",
            "--session",
            "s-1",
            "--reason",
            "matter 9",
        ],
    );
    let id = out
        .split_whitespace()
        .nth(2)
        .and_then(|w| w.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no hold id in {out:?}"));
    let id = id.to_string();
    let out = e.ok(
        "alice",
        &["audit", "hold", "release", &id, "--reason", "closed"],
    );
    assert!(out.contains("a second hold officer"), "{out}");
    let m = e.refused(
        "alice",
        &["audit", "hold", "release", &id, "--reason", "closed"],
    );
    assert!(m.contains("dual control"), "{m}");
    let m = e.refused(
        "mallory",
        &["audit", "hold", "release", &id, "--reason", "x"],
    );
    assert!(m.contains("not a hold officer"), "{m}");
    let list = e.ok("carol", &["audit", "hold", "list"]);
    assert!(list.contains("approved once, by alice"), "{list}");
    let out = e.ok(
        "bob",
        &["audit", "hold", "release", &id, "--reason", "closed"],
    );
    assert!(out.contains("released"), "{out}");
    let list = e.ok("carol", &["audit", "hold", "list"]);
    assert!(list.contains("released by entry"), "{list}");
    // A time range; a bad time names the flag.
    let m = e.refused(
        "alice",
        &[
            "audit",
            "hold",
            "place",
            "--from",
            "2026-13-01",
            "--until",
            "2027-01-01",
            "--reason",
            "r",
        ],
    );
    assert!(m.contains("--from"), "{m}");
    e.ok(
        "alice",
        &[
            "audit",
            "hold",
            "place",
            "--from",
            "2026-01-01",
            "--until",
            "2027-01-01",
            "--reason",
            "r",
        ],
    );
    let json = e.ok("alice", &["audit", "expire", "--dry-run", "--json"]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["dry_run"], true, "{v}");
    assert!(v["config"].as_str().unwrap().starts_with("sha256:"), "{v}");
    e.ok("alice", &["audit", "expire", "--user", "retention"]);
    let out = e.ok("alice", &["audit", "verify"]);
    assert!(out.contains("OK") || out.contains("verified"), "{out}");
    let kinds = e.ok(
        "alice",
        &["audit", "show", "--kind", "hold.release", "--json"],
    );
    assert_eq!(kinds.lines().count(), 2, "{kinds}");
}

#[test]
fn retention_in_the_users_file_is_refused() {
    let e = setup("[retention]\ndefault = \"short\"\n[retention.classes]\nshort = \"1d\"\n");
    for args in [
        &["audit", "expire", "--dry-run"][..],
        &[
            "audit",
            "hold",
            "place",
            "--principal",
            "x",
            "--reason",
            "r",
        ][..],
    ] {
        let m = e.refused("alice", args);
        assert!(
            m.contains("only in the managed configuration"),
            "{args:?}: {m}"
        );
    }
}
