#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Session bundles of a log whose prefix is archived, with key rotations
//! below the archive (their `key.rotation` entries are gone): the bundle
//! starts at the boundary, carries the `log.archive` entry's key record,
//! proves that entry, and verifies from the genesis key alone; every way to
//! forge or drop what the start rests on fails naming it.

mod archived;

use archived::*;

fn session_export(log: &AuditLog, signer: &dyn Signer, id: &str, out: &Path) -> PathBuf {
    export_all(log, signer, Selection::Session { id: id.into() }, out)
}

#[test]
fn a_session_bundle_past_archived_rotations_verifies_from_the_genesis_key() {
    let c = Chain::new(5);
    // s5 lies past both archives; key 2 and key 3 entered below them.
    session_export(&c.log, key(3).as_ref(), "s5", &c.p("s5"));
    for trusted in [all_keys(), opts(&[&key(1)]), opts(&[&key(3)])] {
        let r = check(&c.p("s5"), &trusted).unwrap();
        let st = r.start.expect("the bundle says where it starts");
        assert_eq!(st.size, c.m);
        assert!(st.archive_entry >= c.m);
    }
    let proven: Vec<String> = std::fs::read_dir(c.p("s5").join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(proven.len(), 1, "only the log.archive entry: {proven:?}");
    // A rotation after the archive is proven as an entry beside it.
    c.log
        .rotate_blocking(key(4), "yearly".into(), actor())
        .unwrap();
    session(&c.log, "s6", 2);
    session_export(&c.log, key(4).as_ref(), "s6", &c.p("s6"));
    let r = check(&c.p("s6"), &opts(&[&key(1)])).unwrap();
    assert_eq!(r.start.unwrap().size, c.m);
    assert_eq!(
        std::fs::read_dir(c.p("s6").join("keys")).unwrap().count(),
        2
    );
    // A session inside an archive is not in the live log: said plainly.
    let o = ExportOptions {
        selection: Selection::Session { id: "s3".into() },
        payloads: true,
        policies: vec![],
        exporter: actor(),
        allow_open_session: false,
        tar: false,
    };
    let e = export(&c.log, key(4).as_ref(), &o, &c.p("s3")).unwrap_err();
    assert!(e.to_string().contains("archived"), "{e}");
    c.log.close().unwrap();
}

#[test]
fn every_forged_start_of_a_session_bundle_fails_naming_what() {
    let c = Chain::new(3);
    session_export(&c.log, key(3).as_ref(), "s5", &c.p("s5"));
    let o = all_keys();
    check(&c.p("s5"), &o).unwrap();
    let m = c.m;
    let archive_proof = std::fs::read_dir(c.p("s5").join("keys"))
        .unwrap()
        .map(|e| format!("keys/{}", e.unwrap().file_name().to_string_lossy()))
        .next()
        .unwrap();
    let rotation_cps: Vec<String> = std::fs::read_dir(c.p("s5").join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|s| s.parse::<u64>().unwrap() < m)
        .map(|s| format!("checkpoints/{s}"))
        .collect();
    assert!(
        !rotation_cps.is_empty(),
        "the archived rotations' checkpoints travel"
    );
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    type Files = Vec<(String, Option<Vec<u8>>)>;
    let none = || -> Edit { Box::new(|_| {}) };
    let cases: Vec<(&str, Files, Edit, &str)> = vec![
        (
            "the log.archive entry's proof dropped",
            vec![(archive_proof.clone(), None)],
            none(),
            "no log.archive entry",
        ),
        (
            "a rotation dropped from the key record",
            vec![],
            Box::new(|p: &mut serde_json::Value| {
                p["start"]["keys"]["rotations"]
                    .as_array_mut()
                    .unwrap()
                    .remove(0);
            }),
            "start.keys",
        ),
        (
            "a revocation added to the key record",
            vec![],
            Box::new(|p: &mut serde_json::Value| {
                p["start"]["keys"]["revocations"] =
                    serde_json::json!([{"key": key(1).verifier().to_string(), "from": 2}]);
            }),
            "keys",
        ),
        (
            "the start removed",
            vec![],
            Box::new(|p: &mut serde_json::Value| {
                p.as_object_mut().unwrap().remove("start");
            }),
            // Its rotation checkpoints below the boundary then have no
            // consistency proof to the bundle's checkpoint.
            "consistency/",
        ),
        (
            "the start moved",
            vec![],
            Box::new(|p: &mut serde_json::Value| {
                p["start"]["size"] = serde_json::json!(p["start"]["size"].as_u64().unwrap() - 1)
            }),
            "start",
        ),
        (
            "the start's last leaf hash changed",
            vec![],
            Box::new(|p: &mut serde_json::Value| flip_b64(&mut p["start"]["prev"])),
            "last leaf hash",
        ),
        (
            "the checkpoint at the start removed",
            vec![(format!("checkpoints/{m}"), None)],
            Box::new(move |p: &mut serde_json::Value| {
                p["checkpoints"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|s| s.as_u64() != Some(m));
            }),
            "checkpoint",
        ),
        (
            "the consistency proof from the start removed",
            vec![(format!("consistency/{m}"), None)],
            none(),
            "consistency",
        ),
        (
            "an archived rotation's checkpoint removed",
            vec![(rotation_cps[0].clone(), None)],
            {
                let size: u64 = rotation_cps[0]["checkpoints/".len()..].parse().unwrap();
                Box::new(move |p: &mut serde_json::Value| {
                    p["checkpoints"]
                        .as_array_mut()
                        .unwrap()
                        .retain(|s| s.as_u64() != Some(size));
                })
            },
            "is missing",
        ),
    ];
    for (what, files, edit, says) in cases {
        let d = tempfile::tempdir().unwrap();
        copy_dir(&c.p("s5"), d.path());
        forge(d.path(), key(3).as_ref(), &files, edit);
        let e = check(d.path(), &o).unwrap_err();
        assert!(
            e.to_string().contains(says),
            "{what}: expected {says:?} in: {e}"
        );
    }
    // A checkpoint the reviewer holds below the start is not passed over.
    let mut held = all_keys();
    held.anchors = vec![(
        std::fs::read_to_string(c.p("a1").join("checkpoint")).unwrap(),
        "held-a1".into(),
    )];
    let e = check(&c.p("s5"), &held).unwrap_err();
    assert!(e.to_string().contains("below this bundle's start"), "{e}");
    c.log.close().unwrap();
}
