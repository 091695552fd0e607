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
    // Two more commands in the same session (python3: the finance policy's
    // programs): the VM is kept warm, so both see the same guest boot.
    for (id, out) in [("t1b", "reports/boot1.txt"), ("t1c", "reports/boot2.txt")] {
        let py = format!("open('{out}','w').write(open('/proc/sys/kernel/random/boot_id').read())");
        mock.push(
            Turn::new()
                .tool_use(id, "exec", json!({"argv": ["python3", "-c", py]}))
                .into(),
        );
    }
    mock.push(
        Turn::new()
            .tool_use("t2", "final_answer", json!({"answer": "done"}))
            .into(),
    );
    let policy = stele_tests::mock_template("finance");
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
    let boot1 = std::fs::read_to_string(ws.join("reports/boot1.txt")).unwrap();
    let boot2 = std::fs::read_to_string(ws.join("reports/boot2.txt")).unwrap();
    assert_eq!(boot1.trim().len(), 36, "a guest boot id: {boot1:?}");
    assert_eq!(
        boot1, boot2,
        "one warm VM serves every command of a session"
    );
    assert_eq!(
        err.matches("micro-VM up").count(),
        1,
        "one boot per session: {err}"
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
    // …and how QEMU itself was jailed.
    let start_v = leaves
        .iter()
        .find(|l| l["kind"] == "session.start")
        .unwrap();
    let jail = &start_v["data"]["vm_jail"];
    assert!(jail["namespaces"].to_string().contains("mount"), "{start}");
    assert_eq!(jail["capabilities"], "none", "{start}");
    assert!(jail["landlock_abi"].as_u64().unwrap() >= 1, "{start}");
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

fn keys(s: &Stele) {
    let o = s
        .run(&["keys", "init", "--origin", "vm.stele.invalid/log"])
        .unwrap();
    assert!(o.status.success());
}

/// The predicate of the session attestation `stele` stored beside `db`.
fn attestation(db: &Path, session: &str) -> serde_json::Value {
    use base64::Engine;
    let dir = PathBuf::from(format!("{}.attestations", db.display()));
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains(session))
        .unwrap_or_else(|| panic!("no attestation for {session} in {}", dir.display()));
    let env: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(file).unwrap().trim()).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(env["payload"].as_str().unwrap())
        .unwrap();
    let statement: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    statement["predicate"].clone()
}

fn last_start(leaves: &[serde_json::Value]) -> &serde_json::Value {
    leaves
        .iter()
        .rev()
        .find(|l| l["kind"] == "session.start")
        .unwrap()
}

