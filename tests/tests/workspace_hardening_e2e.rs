#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The mediated workspace against a hostile program, through the `stele`
//! binary (real gate, real log), in both backends: no setuid binary or
//! setgid folder reaches the host, files are the workspace owner's with a
//! sane mode, hard links cannot reach what the finance policy protects,
//! the root is the policy resource ".", every refusal is a denied
//! `policy.decision` naming its rule, a truncate leaves a hash, the write
//! quota holds (flag and config) and is reported in `exec.end` and
//! `sandbox check`, stat'ing thousands of files leaves stele working, and a
//! FIFO never hangs a run. The micro-VM cases need QEMU and the guest image
//! (`scripts/setup-vm`) and fail without them.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{json, Value};
use stele_tests::mock_model::{MockModel, Turn};
use stele_tests::{intents_closed_once, leaves_json, sandbox_available, Stele};

/// The host user the workspaces belong to (not stele's own, root).
const OWNER: (u32, u32) = (12345, 12346);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Process,
    Vm,
}

impl Backend {
    fn args(self) -> Vec<&'static str> {
        match self {
            Backend::Process => vec!["--backend", "process"],
            Backend::Vm => vec!["--backend", "vm"],
        }
    }
}

/// The image store `scripts/setup-vm` filled (the default state folder).
fn images() -> PathBuf {
    if let Some(p) = std::env::var_os("STELE_VM_IMAGES") {
        return PathBuf::from(p);
    }
    PathBuf::from(std::env::var_os("HOME").unwrap()).join(".local/state/stele/vm/images")
}

fn stele(dir: &Path) -> Stele {
    let s = Stele::new(&dir.join("state"));
    let o = s
        .run(&["keys", "init", "--origin", "hardening.stele.invalid/log"])
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    s
}

/// `folders` in a workspace, all the owner's.
fn workspace(dir: &Path, folders: &[&str]) -> PathBuf {
    let ws = dir.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    chown(&ws);
    for f in folders {
        std::fs::create_dir_all(ws.join(f)).unwrap();
        chown(&ws.join(f));
    }
    ws
}

fn chown(p: &Path) {
    std::os::unix::fs::chown(p, Some(OWNER.0), Some(OWNER.1)).unwrap();
}

fn finance() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/finance")
}

/// `stele sandbox exec` of `python3 -c CODE` for alice.
fn exec(
    s: &Stele,
    ws: &Path,
    policy: &Path,
    backend: Backend,
    extra: &[&str],
    code: &str,
) -> Output {
    let mut args = vec!["sandbox", "exec", "--workspace", ws.to_str().unwrap()];
    args.extend(["--policy", policy.to_str().unwrap(), "--user", "alice"]);
    args.extend(backend.args());
    args.extend(extra);
    args.extend(["--", "python3", "-c", code]);
    s.run_env(&args, &[("STELE_VM_IMAGES", images().to_str().unwrap())])
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn leaves(s: &Stele) -> Vec<Value> {
    let l = leaves_json(s, &s.state.join("audit.db")).unwrap();
    for start in l.iter().filter(|e| e["kind"] == "session.start") {
        intents_closed_once(&l, start["session"]["id"].as_str().unwrap()).unwrap();
    }
    l
}

/// The denied `policy.decision` entries whose refusal rule is `rule`.
fn refusals<'a>(leaves: &'a [Value], rule: &str) -> Vec<&'a Value> {
    leaves
        .iter()
        .filter(|e| e["kind"] == "policy.decision" && e["data"]["refusal"]["rule"] == rule)
        .inspect(|e| {
            assert_eq!(e["outcome"]["status"], "denied", "{e}");
            assert_eq!(e["decision"]["effect"], "deny", "{e}");
        })
        .collect()
}

/// Python that tries each named step and prints `name=ok` or the errno name.
const TRY: &str = "import errno, os, stat\n\
def t(name, f):\n\
\x20   try:\n\
\x20       f(); print(name + '=ok')\n\
\x20   except OSError as e:\n\
\x20       print(name + '=' + errno.errorcode[e.errno])\n";

