//! The JSON Schemas in docs/json/ are generated from the types `--json`
//! prints (`stele_runtime::cli::json::schemas`). This test fails when a
//! checked-in schema is stale, missing, or left over; regenerate with
//! `STELE_UPDATE_SCHEMAS=1 cargo test -p stele-runtime --test json_schemas`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/json")
}

#[test]
fn checked_in_schemas_match_the_types() {
    let update = std::env::var_os("STELE_UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (name, schema) in stele_runtime::cli::json::schemas() {
        assert!(names.insert(name.to_string()), "{name} listed twice");
        let path = dir().join(format!("{name}.schema.json"));
        let want = format!("{}\n", serde_json::to_string_pretty(&schema).unwrap());
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            if update {
                std::fs::create_dir_all(dir()).unwrap();
                std::fs::write(&path, want).unwrap();
            } else {
                stale.push(path.display().to_string());
            }
        }
    }
    let mut orphans = Vec::new();
    for e in std::fs::read_dir(dir()).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(stem) = n.strip_suffix(".schema.json") {
            if !names.contains(stem) {
                orphans.push(n);
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale or missing schemas (regenerate: STELE_UPDATE_SCHEMAS=1 cargo test -p \
         stele-runtime --test json_schemas): {stale:?}"
    );
    assert!(orphans.is_empty(), "schemas of no shape: {orphans:?}");
}