#[test]
fn a_vm_that_does_not_come_up_is_an_error_unless_fallback_is_configured() {
    let images = image_store();
    let d = tempfile::tempdir().unwrap();
    let ws = d.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let s = Stele::new(&d.path().join("state"));
    keys(&s);
    let db = d.path().join("state/audit.db");
    let policy = stele_tests::mock_template("finance");
    let exec = |config: &str, images: &Path, extra: &[&str]| {
        let cfg = d.path().join("config.toml");
        std::fs::write(&cfg, config).unwrap();
        let mut args = vec![
            "sandbox",
            "exec",
            "--workspace",
            ws.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--user",
            "alice",
            "--approve",
            "deny",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "python3", "-c", "print('ran')"]);
        s.run_env(
            &args,
            &[
                ("STELE_CONFIG", cfg.to_str().unwrap()),
                ("STELE_VM_IMAGES", images.to_str().unwrap()),
            ],
        )
        .unwrap()
    };

    // The config's default backend is the VM; with no image it cannot come
    // up, and without a configured fallback that is an error, in the log too.
    let no_images = d.path().join("no-images");
    std::fs::create_dir_all(&no_images).unwrap();
    let o = exec("backend = \"vm\"\n", &no_images, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("micro-VM did not come up"), "{err}");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("ran"));
    let leaves = leaves_json(&s, &db).unwrap();
    let start = last_start(&leaves);
    assert_eq!(start["data"]["sandbox_backend"], "microvm", "{start}");
    assert!(
        start["data"]["sandbox_error"]
            .as_str()
            .unwrap()
            .contains("no guest image"),
        "{start}"
    );
    let id = start["session"]["id"].clone();
    let end = leaves
        .iter()
        .find(|l| l["kind"] == "session.end" && l["session"]["id"] == id)
        .unwrap();
    assert_eq!(end["outcome"]["status"], "error", "{end}");
    assert!(!leaves
        .iter()
        .any(|l| l["kind"] == "exec.start" && l["session"]["id"] == id));

    // Allowed by the config: a VM that does not come up within its timeout
    // (1 s; a TCG boot takes seconds) gives way to the process sandbox,
    // with a warning, and the log and attestation say what ran and why.
    let o = exec(
        "backend = \"vm\"\nvm_fallback = \"process\"\nvm_boot_timeout_secs = 1\n",
        &images,
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "ran", "{err}");
    assert!(
        err.contains("WARNING: the micro-VM did not come up"),
        "{err}"
    );
    let leaves = leaves_json(&s, &db).unwrap();
    let start = last_start(&leaves);
    let data = &start["data"];
    assert_eq!(data["sandbox_backend"], "process", "{start}");
    assert_eq!(data["sandbox_backend_requested"], "microvm", "{start}");
    let reason = data["sandbox_fallback"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("did not come up within 1000 ms"),
        "{reason}"
    );
    let id = start["session"]["id"].as_str().unwrap().to_string();
    assert!(leaves
        .iter()
        .any(|l| l["kind"] == "exec.start" && l["session"]["id"] == id.as_str()));
    let att = attestation(&db, &id);
    assert_eq!(att["sandbox"]["backend"], "process", "{att}");
    assert_eq!(
        att["sandbox"]["sandbox_backend_requested"], "microvm",
        "{att}"
    );
    assert!(
        att["sandbox"]["sandbox_fallback"]["reason"].is_string(),
        "{att}"
    );

    // A managed configuration that forbids the fallback cannot be overridden by a flag.
    let managed = d.path().join("managed.toml");
    std::fs::write(&managed, "vm_fallback = \"none\"\n").unwrap();
    let cfg = d.path().join("config.toml");
    std::fs::write(&cfg, "backend = \"vm\"\n").unwrap();
    let o = s
        .run_env(
            &[
                "sandbox",
                "exec",
                "--workspace",
                ws.to_str().unwrap(),
                "--vm-fallback",
                "process",
                "--",
                "true",
            ],
            &[
                ("STELE_CONFIG", cfg.to_str().unwrap()),
                ("STELE_MANAGED_CONFIG", managed.to_str().unwrap()),
            ],
        )
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("managed configuration"), "{err}");
}

#[test]
fn resume_reopens_the_session_in_the_vm() {
    let images = image_store();
    let d = tempfile::tempdir().unwrap();
    let ws = d.path().join("ws");
    std::fs::create_dir_all(ws.join("reports")).unwrap();
    let s = Stele::new(&d.path().join("state"));
    keys(&s);
    let mock = MockModel::start().unwrap();
    let uname =
        json!({"argv": ["python3", "-c", "import os; print('kernel', os.uname().release)"]});
    mock.push(Turn::new().tool_use("t1", "exec", uname.clone()).into());
    // Then the model stays down: the session pauses, resumable.
    for _ in 0..5 {
        mock.push(stele_tests::mock_model::Reply::server_error());
    }
    let policy = stele_tests::mock_template("finance");
    let base_url = mock.base_url();
    let env = [
        ("ANTHROPIC_API_KEY", "sk-ant-test-0123456789"),
        ("ANTHROPIC_BASE_URL", base_url.as_str()),
        ("STELE_VM_IMAGES", images.to_str().unwrap()),
    ];
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
                "--model",
                "anthropic:claude-sonnet-4-5",
                "What kernel runs your commands?",
            ],
            &env,
        )
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(75), "paused: {err}");
    let db = d.path().join("state/audit.db");
    let leaves = leaves_json(&s, &db).unwrap();
    let id = last_start(&leaves)["session"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    mock.push(Turn::new().tool_use("t2", "exec", uname).into());
    mock.push(
        Turn::new()
            .tool_use("t3", "final_answer", json!({"answer": "a guest kernel"}))
            .into(),
    );
    let o = s.run_env(&["session", "resume", &id], &env).unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("micro-VM up"), "resumed in a VM: {err}");
    let leaves = leaves_json(&s, &db).unwrap();
    let resumed = leaves
        .iter()
        .find(|l| l["kind"] == "policy.load" && l["data"]["resumed"] == true)
        .unwrap();
    assert_eq!(resumed["data"]["sandbox_backend"], "microvm", "{resumed}");
    assert!(resumed["data"]["vm_image_digest"].is_string(), "{resumed}");
    // Both commands ran in the guest's kernel.
    let last = mock.requests().last().unwrap().text();
    assert_eq!(last.matches("cloud-amd64").count(), 2, "{last}");
    intents_closed_once(&leaves, &id).unwrap();
    let att = attestation(&db, &id);
    assert_eq!(att["sandbox"]["backend"], "microvm", "{att}");
}