fn setuid_case(backend: Backend) {
    let d = tempfile::tempdir().unwrap();
    let s = stele(d.path());
    let ws = workspace(d.path(), &[]);
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/strict-default");
    // The reproduction (cp + chmod 4755, a setgid world-writable folder),
    // and its variants.
    let code = format!(
        "{TRY}import shutil\nshutil.copy('/usr/bin/id', 'myid')\n\
         t('chmod4755', lambda: os.chmod('myid', 0o4755))\n\
         t('chmod2755', lambda: os.chmod('myid', 0o2755))\n\
         os.mkdir('d', 0o777)\n\
         t('setgid_dir', lambda: os.chmod('d', 0o2777))\n\
         t('create6777', lambda: os.close(os.open('c', os.O_CREAT | os.O_WRONLY, 0o6777)))\n\
         t('mkdir2777', lambda: os.mkdir('e', 0o2777))\n\
         os.umask(0)\n\
         t('plain', lambda: open('plain', 'w').write('x'))\n\
         t('chown', lambda: os.chown('plain', 1, 1))\n"
    );
    let o = exec(&s, &ws, &policy, backend, &[], &code);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for k in ["chmod4755", "chmod2755", "setgid_dir"] {
        assert!(
            out.contains(&format!("{k}=EPERM")),
            "{backend:?} {k}: {out}"
        );
    }
    for k in ["create6777", "mkdir2777", "plain"] {
        assert!(out.contains(&format!("{k}=ok")), "{backend:?} {k}: {out}");
    }
    assert!(!out.contains("chown=ok"), "{backend:?}: {out}");
    // On the host: no special bits, the owner's files, umask 027.
    // (shutil.copy copies the mode bits it may: 0755.)
    for (name, mode) in [
        ("myid", 0o755),
        ("d", 0o750),
        ("c", 0o750),
        ("e", 0o750),
        ("plain", 0o640),
    ] {
        let m = std::fs::metadata(ws.join(name)).unwrap();
        assert_eq!(
            m.mode() & 0o7777,
            mode,
            "{backend:?} {name}: {:o}",
            m.mode()
        );
        assert_eq!((m.uid(), m.gid()), OWNER, "{backend:?} {name}");
    }
    // Each refused chmod is a denied decision naming its rule.
    let l = leaves(&s);
    let privileged = refusals(&l, "file.privileged_mode");
    assert!(
        privileged
            .iter()
            .any(|e| e["target"]["path"] == "myid" && e["data"]["refusal"]["detail"] == "mode 4755"),
        "{backend:?}: {privileged:?}"
    );
    assert!(
        privileged.iter().any(|e| e["target"]["path"] == "d"),
        "{backend:?}"
    );
}

#[test]
fn no_setuid_binary_or_setgid_folder_reaches_the_host_process() {
    if !sandbox_available("no_setuid_binary_or_setgid_folder_reaches_the_host_process") {
        return;
    }
    setuid_case(Backend::Process);
}

#[test]
fn no_setuid_binary_or_setgid_folder_reaches_the_host_vm() {
    setuid_case(Backend::Vm);
}

