#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `stele audit archive` as an operator would run it: the bundle is
//! verified before the prefix goes; `stele audit verify`, `show` and
//! `report` work on the archived log; `verify --archive` checks the chain
//! and fails (exit 3) on a changed archive or another log's; a held prefix
//! is refused naming the hold; the export of the live part starts at the
//! boundary and stele-verify checks it on its own; a second archive is a
//! bundle of [N, M) and `verify --archive A1 --archive A2` and
//! `stele-verify A1 --then A2 --then LIVE` check the whole chain.

use std::process::Output;

use stele_tests::{stele_bin, Stele};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(s: &Stele, args: &[&str]) -> String {
    let o = s.run_env(args, &[("USER", "alice")]).unwrap();
    assert!(o.status.success(), "stele {args:?}: {}", text(&o));
    text(&o)
}

fn refused(s: &Stele, args: &[&str]) -> (i32, String) {
    let o = s.run_env(args, &[("USER", "alice")]).unwrap();
    assert!(
        !o.status.success(),
        "stele {args:?} must fail: {}",
        text(&o)
    );
    (o.status.code().unwrap_or(-1), text(&o))
}

fn new_log(d: &std::path::Path) -> Stele {
    let s = Stele::new(&d.join("state"));
    ok(
        &s,
        &["keys", "init", "--origin", "audit.test.invalid/archive"],
    );
    ok(&s, &["audit", "init"]);
    // A few entries (each read is itself recorded).
    for _ in 0..3 {
        ok(&s, &["audit", "tail", "-n", "1"]);
    }
    s
}

