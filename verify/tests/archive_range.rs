#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Bundles that start past 0 and the offline archive chain, through a real
//! log, real archives and real exports: the export of the live part of an
//! archived log verifies on its own and says what is archived; a second
//! archive is a bundle of `[N, M)`; `A1 → A2 → LIVE` joins at each
//! boundary; every forged start and every broken chain (gap, overlap,
//! swapped order, another log, a changed manifest, a dropped archive, a
//! chain not starting at 0, a session bundle) fails naming the bundle and
//! what.

mod archived;

use archived::*;

#[test]
fn a_live_part_bundle_verifies_on_its_own_and_says_what_is_archived() {
    // Boundaries around tile edges (the live tiles are numbered from N).
    for first in [1usize, 250, 251, 252, 300] {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::create(
            &dir.path().join("audit.db"),
            key(1),
            LogOptions {
                heartbeat: None,
                ..Default::default()
            },
        )
        .unwrap();
        session(&log, "s1", first);
        let n = archive_now(&log, &key(1), &dir.path().join("a1"), &opts(&[&key(1)]));
        session(&log, "s2", first);
        let live = export_all(
            &log,
            key(1).as_ref(),
            Selection::All,
            &dir.path().join("live"),
        );
        let r = check(&live, &opts(&[&key(1)])).unwrap();
        let s = r.start.clone().unwrap();
        assert_eq!(s.size, n, "first={first}");
        let text = r.to_string();
        assert!(
            text.contains(&format!("entries 0..{n} are archived, not in this bundle")),
            "{text}"
        );
        let j = r.to_json();
        assert_eq!(j["start"]["size"], n);
        assert!(j["start"]["note"].as_str().unwrap().contains("archived"));
        // A time selection of the live part is a bundle that starts at N too.
        let t = export_all(
            &log,
            key(1).as_ref(),
            Selection::Time {
                since: "2000-01-01T00:00:00.000000Z".into(),
                until: "2999-01-01T00:00:00.000000Z".into(),
            },
            &dir.path().join("time"),
        );
        let r = check(&t, &opts(&[&key(1)])).unwrap();
        assert_eq!(r.start.unwrap().size, n);
        // The archive and the live part join.
        let b: Vec<(String, Bundle)> = ["a1", "live"]
            .iter()
            .map(|x| (x.to_string(), Bundle::open(&dir.path().join(x)).unwrap()))
            .collect();
        let links = verify_chain(&b, &opts(&[&key(1)])).unwrap();
        assert_eq!(links.len(), 2);
        log.close().unwrap();
    }
}

