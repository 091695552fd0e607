//! The set-up scripts' promises that a test can hold: `scripts/demo`'s
//! build of `stele` and `scripts/test`'s build resolve every dependency
//! with the same features (so the two compile each crate once between
//! them), and the demo's set-up installs only what the demo needs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `cargo tree ARGS` as "name version" → the feature sets it is built with.
fn features(args: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let o = Command::new(cargo)
        .current_dir(root())
        .args(["tree", "--offline", "--locked", "--prefix", "none"])
        .args(["-f", "{p} |{f}"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "cargo tree {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let Some((pkg, feats)) = line.split_once('|') else {
            continue;
        };
        let name: Vec<&str> = pkg.split_whitespace().take(2).collect();
        let feats = feats.trim().trim_end_matches("(*)").trim();
        map.entry(name.join(" "))
            .or_default()
            .insert(feats.to_string());
    }
    map
}

#[test]
fn demo_build_and_test_build_share_every_dependency() {
    // scripts/demo: `cargo build -p stele-cli --bin stele` (no
    // dev-dependencies); scripts/test: the whole workspace, all targets.
    let demo = features(&["-p", "stele-cli", "-e", "no-dev"]);
    let tests = features(&["--workspace"]);
    assert!(demo.len() > 100, "cargo tree listed too little: {demo:?}");
    let differ: Vec<String> = demo
        .iter()
        .filter_map(|(pkg, f)| {
            let t = tests.get(pkg)?;
            (t != f).then(|| format!("{pkg}: demo {f:?}, tests {t:?}"))
        })
        .collect();
    assert!(
        differ.is_empty(),
        "scripts/demo would build these dependencies with other features than \
         scripts/test (so both would compile them and everything above them); \
         ask for the tests' features in runtime/Cargo.toml's feature unification:\n{}",
        differ.join("\n")
    );
}

#[test]
fn every_script_is_executable() {
    use std::os::unix::fs::PermissionsExt as _;
    for e in std::fs::read_dir(root().join("scripts")).unwrap() {
        let p = e.unwrap().path();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert!(
            mode & 0o111 == 0o111,
            "{} is not executable ({mode:o})",
            p.display()
        );
    }
    let ci = std::fs::metadata(root().join(".ci/run"))
        .unwrap()
        .permissions()
        .mode();
    assert!(ci & 0o100 != 0, ".ci/run is not executable");
}

#[test]
fn the_demo_installs_only_what_it_needs() {
    let demo = std::fs::read_to_string(root().join("scripts/demo")).unwrap();
    assert!(demo.contains("scripts/setup-demo"), "{demo}");
    // The tool image is the process sandbox's root: the demo cannot run without it.
    assert!(demo.contains("scripts/setup-vm"), "{demo}");
    for heavy in ["scripts/setup\n", "setup-mcp", "--release"] {
        assert!(
            !demo.contains(heavy),
            "scripts/demo runs {heavy:?}:\n{demo}"
        );
    }
    let setup_demo = std::fs::read_to_string(root().join("scripts/setup-demo")).unwrap();
    for heavy in ["qemu", "mmdebstrap", "npm", "vm image build"] {
        assert!(
            !setup_demo.contains(heavy),
            "setup-demo installs {heavy:?}:\n{setup_demo}"
        );
    }
    // The tests still get everything (the VM image for the VM tests).
    let setup = std::fs::read_to_string(root().join("scripts/setup")).unwrap();
    for needed in [
        "setup-demo",
        "setup-vm",
        "setup-mcp",
        "setup-siem",
        "setup-oidc",
        "setup-web",
        "setup-postgres",
    ] {
        assert!(setup.contains(needed), "scripts/setup lacks {needed}");
    }
}