#[test]
fn archive_verify_the_chain_and_keep_using_the_log() {
    let d = tempfile::tempdir().unwrap();
    let s = new_log(d.path());
    let out = d.path().join("archive-1");
    let o = ok(
        &s,
        &[
            "audit",
            "archive",
            "--through",
            "4",
            "--out",
            out.to_str().unwrap(),
            "--reason",
            "schedule",
        ],
    );
    assert!(o.contains("archived entries 0..4"), "{o}");
    let v = ok(&s, &["audit", "verify"]);
    assert!(v.contains("archived:     entries 0..4"), "{v}");
    let v = ok(&s, &["audit", "verify", "--archive", out.to_str().unwrap()]);
    assert!(v.contains("joins the live log"), "{v}");
    ok(&s, &["audit", "tail", "-n", "5"]);
    let shown = ok(&s, &["audit", "show", "--kind", "log.archive", "--json"]);
    assert_eq!(shown.lines().count(), 1, "{shown}");
    // The export of the live part starts at the boundary; stele-verify
    // checks it on its own and says what is archived.
    let live = d.path().join("live-1");
    ok(&s, &["audit", "export", "--out", live.to_str().unwrap()]);
    let vkey = verifier_key(&s);
    let v = stele_verify(&[live.to_str().unwrap(), "--key", &vkey]);
    assert!(v.status.success(), "{}", text(&v));
    assert!(
        text(&v).contains("entries 0..4 are archived, not in this bundle"),
        "{}",
        text(&v)
    );
    let v = stele_verify(&[live.to_str().unwrap(), "--key", &vkey, "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(j["start"]["size"], 4, "{j}");
    // A second archive through a size below the first's log.archive entry
    // is refused saying why; a later one is a bundle of [4, M).
    let (_, m) = refused(
        &s,
        &[
            "audit",
            "archive",
            "--through",
            "5",
            "--out",
            d.path().join("a2-early").to_str().unwrap(),
            "--reason",
            "r",
        ],
    );
    assert!(m.contains("log.archive entry"), "{m}");
    assert!(!d.path().join("a2-early").exists());
    let a2 = d.path().join("archive-2");
    let o = ok(
        &s,
        &[
            "audit",
            "archive",
            "--before",
            "2999-01-01",
            "--out",
            a2.to_str().unwrap(),
            "--reason",
            "schedule",
        ],
    );
    assert!(o.contains("archived entries 4.."), "{o}");
    let shown = ok(&s, &["audit", "show", "--kind", "log.archive", "--json"]);
    assert_eq!(shown.lines().count(), 1, "only the newest is live: {shown}");
    let v = ok(
        &s,
        &[
            "audit",
            "verify",
            "--archive",
            out.to_str().unwrap(),
            "--archive",
            a2.to_str().unwrap(),
        ],
    );
    assert!(v.contains("join the live log"), "{v}");
    // One archive, or the two in the wrong order, is not the chain.
    let (code, m) = refused(&s, &["audit", "verify", "--archive", a2.to_str().unwrap()]);
    assert_eq!(code, 3, "{m}");
    assert!(m.contains("give every archive bundle"), "{m}");
    let (code, m) = refused(
        &s,
        &[
            "audit",
            "verify",
            "--archive",
            a2.to_str().unwrap(),
            "--archive",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 3, "{m}");
    // The offline chain: A1 → A2 → the live export.
    let live2 = d.path().join("live-2");
    ok(&s, &["audit", "export", "--out", live2.to_str().unwrap()]);
    let v = stele_verify(&[
        out.to_str().unwrap(),
        "--then",
        a2.to_str().unwrap(),
        "--then",
        live2.to_str().unwrap(),
        "--key",
        &vkey,
    ]);
    assert!(v.status.success(), "{}", text(&v));
    assert!(text(&v).contains("archive chain of"), "{}", text(&v));
    // A dropped middle archive: exit 3, naming the bundle and the gap.
    let v = stele_verify(&[
        out.to_str().unwrap(),
        "--then",
        live2.to_str().unwrap(),
        "--key",
        &vkey,
        "--json",
    ]);
    assert_eq!(v.status.code(), Some(3), "{}", text(&v));
    let j: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(j["result"], "failed");
    assert_eq!(j["position"], 2, "{j}");
    assert!(
        j["reason"].as_str().unwrap().contains("in no bundle given"),
        "{j}"
    );
    // A changed archive fails the chain (exit 3).
    let entries = std::fs::read_dir(out.join("tile/entries")).unwrap();
    let mut changed = false;
    for e in entries.flatten() {
        for f in walk(&e.path()) {
            let mut b = std::fs::read(&f).unwrap();
            if let Some(at) = b.windows(7).position(|w| w == b"log.ope") {
                b[at + 4] = b'O';
                std::fs::write(&f, b).unwrap();
                changed = true;
            }
        }
    }
    assert!(changed);
    let (code, m) = refused(
        &s,
        &[
            "audit",
            "verify",
            "--archive",
            out.to_str().unwrap(),
            "--archive",
            a2.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 3, "{m}");
    assert!(m.contains("archive chain"), "{m}");
    // Another log's archive (same key): not this log's.
    let d2 = tempfile::tempdir().unwrap();
    let s2 = new_log(d2.path());
    let out2 = d2.path().join("archive");
    ok(
        &s2,
        &[
            "audit",
            "archive",
            "--before",
            "2999-01-01",
            "--out",
            out2.to_str().unwrap(),
            "--reason",
            "r",
        ],
    );
    let (code, m) = refused(
        &s,
        &["audit", "verify", "--archive", out2.to_str().unwrap()],
    );
    assert_eq!(code, 3, "{m}");
}

/// The log's verifier key, as `stele keys show` prints it.
fn verifier_key(s: &Stele) -> String {
    ok(s, &["keys", "show"]).trim().to_string()
}

fn stele_verify(args: &[&str]) -> Output {
    let b = stele_bin().with_file_name("stele-verify");
    assert!(
        b.exists(),
        "{} is missing: build it with `cargo build -p stele-verify`",
        b.display()
    );
    std::process::Command::new(b).args(args).output().unwrap()
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    if p.is_dir() {
        std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .flat_map(|e| walk(&e.path()))
            .collect()
    } else {
        vec![p.to_path_buf()]
    }
}

#[test]
fn a_held_prefix_or_a_bad_boundary_is_refused_and_nothing_is_written() {
    let d = tempfile::tempdir().unwrap();
    let s = new_log(d.path());
    let managed = d.path().join("managed.toml");
    std::fs::write(&managed, "[retention]\ndefault = \"pci\"\nhold_officers = [\"alice\"]\n[retention.classes]\npci = \"12mo\"\n").unwrap();
    let env = [
        ("USER", "alice"),
        ("STELE_MANAGED_CONFIG", managed.to_str().unwrap()),
    ];
    let o = s
        .run_env(
            &[
                "audit",
                "hold",
                "place",
                "--from",
                "2000-01-01",
                "--until",
                "2999-01-01",
                "--reason",
                "matter 9",
            ],
            &env,
        )
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = d.path().join("archive");
    let (_, m) = refused(
        &s,
        &[
            "audit",
            "archive",
            "--through",
            "3",
            "--out",
            out.to_str().unwrap(),
            "--reason",
            "r",
        ],
    );
    assert!(m.contains("legal hold"), "{m}");
    assert!(!out.exists());
    let (_, m) = refused(
        &s,
        &[
            "audit",
            "archive",
            "--through",
            "0",
            "--out",
            out.to_str().unwrap(),
            "--reason",
            "r",
        ],
    );
    assert!(m.contains("cannot archive 0"), "{m}");
    let (_, m) = refused(
        &s,
        &[
            "audit",
            "archive",
            "--before",
            "2026-13-01",
            "--out",
            out.to_str().unwrap(),
            "--reason",
            "r",
        ],
    );
    assert!(m.contains("--before"), "{m}");
    assert!(!out.exists());
    ok(&s, &["audit", "verify"]);
}

/// A rotation in the archived prefix (docs/retention.md, "Archival and key
/// rotation"): a size the old key signed without a kept checkpoint is
/// refused, naming the first size the new key signs; the rotation's
/// boundary is archived; the live log verifies with the new and the old
/// key, `verify --archive` joins the chain, and the log keeps working.
#[test]
fn a_rotation_in_the_prefix_archives_at_its_boundary_and_verifies_with_either_key() {
    let d = tempfile::tempdir().unwrap();
    let s = new_log(d.path());
    let new_key = d.path().join("new.key");
    let nk = new_key.to_str().unwrap();
    ok(
        &s,
        &[
            "keys",
            "init",
            "--key",
            nk,
            "--origin",
            "audit.test.invalid/archive",
        ],
    );
    let r = ok(
        &s,
        &["keys", "rotate", "--to-key", nk, "--reason", "yearly"],
    );
    assert!(r.contains("key.rotation"), "{r}");
    let shown = ok(
        &s,
        &[
            "audit",
            "show",
            "--kind",
            "key.rotation",
            "--json",
            "--key",
            nk,
        ],
    );
    let v: serde_json::Value = serde_json::from_str(shown.lines().next().unwrap()).unwrap();
    let b = v["data"]["from_size"].as_u64().unwrap();
    ok(&s, &["audit", "tail", "-n", "1", "--key", nk]);
    let early = d.path().join("early");
    let (_, m) = refused(
        &s,
        &[
            "audit",
            "archive",
            "--through",
            "3",
            "--out",
            early.to_str().unwrap(),
            "--reason",
            "x",
            "--key",
            nk,
        ],
    );
    assert!(
        m.contains("an earlier key signs that size")
            && m.contains(&format!("through {b} or later")),
        "{m}"
    );
    assert!(!early.exists());
    let out = d.path().join("archive-rot");
    let o = ok(
        &s,
        &[
            "audit",
            "archive",
            "--through",
            &b.to_string(),
            "--out",
            out.to_str().unwrap(),
            "--reason",
            "schedule",
            "--key",
            nk,
        ],
    );
    assert!(o.contains(&format!("archived entries 0..{b}")), "{o}");
    ok(&s, &["audit", "tail", "-n", "1", "--key", nk]);
    let old_key = s.state.join("keys/log.key");
    for k in [nk, old_key.to_str().unwrap()] {
        let v = ok(&s, &["audit", "verify", "--key", k]);
        assert!(v.contains(&format!("archived:     entries 0..{b}")), "{v}");
    }
    let v = ok(
        &s,
        &[
            "audit",
            "verify",
            "--key",
            nk,
            "--archive",
            out.to_str().unwrap(),
        ],
    );
    assert!(v.contains("joins the live log"), "{v}");
    // A session after the archive: its session bundle starts at the
    // boundary, past the archived rotation, and verifies trusting only
    // the genesis key.
    if !stele_tests::sandbox_available("archive_cli session bundle") {
        return;
    }
    let old_verifier = verifier_key(&s);
    let ws = d.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    ok(
        &s,
        &[
            "sandbox",
            "exec",
            "--workspace",
            ws.to_str().unwrap(),
            "--key",
            nk,
            "--",
            "true",
        ],
    );
    let shown = ok(
        &s,
        &[
            "audit",
            "show",
            "--kind",
            "session.start",
            "--json",
            "--key",
            nk,
        ],
    );
    let v: serde_json::Value = serde_json::from_str(shown.lines().last().unwrap()).unwrap();
    let id = v["session"]["id"].as_str().unwrap().to_string();
    let bundle = d.path().join("session-bundle");
    ok(
        &s,
        &[
            "audit",
            "export",
            "--session",
            &id,
            "--out",
            bundle.to_str().unwrap(),
            "--key",
            nk,
        ],
    );
    let v = stele_verify(&[bundle.to_str().unwrap(), "--key", &old_verifier, "--json"]);
    assert!(v.status.success(), "{}", text(&v));
    let j: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(j["start"]["size"], b, "{j}");
}