#[test]
fn every_forged_start_fails_naming_what() {
    let c = Chain::new(5);
    let o = all_keys();
    // Untouched, both later bundles verify and start where they should.
    assert_eq!(check(&c.p("a2"), &o).unwrap().start.unwrap().size, c.n);
    assert_eq!(check(&c.p("live"), &o).unwrap().start.unwrap().size, c.m);
    let (n, m) = (c.n, c.m);
    // A checkpoint the reviewer holds below the start is not passed over;
    // one at the start is checked.
    let held = |b: &str| {
        let mut x = all_keys();
        x.anchors = vec![(
            std::fs::read_to_string(c.p(b).join("checkpoint")).unwrap(),
            format!("held-{b}"),
        )];
        x
    };
    let e = check(&c.p("live"), &held("a1")).unwrap_err();
    assert!(e.to_string().contains("below this bundle's start"), "{e}");
    assert!(e.to_string().contains("held-a1"), "{e}");
    let r = check(&c.p("live"), &held("a2")).unwrap();
    assert_eq!(r.anchors.len(), 1);
    // Signed by the key of that size (a holder of it forging).
    let forged_cp = |size: u64| -> Vec<u8> {
        let k = if size <= n { key(2) } else { key(3) };
        Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: [7u8; 32],
        }
        .sign(k.as_ref())
        .unwrap()
        .to_text()
        .into_bytes()
    };
    let forged_cp_1 = || -> Vec<u8> {
        Checkpoint {
            origin: ORIGIN.into(),
            size: 1,
            root: [7u8; 32],
        }
        .sign(key(1).as_ref())
        .unwrap()
        .to_text()
        .into_bytes()
    };
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    type Files = Vec<(String, Option<Vec<u8>>)>;
    let none: Edit = Box::new(|_| {});
    let cases: Vec<(&str, Files, Edit, &str)> = vec![
        (
            "size up",
            vec![],
            Box::new(|p: &mut serde_json::Value| {
                p["start"]["size"] = serde_json::json!(p["start"]["size"].as_u64().unwrap() + 1)
            }),
            "start",
        ),
        (
            "size down",
            vec![],
            Box::new(|p: &mut serde_json::Value| {
                p["start"]["size"] = serde_json::json!(p["start"]["size"].as_u64().unwrap() - 1)
            }),
            "start",
        ),
        (
            "root",
            vec![],
            Box::new(|p: &mut serde_json::Value| flip_b64(&mut p["start"]["root"])),
            "start.root",
        ),
        (
            "frontier",
            vec![],
            Box::new(|p: &mut serde_json::Value| flip_b64(&mut p["start"]["frontier"][0])),
            "start.root",
        ),
        (
            "frontier and root together",
            vec![],
            Box::new(|p: &mut serde_json::Value| {
                flip_b64(&mut p["start"]["frontier"][0]);
                let f: Vec<[u8; 32]> = p["start"]["frontier"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| stele_audit::leaf::parse_hash_b64(h.as_str().unwrap()).unwrap())
                    .collect();
                let size = p["start"]["size"].as_u64().unwrap();
                let root = stele_audit::merkle::Frontier::from_parts(size, f)
                    .unwrap()
                    .root();
                p["start"]["root"] = serde_json::json!(stele_audit::leaf::hash_b64(&root));
            }),
            "another root than start.root",
        ),
        (
            "prev",
            vec![],
            Box::new(|p: &mut serde_json::Value| flip_b64(&mut p["start"]["prev"])),
            "prev",
        ),
        (
            "keys: a rotation dropped",
            vec![],
            Box::new(|p: &mut serde_json::Value| {
                p["start"]["keys"]["rotations"]
                    .as_array_mut()
                    .unwrap()
                    .pop();
            }),
            "start.keys",
        ),
        (
            "keys: a revocation added",
            vec![],
            Box::new(|p: &mut serde_json::Value| {
                p["start"]["keys"]["revocations"] =
                    serde_json::json!([{"key": key(1).verifier().to_string(), "from": 2}]);
            }),
            "keys",
        ),
        (
            "start removed",
            vec![],
            Box::new(|p: &mut serde_json::Value| {
                p.as_object_mut().unwrap().remove("start");
            }),
            "tile",
        ),
        (
            "start at 0",
            vec![],
            Box::new(|p: &mut serde_json::Value| p["start"]["size"] = serde_json::json!(0)),
            "start.size",
        ),
        (
            "start past the end",
            vec![],
            Box::new(|p: &mut serde_json::Value| {
                let t = p["tree_size"].as_u64().unwrap();
                p["start"]["size"] = serde_json::json!(t);
            }),
            "start",
        ),
    ];
    for bundle in ["a2", "live"] {
        let start = if bundle == "a2" { n } else { m };
        let mut all = cases
            .iter()
            .map(|(w, f, e, s)| {
                (
                    w.to_string(),
                    f.clone(),
                    &**e as &dyn Fn(&mut serde_json::Value),
                    s.to_string(),
                )
            })
            .collect::<Vec<_>>();
        let cp = format!("checkpoints/{start}");
        let f1 = vec![(cp.clone(), None)];
        let f2 = vec![(cp.clone(), Some(forged_cp(start)))];
        let f3 = vec![("checkpoints/1".to_string(), Some(forged_cp_1()))];
        let drop_cp: Edit = Box::new(move |p: &mut serde_json::Value| {
            let l = p["checkpoints"].as_array_mut().unwrap();
            l.retain(|s| s.as_u64() != Some(start));
        });
        let add_cp: Edit = Box::new(|p: &mut serde_json::Value| {
            let l = p["checkpoints"].as_array_mut().unwrap();
            l.insert(0, serde_json::json!(1));
        });
        all.push((
            "checkpoint at the start removed".into(),
            f1,
            &*drop_cp,
            "checkpoints".into(),
        ));
        all.push((
            "checkpoint at the start of another root".into(),
            f2,
            &*none,
            "another root than start.root".into(),
        ));
        all.push((
            "a checkpoint below the start".into(),
            f3,
            &*add_cp,
            "below the bundle's start".into(),
        ));
        for (what, files, edit, says) in all {
            let d = tempfile::tempdir().unwrap();
            copy_dir(&c.p(bundle), d.path());
            forge(d.path(), key(3).as_ref(), &files, edit);
            let e = check(d.path(), &o).unwrap_err();
            assert!(
                e.to_string().contains(&says),
                "{bundle}: {what}: expected {says:?} in: {e}"
            );
        }
    }
    c.log.close().unwrap();
}

