#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Every file in a layer folder is a policy or an error, and the digest
//! covers every file read: nothing in a bundle can be silently ignored.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::{bundle, write, ORG_ALLOW_ALL_FILES};
use stele_policy::{Bundle, PolicyError};

const FORBID: &str = "@id(\"t.forbid\")\nforbid (principal, action, resource is File);\n";

/// A bundle with an org layer and a team `x` with one member.
fn base() -> tempfile::TempDir {
    bundle(&[
        ("org/a.cedar", ORG_ALLOW_ALL_FILES),
        ("teams/x/a.cedar", "@id(\"x.ok\")\npermit (principal, action == Action::\"file.read\", resource is File);\n"),
        ("members.toml", "[users]\nann = [\"x\"]\n"),
    ])
}

fn refused(dir: &Path, expect_file: &str) -> String {
    match Bundle::load(dir) {
        Ok(_) => panic!("{expect_file}: the bundle loaded"),
        Err(e) => {
            let s = e.to_string();
            assert!(
                matches!(e, PolicyError::Layout { .. }),
                "{expect_file}: {s}"
            );
            assert!(s.starts_with(expect_file), "{expect_file}: {s}");
            s
        }
    }
}

#[test]
fn files_in_layer_folders_that_are_not_policies_are_refused() {
    for folder in ["org", "teams/x", "project"] {
        for name in [
            "rules.CEDAR",
            "rules.Cedar",
            "rules.cedar.txt",
            "rules.cedar~",
            "rules.cedar.bak",
            "rules.cedar.orig",
            ".rules.cedar.swp",
            "#rules.cedar#",
            ".hidden.cedar",
            "rules",
            "README.md",
            "rules.json",
        ] {
            let dir = base();
            write(dir.path(), &format!("{folder}/{name}"), FORBID);
            let msg = refused(dir.path(), &format!("{folder}/{name}"));
            assert!(!msg.is_empty());
        }
    }
}

#[test]
fn folders_symlinks_fifos_and_odd_names_in_layers_are_refused() {
    // A sub-folder.
    let dir = base();
    write(dir.path(), "teams/x/more/b.cedar", FORBID);
    refused(dir.path(), "teams/x/more");
    let dir = base();
    std::fs::create_dir_all(dir.path().join("org/empty-folder")).unwrap();
    refused(dir.path(), "org/empty-folder");
    // A symlink, to a file inside the bundle or out of it.
    for target in ["org/a.cedar", "/etc/hostname"] {
        let dir = base();
        std::fs::create_dir_all(dir.path().join("project")).unwrap();
        let t = if target.starts_with('/') {
            Path::new(target).to_path_buf()
        } else {
            dir.path().join(target)
        };
        std::os::unix::fs::symlink(t, dir.path().join("project/link.cedar")).unwrap();
        refused(dir.path(), "project/link.cedar");
    }
    // A FIFO (reading it would block the loader forever).
    let dir = base();
    let fifo = dir.path().join("org/pipe.cedar");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    refused(dir.path(), "org/pipe.cedar");
    // A name that is not UTF-8.
    let dir = base();
    let name = OsStr::from_bytes(b"org/r\xffles.cedar");
    std::fs::write(dir.path().join(name), FORBID).unwrap();
    let msg = refused(dir.path(), "org/r");
    assert!(msg.contains("UTF-8"), "{msg}");
}

#[test]
fn empty_and_comment_only_policy_files_are_refused() {
    for text in ["", "\n\n", "// only a comment\n", "   \t\n// x\n// y\n"] {
        for file in ["org/e.cedar", "teams/x/e.cedar", "project/e.cedar"] {
            let dir = base();
            write(dir.path(), file, text);
            let e = Bundle::load(dir.path()).err().unwrap();
            assert!(e.to_string().starts_with(file), "{e}");
            assert!(e.to_string().contains("no policies"), "{e}");
        }
    }
}

#[test]
fn other_folders_hold_only_what_they_are_for() {
    // teams/: folders only.
    for name in ["teams/notes.txt", "teams/x.cedar", "teams/.hidden"] {
        let dir = base();
        write(dir.path(), name, FORBID);
        refused(dir.path(), name);
    }
    // tests/: *.json only.
    for name in [
        "tests/t.JSON",
        "tests/t.json.bak",
        "tests/.t.json.swp",
        "tests/sub/t.json",
    ] {
        let dir = base();
        write(dir.path(), name, "[]");
        let expect = if name.ends_with("sub/t.json") {
            "tests/sub"
        } else {
            name
        };
        refused(dir.path(), expect);
    }
    // The root: known names in another case, policy files anywhere else.
    for name in [
        "ORG/a.cedar",
        "Members.toml",
        "SCHEMA.cedarschema",
        "rules.cedar",
        "rules.CEDAR.txt",
        "docs/old.cedar",
        "docs/deeper/x.Cedar",
    ] {
        let dir = base();
        write(dir.path(), name, FORBID);
        let first = name.split('/').next().unwrap();
        let expect = if first.contains('.') || name.starts_with("ORG") {
            first
        } else {
            name
        };
        refused(dir.path(), expect);
    }
    // Known names of the wrong kind.
    let dir = base();
    write(dir.path(), "project", "not a folder");
    refused(dir.path(), "project");
}

#[test]
fn files_that_are_not_read_are_allowed_at_the_root() {
    let dir = base();
    write(dir.path(), "README.md", "about this bundle");
    write(dir.path(), "docs/notes.txt", "notes");
    write(dir.path(), ".git/config", "[core]");
    let b = Bundle::load(dir.path()).unwrap();
    assert_eq!(b.policy_count(), 2);
}

/// The reproduction from the issue: a forbid in `rules.CEDAR` or
/// `rules.cedar.txt` was ignored and the digest did not change. Now the
/// bundle is refused; and every file that is read moves the digest.
#[test]
fn a_forbid_cannot_hide_and_every_read_file_moves_the_digest() {
    let dir = base();
    let before = *Bundle::load(dir.path()).unwrap().digest();
    for name in ["teams/x/rules.CEDAR", "teams/x/rules.cedar.txt"] {
        write(dir.path(), name, FORBID);
        refused(dir.path(), name);
        std::fs::remove_file(dir.path().join(name)).unwrap();
    }
    assert_eq!(before, *Bundle::load(dir.path()).unwrap().digest());
    write(dir.path(), "teams/x/rules.cedar", FORBID);
    let after = *Bundle::load(dir.path()).unwrap().digest();
    assert_ne!(before, after);
}

#[test]
fn oversized_files_are_refused() {
    let dir = base();
    let big = format!("{FORBID}//{}\n", "x".repeat(9 * 1024 * 1024));
    write(dir.path(), "teams/x/big.cedar", &big);
    let msg = refused(dir.path(), "teams/x/big.cedar");
    assert!(msg.contains("MiB"), "{msg}");
}
