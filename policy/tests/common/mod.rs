#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]
//! Helpers shared by the integration tests: build bundles in temp dirs.

use std::path::Path;

/// Write `files` (relative path, contents) into a fresh temp dir, adding the
/// stele schema and an empty members file unless given.
pub fn bundle(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let has = |name: &str| files.iter().any(|(p, _)| *p == name);
    if !has("schema.cedarschema") {
        write(dir.path(), "schema.cedarschema", stele_policy::STELE_SCHEMA);
    }
    if !has("members.toml") {
        write(dir.path(), "members.toml", "[users]\n");
    }
    for (p, text) in files {
        write(dir.path(), p, text);
    }
    dir
}

pub fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

pub const ORG_ALLOW_ALL_FILES: &str = r#"
@id("org.files")
permit (principal, action in [Action::"file.read", Action::"file.write"], resource is File);
"#;
