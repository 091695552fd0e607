//! The workspace's hardening in the micro-VM backend: the guest's file
//! requests reach the same mediated layer over virtio-fs, so the same
//! rules hold — no setuid or setgid bits, files given to the workspace's
//! owner with umask 027, hard links decided under every name, names policy
//! cannot see refused and reported, a hash after every truncate, the write
//! quota, FIFOs that never block the agent's file requests, the root asked
//! about as ".". Checked with `stat` on the host. Needs QEMU and the guest
//! image (`scripts/setup-vm`); without them it fails, never skips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use stele_sandbox::exec::{ExecOutcome, ExecRequest, Sandbox};
use stele_sandbox::fs::WriteQuota;
use stele_sandbox::vm::protocol::FsErrorKind;
use stele_sandbox::vm::{ImageStore, VmSandbox, VmSandboxConfig};
use stele_sandbox::{
    FileAccess, FileChangeReport, FileCloseReport, FileRefusal, FileRequest, Mediator,
    NetCloseReport, NetRequest, NetVerdict, Refusal, RefusalRule, Ticket, Verdict,
};

/// Allows every file access except writes under `receipts/`; records
/// questions, change reports and refusals.
#[derive(Debug, Default)]
struct Recorder {
    files: Mutex<Vec<FileRequest>>,
    changes: Mutex<Vec<FileChangeReport>>,
    refusals: Mutex<Vec<FileRefusal>>,
}

impl Recorder {
    fn refused(&self, rule: RefusalRule) -> Vec<(String, String)> {
        self.refusals
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.rule == rule)
            .map(|r| (r.path.clone(), r.detail.clone()))
            .collect()
    }
}

impl Mediator for Recorder {
    fn file_access(&self, req: &FileRequest) -> Verdict {
        self.files.lock().unwrap().push(req.clone());
        let protected = req.path.starts_with("receipts/")
            && matches!(req.access, FileAccess::Write | FileAccess::Delete);
        if protected {
            Verdict::Deny("receipts are read-only".into())
        } else {
            Verdict::Allow(Ticket(1))
        }
    }
    fn file_closed(&self, _: &FileCloseReport) {}
    fn file_changed(&self, report: &FileChangeReport) {
        self.changes.lock().unwrap().push(*report);
    }
    fn file_refused(&self, refusal: &FileRefusal) -> Refusal {
        self.refusals.lock().unwrap().push(refusal.clone());
        Refusal::new(refusal.reason())
    }
    fn net_connect(&self, _: &NetRequest) -> NetVerdict {
        NetVerdict::Deny("no network here".into())
    }
    fn net_closed(&self, _: &NetCloseReport) {}
}

struct Vm {
    sandbox: VmSandbox,
    recorder: Arc<Recorder>,
    workspace: PathBuf,
}

fn image_store() -> ImageStore {
    if let Some(p) = std::env::var_os("STELE_VM_IMAGES") {
        return ImageStore::at(PathBuf::from(p));
    }
    let state = if let Some(p) = std::env::var_os("STELE_STATE_DIR") {
        PathBuf::from(p)
    } else if let Some(p) = std::env::var_os("XDG_STATE_HOME") {
        PathBuf::from(p).join("stele")
    } else {
        PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".local/state/stele")
    };
    ImageStore::at(state.join("vm/images"))
}

/// The owner the workspace is given (as root): not stele's own user.
const OWNER: (u32, u32) = (12345, 12346);
/// The quota the VM runs with.
const QUOTA: u64 = 1 << 20;

fn vm() -> &'static Vm {
    static VM: OnceLock<Vm> = OnceLock::new();
    VM.get_or_init(|| {
        let image = image_store()
            .current()
            .expect("the guest image must be built by scripts/setup-vm (stele vm image build)");
        let workspace =
            std::env::temp_dir().join(format!("stele-vm-hardening-{}", std::process::id()));
        std::fs::create_dir_all(&workspace).unwrap();
        std::os::unix::fs::chown(&workspace, Some(OWNER.0), Some(OWNER.1)).unwrap();
        let recorder = Arc::new(Recorder::default());
        let mut config = VmSandboxConfig::new(
            &workspace,
            recorder.clone(),
            image,
            env!("CARGO_BIN_EXE_stele-guest"),
        );
        config.workspace_quota = WriteQuota::Bytes(QUOTA);
        let sandbox = VmSandbox::new(config).expect("the VM must boot");
        Vm {
            sandbox,
            recorder,
            workspace,
        }
    })
}