#[test]
fn sandbox_check_reports_the_vm_backend() {
    let images = image_store();
    let d = tempfile::tempdir().unwrap();
    let s = Stele::new(&d.path().join("state"));
    let check = |images: &Path, json: bool| {
        let mut args = vec!["sandbox", "check"];
        if json {
            args.push("--json");
        }
        s.run_env(&args, &[("STELE_VM_IMAGES", images.to_str().unwrap())])
            .unwrap()
    };
    // With the image scripts/setup-vm built: QEMU, TCG and the image are
    // found, and the KVM verdict is explained when KVM is not usable.
    let o = check(&images, true);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)));
    let vm = &v["microvm"];
    assert_eq!(vm["tcg"], true, "{vm}");
    assert!(vm["qemu"].is_string(), "{vm}");
    assert!(
        vm["image_digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{vm}"
    );
    if vm["kvm_usable"] == false {
        assert!(
            vm["kvm_detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{vm}"
        );
    }
    assert_eq!(vm["ready"], true, "{vm}");
    // Without an image the backend is reported unavailable, saying why.
    let empty = d.path().join("no-images");
    std::fs::create_dir_all(&empty).unwrap();
    let o = check(&empty, true);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["microvm"]["ready"], false, "{v}");
    assert!(v["microvm"]["image_error"].is_string(), "{v}");
    let o = check(&empty, false);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("micro-VM backend: NOT AVAILABLE"), "{out}");
}

/// The reproduction of issue 12 item 7 (VM): a process that outlived its
/// command kept writing during the next one (entries with `exec: null`).
/// Now a command's whole tree in the guest ends before its result is
/// reported, and `exec.end` carries the group's figures.
#[test]
fn a_guest_process_does_not_outlive_its_command() {
    let images = image_store();
    assert!(images.join("current").exists(), "no guest image");
    let d = tempfile::tempdir().unwrap();
    let ws = d.path().join("ws");
    std::fs::create_dir_all(ws.join("reports")).unwrap();
    let s = Stele::new(&d.path().join("state"));
    keys(&s);
    let mock = MockModel::start().unwrap();
    // A grandchild in a new session (double fork + setsid) that writes a
    // second after its command has returned.
    let escape = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(1)\n        open('reports/late.txt', 'w').write('late')\n        os._exit(0)\n    os._exit(0)\nprint('started')\n";
    mock.push(
        Turn::new()
            .tool_use("t1", "exec", json!({"argv": ["python3", "-c", escape]}))
            .into(),
    );
    mock.push(
        Turn::new()
            .tool_use(
                "t2",
                "exec",
                json!({"argv": ["python3", "-c", "import time; time.sleep(2.5); print('next')"]}),
            )
            .into(),
    );
    mock.push(
        Turn::new()
            .tool_use("t3", "final_answer", json!({"answer": "done"}))
            .into(),
    );
    let policy = stele_tests::mock_template("finance");
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
                "--limit",
                "command_processes=64",
                "Start a helper",
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
    assert!(
        !ws.join("reports/late.txt").exists(),
        "the escapee wrote after its command"
    );
    let leaves = leaves_json(&s, &d.path().join("state/audit.db")).unwrap();
    // No file access at all under that name (the script's own text is in
    // its exec.start).
    let late: Vec<&serde_json::Value> = leaves
        .iter()
        .filter(|l| {
            l["target"]["path"]
                .as_str()
                .is_some_and(|p| p.contains("late.txt"))
        })
        .collect();
    assert!(late.is_empty(), "entries for the escapee's write: {late:?}");
    let ends: Vec<&serde_json::Value> = leaves.iter().filter(|l| l["kind"] == "exec.end").collect();
    assert_eq!(ends.len(), 2, "two commands ran");
    for e in &ends {
        let r = &e["data"]["resources"];
        assert_eq!(r["limits"]["processes"], 64, "{e}");
        assert!(
            r["processes_peak"].is_u64() || r["cpu_system_ms"].is_u64(),
            "{e}"
        );
        // The VM as a whole: QEMU's group on the host.
        assert!(
            e["data"]["session_resources"]["memory_peak_bytes"].is_u64(),
            "{e}"
        );
    }
    let start = last_start(&leaves);
    assert!(
        start["data"]["sandbox_resources"]["cgroups"].is_string(),
        "{start}"
    );
}