#[test]
fn the_chain_of_two_archives_and_the_live_export_verifies_across_rotations() {
    let c = Chain::new(5);
    // Every trusted key alone is enough: trust passes along the rotations,
    // forward within a bundle and backward from a later bundle's proven
    // key schedule to the archives before it.
    for k in [key(1), key(2), key(3)] {
        let links = c.chain(&["a1", "a2", "live"], &opts(&[&k])).unwrap();
        assert_eq!(links.len(), 3);
        assert_eq!(links[0].report.entries, c.n);
        assert_eq!(links[1].report.start.as_ref().unwrap().size, c.n);
        assert_eq!(links[1].report.entries, c.m);
        assert_eq!(links[2].report.start.as_ref().unwrap().size, c.m);
        assert_eq!(
            links[1].report.start.as_ref().unwrap().archive_bundle,
            links[0].digest
        );
        assert_eq!(
            links[2].report.start.as_ref().unwrap().archive_bundle,
            links[1].digest
        );
    }
    // A stranger's key opens none of it (the last bundle is checked first).
    let e = c
        .chain(&["a1", "a2", "live"], &opts(&[&key(9)]))
        .unwrap_err();
    assert_eq!(e.position, 3, "{e}");
    assert!(e.to_string().contains("not the trusted key"), "{e}");
    c.log.close().unwrap();
}