fn sh(vm: &Vm, script: &str) -> (ExecOutcome, String) {
    let out = vm
        .sandbox
        .exec(ExecRequest::new(
            "t",
            vec!["/bin/sh".into(), "-c".into(), script.into()],
        ))
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout.bytes),
        String::from_utf8_lossy(&out.stderr.bytes)
    );
    (out, text)
}

/// Whether the script's `echo NAME=$?` said NAME failed.
fn failed(said: &str, name: &str) -> bool {
    said.lines()
        .filter_map(|l| l.strip_prefix(&format!("{name}=")))
        .any(|code| code != "0")
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn no_setuid_binary_and_new_files_belong_to_the_owner() {
    let vm = vm();
    let (_, said) = sh(
        vm,
        "mkdir -p modes && cd modes && cp /usr/bin/id myid && chmod 4755 myid; echo suid=$?; \
         chmod g+s myid; echo sgid=$?; mkdir -m 2777 d; echo mkdir=$?; \
         umask 0; echo x > f; mkdir e; mkfifo p; echo made=$?",
    );
    for k in ["suid", "sgid", "mkdir"] {
        assert!(failed(&said, k), "{k}: {said}");
    }
    assert!(!failed(&said, "made"), "{said}");
    let d = vm.workspace.join("modes");
    assert_eq!(
        mode(&d.join("myid")) & 0o7000,
        0,
        "{:o}",
        mode(&d.join("myid"))
    );
    assert_eq!(mode(&d.join("d")) & 0o7000, 0);
    assert_eq!(mode(&d.join("f")), 0o640);
    assert_eq!(mode(&d.join("e")), 0o750);
    for name in ["myid", "d", "f", "e", "p"] {
        let m = std::fs::symlink_metadata(d.join(name)).unwrap();
        assert_eq!((m.uid(), m.gid()), OWNER, "{name}");
    }
    assert!(vm
        .recorder
        .refused(RefusalRule::PrivilegedMode)
        .iter()
        .any(|(p, d)| p == "modes/myid" && d == "mode 4755"));
}

#[test]
fn hard_links_cannot_reach_protected_files() {
    let vm = vm();
    let ws = &vm.workspace;
    for d in ["receipts", "reports"] {
        std::fs::create_dir_all(ws.join(d)).unwrap();
    }
    std::fs::write(ws.join("receipts/r1.csv"), "acme,10\n").unwrap();
    std::fs::write(ws.join("receipts/r2.csv"), "globex,20\n").unwrap();
    std::fs::hard_link(ws.join("receipts/r2.csv"), ws.join("reports/r2.csv")).unwrap();
    // The owner's files: the guest kernel lets its user write them, so
    // only the layer can refuse.
    for p in ["receipts", "reports", "receipts/r1.csv", "receipts/r2.csv"] {
        std::os::unix::fs::chown(ws.join(p), Some(OWNER.0), Some(OWNER.1)).unwrap();
    }
    let (_, said) = sh(
        vm,
        "python3 -c \"import os; os.link('receipts/r1.csv','reports/r1.csv')\"; echo link=$?; \
         echo tampered >> reports/r2.csv; echo write=$?; cat reports/r2.csv > /dev/null; echo read=$?",
    );
    assert!(failed(&said, "link") && failed(&said, "write"), "{said}");
    assert!(!failed(&said, "read"), "{said}");
    assert_eq!(
        std::fs::read_to_string(ws.join("receipts/r1.csv")).unwrap(),
        "acme,10\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("receipts/r2.csv")).unwrap(),
        "globex,20\n"
    );
    assert!(!ws.join("reports/r1.csv").exists());
    // Refused by the layer, under the protected names.
    let asked = vm.recorder.files.lock().unwrap().clone();
    for p in ["receipts/r1.csv", "receipts/r2.csv"] {
        assert!(
            asked
                .iter()
                .any(|r| r.access == FileAccess::Write && r.path == p),
            "{p}: {asked:?}"
        );
    }
}

#[test]
fn refusals_hashes_and_the_root() {
    let vm = vm();
    std::fs::create_dir_all(vm.workspace.join("misc")).unwrap();
    std::fs::write(vm.workspace.join("misc/t"), "0123456789").unwrap();
    for p in ["misc", "misc/t"] {
        std::os::unix::fs::chown(vm.workspace.join(p), Some(OWNER.0), Some(OWNER.1)).unwrap();
    }
    let (_, said) = sh(
        vm,
        "ls -a /workspace > /dev/null; echo root=$?; cd misc; touch \"$(printf 'esc\\033x')\"; echo esc=$?; \
         truncate -s 4 t; echo trunc=$?; \
         python3 -c \"import os; os.setxattr('t', 'user.x', b'1')\"; echo xattr=$?",
    );
    assert!(!failed(&said, "root") && !failed(&said, "trunc"), "{said}");
    assert!(failed(&said, "esc") && failed(&said, "xattr"), "{said}");
    let files = vm.recorder.files.lock().unwrap().clone();
    assert!(
        files
            .iter()
            .any(|r| r.access == FileAccess::List && r.path == "."),
        "root asked as ."
    );
    assert!(vm
        .recorder
        .refused(RefusalRule::ControlCharacter)
        .iter()
        .any(|(p, _)| p == "misc/esc\\u{1b}x"));
    assert!(!vm
        .recorder
        .refused(RefusalRule::ExtendedAttribute)
        .is_empty());
    let want = ring::digest::digest(&ring::digest::SHA256, b"0123");
    assert!(vm
        .recorder
        .changes
        .lock()
        .unwrap()
        .iter()
        .any(|c| c.sha256_after.map(|h| h.to_vec()) == Some(want.as_ref().to_vec())));
}

#[test]
fn the_quota_holds_and_fifos_do_not_block_file_requests() {
    let vm = vm();
    let (_, said) = sh(
        vm,
        "mkdir -p q && dd if=/dev/zero of=q/big bs=64k count=40 2>&1; echo dd=$?; mkfifo q/pipe; echo fifo=$?",
    );
    assert!(said.contains("quota exceeded"), "{said}");
    let usage = vm.sandbox.workspace_usage().unwrap();
    assert!(usage.bytes_written <= QUOTA, "{usage:?}");
    assert!(usage.refused_writes >= 1, "{usage:?}");
    assert!(std::fs::metadata(vm.workspace.join("q/big")).unwrap().len() <= QUOTA);
    assert!(!vm.recorder.refused(RefusalRule::WriteQuota).is_empty());
    // The agent's own file request on the FIFO is refused at once.
    let started = std::time::Instant::now();
    let e = vm.sandbox.files().read("q/pipe", 0, 10).unwrap_err();
    assert_eq!(
        e.fs_error().map(|e| e.kind),
        Some(FsErrorKind::NotAFile),
        "{e}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(vm
        .recorder
        .refused(RefusalRule::NotRegular)
        .iter()
        .any(|(p, _)| p == "q/pipe"));
}

#[test]
fn the_agents_file_requests_report_their_refusals() {
    let vm = vm();
    std::os::unix::fs::symlink("/etc", vm.workspace.join("etc-link")).unwrap();
    let files = vm.sandbox.files();
    for (path, rule, kind) in [
        ("../etc/passwd", RefusalRule::ParentDir, FsErrorKind::Escape),
        ("/etc/passwd", RefusalRule::Absolute, FsErrorKind::Escape),
        (
            "etc-link/passwd",
            RefusalRule::SymlinkEscape,
            FsErrorKind::Escape,
        ),
        // Through virtio-fs to the layer, which refuses the name.
        (
            "esc\u{1b}[2J",
            RefusalRule::ControlCharacter,
            FsErrorKind::PermissionDenied,
        ),
    ] {
        let e = files.read(path, 0, 10).unwrap_err();
        assert_eq!(e.fs_error().map(|e| e.kind), Some(kind), "{path}: {e}");
        assert!(
            !vm.recorder.refused(rule).is_empty(),
            "{path}: {rule:?} not reported"
        );
    }
    // Nothing of /etc came back, and no access was put to policy for them.
    let asked = vm.recorder.files.lock().unwrap().clone();
    assert!(
        !asked.iter().any(|r| r.path.contains("passwd")),
        "{asked:?}"
    );
}
