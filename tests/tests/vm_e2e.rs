#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `stele run --backend vm` end to end: the agent's commands run in the
//! micro-VM (TCG on our machines), its file accesses go through the gate
//! over virtio-fs, and the log says which backend and image ran. Needs
//! QEMU and the guest image from `scripts/setup-vm`; fails without them.

use std::path::{Path, PathBuf};

use serde_json::json;
use stele_tests::mock_model::{MockModel, Turn};
use stele_tests::{intents_closed_once, leaves_json, Stele};

/// The image store `scripts/setup-vm` filled (the default state directory,
/// not the test's scratch one).
fn image_store() -> PathBuf {
    if let Some(p) = std::env::var_os("STELE_VM_IMAGES") {
        return PathBuf::from(p);
    }
    let state = if let Some(p) = std::env::var_os("STELE_STATE_DIR") {
        PathBuf::from(p)
    } else if let Some(p) = std::env::var_os("XDG_STATE_HOME") {
        PathBuf::from(p).join("stele")
    } else {
        PathBuf::from(std::env::var_os("HOME").unwrap()).join(".local/state/stele")
    };
    state.join("vm/images")
}

#[test]
fn run_with_the_vm_backend() {
    let images = image_store();
    assert!(
        images.join("current").exists(),
        "no guest image in {} (scripts/setup-vm builds it)",
        images.display()
    );
    let d = tempfile::tempdir().unwrap();
    let ws = d.path().join("ws");
    std::fs::create_dir_all(ws.join("reports")).unwrap();
    std::fs::create_dir_all(ws.join("receipts")).unwrap();
    std::fs::write(ws.join("receipts/in.txt"), "3\n4\n").unwrap();
    let s = Stele::new(&d.path().join("state"));
    let o = s
        .run(&["keys", "init", "--origin", "vm.stele.invalid/log"])
        .unwrap();
    assert!(o.status.success());
    let mock = MockModel::start().unwrap();
    let py = "import os\nn=sum(int(l) for l in open('receipts/in.txt'))\nopen('reports/sum.txt','w').write(str(n)+' '+os.uname().release+'\\n')\nprint('sum', n)\n";
    mock.push(
        Turn::new()
            .tool_use("t1", "exec", json!({"argv": ["python3", "-c", py]}))
            .into(),
    );
    mock.push(
        Turn::new()
            .tool_use("t2", "final_answer", json!({"answer": "done"}))
            .into(),
    );
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/finance");
    let o = s
        .run_env(
            &[
                "run",
                "--backend",
                "vm",
                "--workspace",
                ws.to_str().unwrap(),
                "--policy",
                policy.to_str().unwrap(),
                "--user",
                "alice",
                "--model",
                "anthropic:claude-sonnet-4-5",
                "Add up receipts/in.txt",
            ],
            &[
                ("ANTHROPIC_API_KEY", "sk-ant-test-0123456789"),
                ("ANTHROPIC_BASE_URL", &mock.base_url()),
                ("STELE_VM_IMAGES", images.to_str().unwrap()),
            ],
        )
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("micro-VM up"), "{err}");
    // Written by the guest (its own kernel) through the mediated workspace.
    let sum = std::fs::read_to_string(ws.join("reports/sum.txt"))
        .unwrap_or_else(|e| panic!("{e}: {err}\n{:?}", mock.requests().last().map(|r| r.text())));
    assert!(sum.starts_with("7 "), "{sum}");
    assert!(
        sum.contains("cloud-amd64"),
        "the guest kernel wrote it: {sum}"
    );
    // The log: backend and image in session.start, the guest's file accesses decided.
    let leaves = leaves_json(&s, &d.path().join("state/audit.db")).unwrap();
    let start = leaves
        .iter()
        .find(|l| l["kind"] == "session.start")
        .unwrap()
        .to_string();
    assert!(start.contains("\"sandbox_backend\":\"microvm\""), "{start}");
    assert!(start.contains("\"vm_image_digest\":\"sha256:"), "{start}");
    let all = serde_json::to_string(&leaves).unwrap();
    assert!(
        all.contains("receipts/in.txt"),
        "guest read decided and logged"
    );
    assert!(
        all.contains("reports/sum.txt"),
        "guest write decided and logged"
    );
    let session = leaves
        .iter()
        .find(|l| l["kind"] == "session.start")
        .unwrap()["session"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    intents_closed_once(&leaves, &session).unwrap();
}