#[test]
fn every_broken_chain_fails_naming_the_bundle_and_what() {
    let c = Chain::new(5);
    let o = all_keys();
    // An export of the live part taken between the two archives: it
    // starts at n and ends past it (used for an overlap).
    // (Made from a copy of the log state is not possible after the fact,
    // so the chain a1 → live-early is built in a second fixture.)
    let other = Chain::new(5);
    std::fs::create_dir_all(c.p("x")).unwrap();
    copy_dir(&other.p("a1"), &c.p("x/other-a1"));
    copy_dir(&other.p("a2"), &c.p("x/other-a2"));
    // A1 with a changed (re-signed) manifest: valid on its own, not the
    // archive the log recorded.
    copy_dir(&c.p("a1"), &c.p("x/a1-resigned"));
    forge(&c.p("x/a1-resigned"), key(2).as_ref(), &[], |p| {
        p["exporter"]["principal"] = serde_json::json!("mallory")
    });
    check(&c.p("x/a1-resigned"), &o).unwrap();
    let cases: Vec<(&[&str], usize, &str)> = vec![
        // A dropped middle archive: a gap.
        (&["a1", "live"], 2, "are in no bundle given"),
        // Swapped order.
        (&["a2", "a1", "live"], 1, "starts at"),
        (&["a1", "live", "a2"], 2, "are in no bundle given"),
        // The same archive twice: the second starts at 0.
        (&["a1", "a1", "a2"], 2, "starts at 0"),
        // Overlap: a bundle starting inside the one before.
        (&["a1", "a2", "a2"], 3, "overlap"),
        // A chain that does not begin at 0 (first archive missing).
        (&["a2", "live"], 1, "entries 0.."),
        // Another log's archive (same key, same origin).
        (&["x/other-a1", "a2", "live"], 2, "differs from the root"),
        (&["a1", "x/other-a2", "live"], 2, "differs from the root"),
        // A changed archive manifest.
        (
            &["x/a1-resigned", "a2", "live"],
            2,
            "names archive manifest",
        ),
    ];
    for (names, at, says) in cases {
        let e = c.chain(names, &o).unwrap_err();
        assert_eq!(e.position, at, "{names:?}: {e}");
        assert!(
            e.to_string().contains(says),
            "{names:?}: expected {says:?} in: {e}"
        );
        assert!(e.to_string().contains(names[at - 1]), "{names:?}: {e}");
    }
    // A session bundle is no range of the log (made from a log never
    // archived: a session bundle of a log whose key rotations are
    // archived is not supported).
    let plain = tempfile::tempdir().unwrap();
    let pl = AuditLog::create(
        &plain.path().join("audit.db"),
        key(1),
        LogOptions {
            heartbeat: None,
            ..Default::default()
        },
    )
    .unwrap();
    session(&pl, "p", 2);
    let so = ExportOptions {
        selection: Selection::Session { id: "p".into() },
        payloads: true,
        policies: vec![],
        exporter: actor(),
        allow_open_session: false,
        tar: false,
    };
    export(&pl, key(1).as_ref(), &so, &c.p("x/session")).unwrap();
    pl.close().unwrap();
    let e = c.chain(&["a1", "a2", "x/session"], &o).unwrap_err();
    assert_eq!(e.position, 3);
    assert!(e.to_string().contains("session bundle"), "{e}");
    // A changed entry in the middle archive: it fails on its own.
    copy_dir(&c.p("a2"), &c.p("x/a2-changed"));
    let tiles = walk(&c.p("x/a2-changed/tile/entries"));
    let f = &tiles[0];
    let mut bytes = std::fs::read(f).unwrap();
    let at = bytes.windows(5).position(|w| w == b"alice").unwrap();
    bytes[at] = b'm';
    std::fs::write(f, bytes).unwrap();
    let e = c.chain(&["a1", "x/a2-changed", "live"], &o).unwrap_err();
    assert_eq!(e.position, 2);
    assert!(e.to_string().contains("tile/entries"), "{e}");
    c.log.close().unwrap();
    other.log.close().unwrap();
}

#[test]
fn a_second_archive_must_hold_the_first_archives_entry() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::create(
        &dir.path().join("audit.db"),
        key(1),
        LogOptions {
            heartbeat: None,
            ..Default::default()
        },
    )
    .unwrap();
    session(&log, "s1", 3);
    let n = archive_now(&log, &key(1), &dir.path().join("a1"), &opts(&[&key(1)]));
    let row = log.store().unwrap().archived().unwrap().unwrap();
    session(&log, "s2", 3);
    for through in [n, n + 1, row.entry] {
        let o = ArchiveOptions {
            through,
            reason: "r".into(),
            actor: actor(),
            tar: false,
        };
        let e = archive(
            &log,
            key(1).as_ref(),
            key(1).as_ref(),
            &o,
            &dir.path().join(format!("a2-{through}")),
            &mut |_| Ok(()),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("already archived")
                || e.to_string()
                    .contains(&format!("log.archive entry {}", row.entry)),
            "{through}: {e}"
        );
        assert!(!dir.path().join(format!("a2-{through}")).exists());
    }
    log.close().unwrap();
}