fn hard_link_case(backend: Backend) {
    let d = tempfile::tempdir().unwrap();
    let s = stele(d.path());
    let ws = workspace(d.path(), &["receipts", "reports"]);
    for (name, body) in [("r1.csv", "acme,10\n"), ("r2.csv", "globex,20\n")] {
        std::fs::write(ws.join("receipts").join(name), body).unwrap();
        chown(&ws.join("receipts").join(name));
    }
    // A link made before the session: reports/r2.csv is receipts/r2.csv.
    std::fs::hard_link(ws.join("receipts/r2.csv"), ws.join("reports/r2.csv")).unwrap();
    let code = format!(
        "{TRY}t('link', lambda: os.link('receipts/r1.csv', 'reports/r1.csv'))\n\
         t('write_alias', lambda: open('reports/r2.csv', 'a').write('tampered'))\n\
         t('truncate_alias', lambda: os.truncate('reports/r2.csv', 0))\n\
         t('read_receipt', lambda: open('receipts/r1.csv').read())\n"
    );
    let o = exec(&s, &ws, &finance(), backend, &[], &code);
    let out = text(&o);
    for k in ["link", "write_alias", "truncate_alias"] {
        assert!(
            out.contains(&format!("{k}=EACCES")),
            "{backend:?} {k}: {out}"
        );
    }
    assert!(out.contains("read_receipt=ok"), "{backend:?}: {out}");
    assert_eq!(
        std::fs::read_to_string(ws.join("receipts/r1.csv")).unwrap(),
        "acme,10\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("receipts/r2.csv")).unwrap(),
        "globex,20\n"
    );
    assert!(!ws.join("reports/r1.csv").exists());
    // The log shows the writes refused under the names the policy protects.
    let l = leaves(&s);
    for path in ["receipts/r1.csv", "receipts/r2.csv"] {
        assert!(
            l.iter().any(|e| e["kind"] == "policy.decision"
                && e["target"]["path"] == path
                && e["decision"]["effect"] == "deny"
                && e["decision"]["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("file.write")),
            "{backend:?}: no denied write of {path}"
        );
    }
}

#[test]
fn hard_links_cannot_reach_what_the_finance_policy_protects_process() {
    if !sandbox_available("hard_links_cannot_reach_what_the_finance_policy_protects_process") {
        return;
    }
    hard_link_case(Backend::Process);
}

#[test]
fn hard_links_cannot_reach_what_the_finance_policy_protects_vm() {
    hard_link_case(Backend::Vm);
}

fn quota_case(backend: Backend) {
    let d = tempfile::tempdir().unwrap();
    let s = stele(d.path());
    let ws = workspace(d.path(), &[]);
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/strict-default");
    let code = format!(
        "{TRY}open('t', 'w').write('0123456789')\n\
         f = open('big', 'wb', buffering=0)\n\
         t('fill', lambda: [f.write(b'x' * 65536) for _ in range(40)])\n\
         f.close()\n\
         t('grow', lambda: os.truncate('big', 100 << 20))\n\
         t('shrink', lambda: os.truncate('t', 4))\n"
    );
    let o = exec(
        &s,
        &ws,
        &policy,
        backend,
        &["--workspace-quota", "1MiB"],
        &code,
    );
    let out = text(&o);
    assert!(
        out.contains("fill=EDQUOT") && out.contains("grow=EDQUOT"),
        "{backend:?}: {out}"
    );
    assert!(out.contains("shrink=ok"), "{backend:?}: {out}");
    assert!(std::fs::metadata(ws.join("big")).unwrap().len() <= 1 << 20);
    let l = leaves(&s);
    assert!(
        !refusals(&l, "workspace.write_quota").is_empty(),
        "{backend:?}"
    );
    let end = l.iter().rev().find(|e| e["kind"] == "exec.end").unwrap();
    assert_eq!(end["data"]["workspace_write_quota"], 1 << 20, "{end}");
    let written = end["data"]["workspace_bytes_written"].as_u64().unwrap();
    assert!((1 << 19..=1 << 20).contains(&written), "{end}");
    assert!(
        end["data"]["workspace_writes_refused"].as_u64().unwrap() >= 2,
        "{end}"
    );
    let start = l.iter().find(|e| e["kind"] == "session.start").unwrap();
    assert_eq!(start["data"]["workspace_write_quota"], 1 << 20, "{start}");
    // The truncate's result carries the hash of what it left.
    let sha_0123 = "1be2e452b46d7a0d9656bbb1f768e8248eba1b75baed65f5d99eafa948899a6a";
    assert!(
        l.iter().any(|e| e["kind"] == "file.close"
            && e["data"]["op"] == "setattr"
            && e["data"]["sha256_after_write"] == sha_0123),
        "{backend:?}: no hash after the truncate"
    );
}

#[test]
fn the_write_quota_holds_and_is_reported_process() {
    if !sandbox_available("the_write_quota_holds_and_is_reported_process") {
        return;
    }
    quota_case(Backend::Process);
}

#[test]
fn the_write_quota_holds_and_is_reported_vm() {
    quota_case(Backend::Vm);
}

#[test]
fn the_quota_comes_from_the_config_and_sandbox_check_shows_it() {
    if !sandbox_available("the_quota_comes_from_the_config_and_sandbox_check_shows_it") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let s = stele(d.path());
    let ws = workspace(d.path(), &[]);
    let config = d.path().join("config.toml");
    std::fs::write(&config, "workspace_write_quota = \"64KiB\"\n").unwrap();
    let cfg = [("STELE_CONFIG", config.to_str().unwrap())];
    let o = s.run_env(&["sandbox", "check", "--json"], &cfg).unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["workspace_write_quota"], 65536, "{v}");
    let o = s.run_env(&["sandbox", "check"], &cfg).unwrap();
    assert!(
        text(&o).contains("workspace write quota: 64 KiB per session"),
        "{}",
        text(&o)
    );
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/strict-default");
    let args = [
        "sandbox",
        "exec",
        "--workspace",
        ws.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--",
        "python3",
        "-c",
        "open('f', 'wb').write(b'x' * 100000)",
    ];
    let o = s.run_env(&args, &cfg).unwrap();
    assert!(text(&o).contains("Disk quota exceeded"), "{}", text(&o));
    // A value that is no size is refused with the file and line.
    std::fs::write(&config, "\nworkspace_write_quota = \"lots\"\n").unwrap();
    let o = s.run_env(&args, &cfg).unwrap();
    assert!(!o.status.success());
    let err = text(&o);
    assert!(
        err.contains("line 2") && err.contains("invalid write quota"),
        "{err}"
    );
}

#[test]
fn the_root_is_the_policy_resource_dot() {
    if !sandbox_available("the_root_is_the_policy_resource_dot") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let s = stele(d.path());
    let ws = workspace(d.path(), &["receipts", "reports"]);
    // The finance template lets its members list "."; `ls -a` works.
    let code = format!("{TRY}t('root', lambda: print(sorted(os.listdir('.'))))\n");
    let o = exec(&s, &ws, &finance(), Backend::Process, &[], &code);
    assert!(text(&o).contains("['receipts', 'reports']"), "{}", text(&o));
    // Without "." in the rule, listing the root is a denied decision on ".".
    let policy = d.path().join("policy");
    copy_dir(&finance(), &policy);
    let team = policy.join("teams/finance/finance.cedar");
    let rules = std::fs::read_to_string(&team).unwrap();
    assert!(rules.contains(r#"["." , "receipts", "reports", "outbox"]"#));
    std::fs::write(
        &team,
        rules.replace(
            r#"["." , "receipts", "reports", "outbox"]"#,
            r#"["receipts", "reports", "outbox"]"#,
        ),
    )
    .unwrap();
    let o = exec(&s, &ws, &policy, Backend::Process, &[], &code);
    assert!(text(&o).contains("root=EACCES"), "{}", text(&o));
    let l = leaves(&s);
    let on_root: Vec<&Value> = l
        .iter()
        .filter(|e| e["kind"] == "policy.decision" && e["target"]["path"] == ".")
        .collect();
    assert!(
        on_root.iter().any(|e| e["decision"]["effect"] == "allow"),
        "{on_root:?}"
    );
    assert!(
        on_root.iter().any(|e| e["decision"]["effect"] == "deny"),
        "{on_root:?}"
    );
    assert!(
        !l.iter().any(|e| e["target"]["path"] == ""),
        "no entry names the root \"\""
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn a_run_lists_the_root_and_every_refusal_is_a_denied_decision() {
    if !sandbox_available("a_run_lists_the_root_and_every_refusal_is_a_denied_decision") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let s = stele(d.path());
    let ws = workspace(d.path(), &["data"]);
    std::fs::write(ws.join("data/sales.csv"), "region,total\nnorth,12\n").unwrap();
    chown(&ws.join("data/sales.csv"));
    let mock = MockModel::start().unwrap();
    let calls = [
        ("l1", "file_list", json!({})),
        ("l2", "file_list", json!({"path": "."})),
        ("l3", "file_list", json!({"path": ""})),
        ("l4", "file_list", json!({"path": "./"})),
        ("s1", "file_search", json!({"query": "north"})),
        // A program makes a FIFO; reading it must not hang the run.
        (
            "x1",
            "exec",
            json!({"argv": ["python3", "-c", "import os; os.mkfifo('data/pipe')"]}),
        ),
        ("f1", "file_read", json!({"path": "data/pipe"})),
        ("e1", "file_read", json!({"path": "../../etc/passwd"})),
        ("e2", "file_read", json!({"path": "/etc/passwd"})),
        (
            "e3",
            "file_write",
            json!({"path": "data/\u{1b}[2Jx", "content": "x"}),
        ),
    ];
    for (id, name, input) in &calls {
        mock.push(Turn::new().tool_use(id, name, input.clone()).into());
    }
    mock.push(
        Turn::new()
            .tool_use("done", "final_answer", json!({"answer": "done"}))
            .into(),
    );
    // The template pins Anthropic's API; this copy allows the mock on this machine.
    let policy = stele_tests::mock_template("strict-default");
    let started = std::time::Instant::now();
    let o = s
        .run_env(
            &[
                "run",
                "--workspace",
                ws.to_str().unwrap(),
                "--policy",
                policy.to_str().unwrap(),
                "--model",
                "anthropic:claude-sonnet-4-5",
                "--max-seconds",
                "300",
                "Look around",
            ],
            &[
                ("ANTHROPIC_API_KEY", "sk-ant-test-hardening-0123456789"),
                ("ANTHROPIC_BASE_URL", &mock.base_url()),
            ],
        )
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(started.elapsed() < std::time::Duration::from_secs(240));
    // What the model was told, call by call.
    let told = |id: &str| -> String {
        for r in mock.requests().iter().rev() {
            for m in r.json()["messages"].as_array().unwrap() {
                for c in m["content"].as_array().into_iter().flatten() {
                    if c["type"] == "tool_result" && c["tool_use_id"] == id {
                        return match &c["content"] {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                    }
                }
            }
        }
        panic!("no result for {id}")
    };
    for id in ["l1", "l2", "l3", "l4"] {
        let t = told(id);
        assert!(t.contains("data"), "{id}: {t}");
        assert!(!t.contains("refused"), "{id}: {t}");
    }
    assert!(
        told("s1").contains("data/sales.csv:2: north,12"),
        "{}",
        told("s1")
    );
    let l = leaves(&s);
    for (id, rule) in [
        ("f1", "file.not_regular"),
        ("e1", "path.parent_dir"),
        ("e2", "path.absolute"),
        ("e3", "path.control_character"),
    ] {
        let v: Value = serde_json::from_str(&told(id)).unwrap();
        assert_eq!(v["error"], "refused", "{id}: {v}");
        assert_eq!(v["rule"], rule, "{id}: {v}");
        let entry = &l[v["audit_entry"].as_u64().unwrap() as usize];
        assert_eq!(entry["kind"], "policy.decision", "{id}: {entry}");
        assert_eq!(entry["outcome"]["status"], "denied", "{id}: {entry}");
        assert_eq!(entry["data"]["refusal"]["rule"], rule, "{id}: {entry}");
        // The tool call's result is a denial too.
        let result = l
            .iter()
            .find(|e| e["kind"] == "tool.result" && e["data"]["tool_use_id"] == *id)
            .unwrap();
        assert_eq!(result["outcome"]["status"], "denied", "{id}: {result}");
    }
    // The escape sequence never reaches the log raw.
    assert!(!l.iter().any(|e| e.to_string().contains('\u{1b}')));
}

#[test]
fn stating_thousands_of_files_leaves_stele_working() {
    if !sandbox_available("stating_thousands_of_files_leaves_stele_working") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let s = stele(d.path());
    let ws = workspace(d.path(), &[]);
    // Two layouts: six directories of 500 files, and one of 3,000, where
    // the entries the file server has the kernel drop are in the very
    // directory the walk is looking up in (the kernel holds its lock).
    for i in 0..3000 {
        let dir = ws.join(format!("d{}", i / 500));
        if i % 500 == 0 {
            std::fs::create_dir(&dir).unwrap();
            chown(&dir);
        }
        std::fs::File::create(dir.join(format!("f{i}"))).unwrap();
    }
    let flat = ws.join("flat");
    std::fs::create_dir(&flat).unwrap();
    chown(&flat);
    for i in 0..3000 {
        std::fs::File::create(flat.join(format!("f{i}"))).unwrap();
    }
    let mock = MockModel::start().unwrap();
    let walk = "import os\nn=0\nfor r, ds, fs in os.walk('.'):\n    for f in fs:\n        os.stat(os.path.join(r, f)); n += 1\nprint('stat', n)";
    for id in ["w1", "w2"] {
        mock.push(
            Turn::new()
                .tool_use(id, "exec", json!({"argv": ["python3", "-c", walk]}))
                .into(),
        );
    }
    mock.push(
        Turn::new()
            .tool_use("done", "final_answer", json!({"answer": "done"}))
            .into(),
    );
    // The template pins Anthropic's API; this copy allows the mock on this machine.
    let policy = stele_tests::mock_template("strict-default");
    // stele starts with fewer descriptors than there are files (and, where
    // it lacks CAP_SYS_RESOURCE, cannot raise the limit: its file server
    // then keeps to half of it by having the kernel forget entries).
    let o = std::process::Command::new("prlimit")
        .arg("--nofile=1024:1024")
        .arg(stele_tests::stele_bin())
        .args([
            "run",
            "--workspace",
            ws.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--model",
            "anthropic:claude-sonnet-4-5",
            "--max-seconds",
            "900",
            "Walk",
        ])
        .env("STELE_STATE_DIR", &s.state)
        .env("USER", "alice")
        .env("ANTHROPIC_API_KEY", "sk-ant-test-hardening-0123456789")
        .env("ANTHROPIC_BASE_URL", mock.base_url())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let reqs = mock.requests();
    let last = reqs.last().unwrap().text();
    // Both walks saw every file: the second command ran as well as the first.
    assert_eq!(last.matches("stat 6000").count(), 2, "{last}");
}
