//! The tool image through the `stele` binary: a process-sandbox session runs
//! on the image's root and records its digest (and which root) in
//! `session.start` and the session attestation; `stele sandbox check`
//! re-hashes it; `sandbox_root = "host"` is recorded as the fallback it is;
//! a missing image is refused naming the set-up, never silently replaced.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use base64::Engine as _;
use serde_json::Value;
use stele_tests::{leaves_json, sandbox_available, share, vm_images, Stele};

fn setup(dir: &Path) -> (Stele, std::path::PathBuf) {
    let s = Stele::new(&dir.join("state"));
    let o = s
        .run(&["keys", "init", "--origin", "e2e.stele.invalid/log"])
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ws = dir.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    share(&ws).unwrap();
    (s, ws)
}

/// The digest of the image `stele vm image build` made current.
fn current_digest() -> String {
    let store = stele_sandbox::vm::ImageStore::at(vm_images());
    store
        .current()
        .expect("the tool image must be built by scripts/setup-vm")
        .manifest
        .digest
}

fn session_start(s: &Stele) -> Value {
    let leaves = leaves_json(s, &s.state.join("audit.db")).unwrap();
    leaves
        .into_iter()
        .rfind(|l| l["kind"] == "session.start")
        .expect("a session.start entry")
}

fn exec(s: &Stele, ws: &Path, env: &[(&str, &str)], script: &str) -> std::process::Output {
    let args = [
        "sandbox",
        "exec",
        "--workspace",
        ws.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        script,
    ];
    s.run_env(&args, env).unwrap()
}

#[test]
fn session_start_and_the_attestation_name_the_image_the_commands_ran_on() {
    if !sandbox_available("session_start_and_the_attestation_name_the_image") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (s, ws) = setup(dir.path());
    let o = exec(
        &s,
        &ws,
        &[],
        "pdftotext -v 2>&1 | head -1; tesseract --version | head -1",
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("pdftotext version") && out.contains("tesseract"),
        "{out}"
    );

    let digest = current_digest();
    let start = session_start(&s);
    let root = &start["data"]["sandbox_root"];
    assert_eq!(root["root"], "image", "{start}");
    assert_eq!(root["image_digest"], digest.as_str(), "{start}");

    let atts = s.state.join("audit.db.attestations");
    let file = std::fs::read_dir(&atts)
        .unwrap()
        .next()
        .expect("an attestation")
        .unwrap()
        .path();
    let env: Value = serde_json::from_str(std::fs::read_to_string(&file).unwrap().trim()).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(env["payload"].as_str().unwrap())
        .unwrap();
    let payload = String::from_utf8(payload).unwrap();
    assert!(payload.contains(&digest), "{payload}");
    assert!(payload.contains("\"sandbox_root\""), "{payload}");

    let o = s.run(&["sandbox", "check", "--json"]).unwrap();
    let check: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(check["root"]["configured"], "image", "{check}");
    assert_eq!(check["root"]["image_digest"], digest.as_str(), "{check}");
    assert_eq!(check["root"]["image_integrity"], "intact", "{check}");
}

#[test]
fn the_host_root_is_a_configured_fallback_recorded_as_such() {
    if !sandbox_available("the_host_root_is_a_configured_fallback") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (s, ws) = setup(dir.path());
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "sandbox_root = \"host\"\n").unwrap();
    let o = exec(
        &s,
        &ws,
        &[("STELE_CONFIG", cfg.to_str().unwrap())],
        "echo ran",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("WARNING") && err.contains("sandbox_root"),
        "{err}"
    );
    let start = session_start(&s);
    assert_eq!(start["data"]["sandbox_root"]["root"], "host", "{start}");
    assert_eq!(
        start["data"]["sandbox_root"]["allowed_by"], "sandbox_root = \"host\"",
        "{start}"
    );
    assert!(start["data"]["sandbox_root"]["image_digest"].is_null());
}

#[test]
fn a_missing_image_is_refused_naming_the_set_up() {
    if !sandbox_available("a_missing_image_is_refused_naming_the_set_up") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (s, ws) = setup(dir.path());
    let empty = dir.path().join("no-images");
    let o = exec(
        &s,
        &ws,
        &[("STELE_VM_IMAGES", empty.to_str().unwrap())],
        "echo SHOULD-NOT-RUN",
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(78), "{err}");
    assert!(err.contains("scripts/setup-vm"), "{err}");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("SHOULD-NOT-RUN"));
    let o = s
        .run_env(
            &["sandbox", "check"],
            &[("STELE_VM_IMAGES", empty.to_str().unwrap())],
        )
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("tool image") && out.contains("MISSING"),
        "{out}"
    );
}
