#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The egress proxy end to end: the real `stele` binary, the real sandbox
//! (process backend and micro-VM), the host's real resolver (with a hosts
//! file of our own, bind-mounted in a private mount namespace) and real
//! services on the host's loopback.
//!
//! - Every spelling of a loopback, private or link-local destination —
//!   IPv4-mapped and -compatible IPv6, the unspecified addresses, decimal,
//!   octal, hexadecimal and short IPv4, trailing dots, full-width digits,
//!   names that resolve inside — is refused by the default class rule, each
//!   attempt a logged decision with the address and its class, and the
//!   service on loopback sees no connection; the one destination the policy
//!   allows explicitly is reached (so the test can fail).
//! - `stele policy explain` canonicalises and decides every spelling as the
//!   proxy did.
//! - Under `--network none`, programs that honour the proxy variables
//!   (curl, python's urllib, pip) leave a denied `net.connect` decision.
//! - Installing a package (`pip install` from a venv, into the workspace's
//!   `.venv/`) from a local PEP 503 index the policy allows shows in the log
//!   as `net.connect` decisions and `net.close` reports whose bytes cover
//!   the wheel; the package imports afterwards; nothing lands in the image.
//! - The same for `npm install` (into the workspace's `node_modules/`) from
//!   a local npm registry, and a refused registry leaves a denied decision.
//!
//! Needs root (mount namespaces), the process sandbox, and for the VM cases
//! QEMU and the guest image from `scripts/setup-vm`; fails without them.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use stele_tests::{leaves_json, stele_bin, Stele};

mod package_index;

/// Counts connections to a port on the host's loopback.
struct Service {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Service {
    fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let n = accepted.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                n.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                    let mut b = [0u8; 512];
                    let _ = s.read(&mut b);
                });
            }
        });
        Self { port, accepted }
    }

    fn count(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

const HOSTS: &str = "\
127.0.0.1 localhost
10.0.0.5 db.test
172.16.4.4 corp.test
192.168.1.9 home.test
fd00::5 ula.test
::ffff:169.254.169.254 mapped.test
169.254.169.254 meta.test
100.64.0.1 cgnat.test
127.0.0.1 loop.test
0.0.0.0 zero.test
::1 six.test
127.0.0.1 allowed.test
10.0.0.7 xn--bcher-kva.example
";

/// Spellings of destinations the class rule must refuse (literals).
const LITERALS: &[&str] = &[
    "127.0.0.1",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::127.0.0.1]",
    "[0:0:0:0:0:ffff:7f00:1]",
    "0.0.0.0",
    "0",
    "[::]",
    "[::1]",
    "2130706433",
    "0x7f000001",
    "0x7f.1",
    "0177.0.0.1",
    "127.1",
    "127.0.1",
    "127.0.0.1.",
    "127.254.0.1",
    "１２７．０．０．１",
    "10.0.0.5",
    "0xa.5",
    "[::ffff:a00:5]",
    "169.254.169.254",
    "[::ffff:a9fe:a9fe]",
    "0xa9fea9fe",
    "192.168.0.1",
    "[fd00::5]",
    "[fe80::1]",
];

/// Names the hosts file resolves to internal addresses.
const NAMES: &[&str] = &[
    "localhost",
    "LocalHost.",
    "db.test",
    "corp.test",
    "home.test",
    "ula.test",
    "mapped.test",
    "meta.test",
    "cgnat.test",
    "loop.test",
    "zero.test",
    "six.test",
    // IDNA: the proxy and `explain` must both see xn--bcher-kva.example.
    "Bücher.example",
    "BÜCHER.example.",
];

/// Spellings no enforcement point accepts as a host.
const INVALID: &[&str] = &["%31%32%37.0.0.1", "1.2.3.4.5", "exa_mple!.test"];

struct Env {
    dir: tempfile::TempDir,
    s: Stele,
    ws: PathBuf,
    bundle: PathBuf,
    hosts: PathBuf,
}

impl Env {
    fn new(control_port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let s = Stele::new(&dir.path().join("state"));
        let o = s
            .run(&["keys", "init", "--origin", "net.stele.invalid/log"])
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        stele_tests::share(&ws).unwrap();
        let bundle = dir.path().join("bundle");
        std::fs::create_dir_all(bundle.join("org")).unwrap();
        std::fs::write(
            bundle.join("schema.cedarschema"),
            s.run(&["policy", "schema"]).unwrap().stdout,
        )
        .unwrap();
        std::fs::write(bundle.join("members.toml"), "[users]\n").unwrap();
        std::fs::write(
            bundle.join("org/org.cedar"),
            format!(
                r#"
// file.delete too: pip renames its temporary files into place (a rename
// deletes the source name).
@id("org.files")
permit (principal, action in [Action::"file.read", Action::"file.write", Action::"file.list", Action::"file.delete"], resource is File);

@id("org.exec")
permit (principal, action == Action::"exec", resource is Program);

@id("org.net")
permit (principal, action == Action::"net.connect", resource);

// As in the templates, with one explicit exception: the control service.
@id("org.no-internal-addresses")
forbid (principal, action == Action::"net.connect", resource)
when {{ resource has class && resource.class != "public" }}
unless {{ resource has address && resource.address == "127.0.0.1" && resource.port == {control_port} }};
"#
            ),
        )
        .unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, HOSTS).unwrap();
        Self {
            dir,
            s,
            ws,
            bundle,
            hosts,
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("state/audit.db")
    }

    /// Run `stele ARGS` in a private mount namespace whose /etc/hosts is ours.
    fn stele(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount --bind \"$1\" /etc/hosts && shift && exec \"$@\"")
            .arg("sh")
            .arg(&self.hosts)
            .arg(stele_bin())
            .args(args)
            .env("STELE_STATE_DIR", &self.s.state)
            .env("USER", "alice")
            .envs(env.iter().copied());
        c.output().unwrap()
    }

    fn exec(&self, backend: &str, network: &str, argv: &[&str], env: &[(&str, &str)]) -> Output {
        self.exec_for(backend, network, "120", argv, env)
    }

    fn exec_for(
        &self,
        backend: &str,
        network: &str,
        timeout_s: &str,
        argv: &[&str],
        env: &[(&str, &str)],
    ) -> Output {
        let mut args = vec![
            "sandbox",
            "exec",
            "--timeout",
            timeout_s,
            "--workspace",
            self.ws.to_str().unwrap(),
            "--policy",
            self.bundle.to_str().unwrap(),
            "--user",
            "alice",
            "--network",
            network,
            "--backend",
            backend,
            "--approve",
            "deny",
            "--",
        ];
        args.extend_from_slice(argv);
        self.stele(&args, env)
    }
}

/// Tries each `kind host port` (kind `connect` or `get`) through the proxy
/// and prints one JSON line per attempt with the status it got.
const CLIENT: &str = r#"
import json, socket, sys
def attempt(request):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=30)
    s.sendall(request.encode())
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    first = data.split(b"\r\n")[0].decode("utf-8", "replace").split(" ")
    return first[1] if len(first) > 1 else "none"
for arg in sys.argv[1:]:
    kind, host, port = arg.split(" ")
    if kind == "connect":
        req = f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"
    else:
        req = f"GET http://{host}:{port}/ HTTP/1.1\r\nHost: {host}\r\n\r\n"
    print(json.dumps({"kind": kind, "host": host, "status": attempt(req)}), flush=True)
"#;

fn vm_images() -> PathBuf {
    if let Some(p) = std::env::var_os("STELE_VM_IMAGES") {
        return PathBuf::from(p);
    }
    let state = match std::env::var_os("XDG_STATE_HOME") {
        Some(p) => PathBuf::from(p).join("stele"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap()).join(".local/state/stele"),
    };
    state.join("vm/images")
}

fn backend_env(backend: &str) -> Vec<(&'static str, String)> {
    match backend {
        "vm" => {
            let images = vm_images();
            assert!(
                images.join("current").exists(),
                "no guest image in {} (scripts/setup-vm builds it)",
                images.display()
            );
            vec![("STELE_VM_IMAGES", images.to_str().unwrap().to_owned())]
        }
        _ => Vec::new(),
    }
}

/// The `policy.decision` and `net.connect` entries for `port`.
fn net_entries(e: &Env, port: u16) -> Vec<serde_json::Value> {
    leaves_json(&e.s, &e.db())
        .unwrap()
        .into_iter()
        .filter(|l| l["target"]["port"].as_u64() == Some(u64::from(port)))
        .filter(|l| l["kind"] == "policy.decision" || l["kind"] == "net.connect")
        .collect()
}

fn every_spelling_is_refused(backend: &str) {
    let target = Service::start();
    let control = Service::start();
    let e = Env::new(control.port);
    let mut attempts: Vec<String> = Vec::new();
    for h in LITERALS.iter().chain(NAMES).chain(INVALID) {
        attempts.push(format!("connect {h} {}", target.port));
    }
    for h in ["[::ffff:127.0.0.1]", "0x7f.1", "db.test", "0.0.0.0"] {
        attempts.push(format!("get {h} {}", target.port));
    }
    // The controls: explicitly allowed, by address and by a name resolving to it.
    for h in ["127.0.0.1", "[::ffff:7f00:1]", "allowed.test"] {
        attempts.push(format!("connect {h} {}", control.port));
    }
    let mut argv: Vec<&str> = vec!["python3", "-c", CLIENT];
    argv.extend(attempts.iter().map(String::as_str));
    let env = backend_env(backend);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let o = e.exec(backend, "proxy", &argv, &env);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{backend}: {err}\n{out}");
    let results: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), attempts.len(), "{backend}: {out}\n{err}");
    let (refused, allowed) = results.split_at(results.len() - 3);
    for r in refused {
        assert_eq!(r["status"], "403", "{backend}: {r}");
    }
    for r in allowed {
        assert_eq!(
            r["status"], "200",
            "{backend}: the control was not reached: {r}"
        );
    }
    assert_eq!(
        target.count(),
        0,
        "{backend}: a refused spelling reached loopback"
    );
    assert!(control.count() >= 3, "{backend}: {}", control.count());

    // Each refused attempt is one decision entry, with why.
    let entries = net_entries(&e, target.port);
    assert_eq!(entries.len(), refused.len(), "{backend}: {entries:#?}");
    for en in &entries {
        assert_eq!(en["kind"], "policy.decision", "{en}");
        assert_eq!(en["decision"]["effect"], "deny", "{en}");
        let requested = en["data"]["requested_host"].as_str();
        let invalid = requested.is_some_and(|h| INVALID.contains(&h));
        if invalid {
            assert!(
                en["decision"]["policies"].as_array().unwrap().is_empty(),
                "{en}"
            );
            assert!(
                en["decision"]["reason"]
                    .as_str()
                    .unwrap()
                    .contains("not a valid host"),
                "{en}"
            );
        } else {
            assert_eq!(
                en["decision"]["policies"],
                serde_json::json!(["org.no-internal-addresses"]),
                "{en}"
            );
            let class = en["data"]["class"].as_str().unwrap();
            assert!(
                ["loopback", "private", "link-local"].contains(&class),
                "{en}"
            );
        }
    }
    // The controls were decided, logged and connected.
    let control_entries = net_entries(&e, control.port);
    assert_eq!(control_entries.len(), 3, "{control_entries:#?}");
    for en in &control_entries {
        assert_eq!(en["kind"], "net.connect", "{en}");
        assert_eq!(en["data"]["address"], "127.0.0.1", "{en}");
        assert_eq!(en["data"]["class"], "loopback", "{en}");
    }
    if backend == "process" {
        explain_agrees(&e, target.port, &entries);
    }
}

/// `stele policy explain` canonicalises and decides each spelling as the
/// proxy did: same canonical host, address, class and rules.
fn explain_agrees(e: &Env, port: u16, entries: &[serde_json::Value]) {
    let mut logged: BTreeMap<String, &serde_json::Value> = BTreeMap::new();
    for en in entries {
        let written = en["data"]["requested_host"]
            .as_str()
            .or(en["target"]["host"].as_str())
            .unwrap()
            .to_owned();
        logged.insert(written, en);
    }
    for h in LITERALS.iter().chain(NAMES).chain(INVALID) {
        let uid = format!("Host::\"https://{h}:{port}\"");
        let o = e.stele(
            &[
                "policy",
                "explain",
                e.bundle.to_str().unwrap(),
                "--principal",
                "alice",
                "--action",
                "net.connect",
                "--resource",
                &uid,
                "--json",
            ],
            &[],
        );
        let code = o.status.code();
        // The log keys an entry by the host as written when it differs
        // from the canonical one.
        let en = logged
            .get(*h)
            .or_else(|| logged.get(h.trim_matches(['[', ']'])))
            .copied();
        if INVALID.contains(h) {
            assert_eq!(code, Some(4), "{h}: {}", String::from_utf8_lossy(&o.stderr));
            continue;
        }
        assert_eq!(code, Some(1), "{h}: {}", String::from_utf8_lossy(&o.stderr));
        let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let policies: Vec<&str> = d["determining"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        assert_eq!(policies, ["org.no-internal-addresses"], "{h}: {d}");
        let en = en.unwrap_or_else(|| panic!("{h}: no log entry in {logged:#?}"));
        assert_eq!(d["destination"]["address"], en["data"]["address"], "{h}");
        assert_eq!(d["destination"]["class"], en["data"]["class"], "{h}");
    }
}

#[test]
fn every_spelling_of_an_internal_destination_is_refused_process() {
    every_spelling_is_refused("process");
}

#[test]
fn every_spelling_of_an_internal_destination_is_refused_vm() {
    every_spelling_is_refused("vm");
}

/// Under `--network none` a program that honours the proxy variables is
/// refused by the proxy with a logged decision saying the session has no
/// network (before, it only left `exec.end -> error`).
fn no_network_attempts_are_logged(backend: &str) {
    let e = Env::new(9);
    let py = "import urllib.request, sys\n\
              try:\n    urllib.request.urlopen('http://pypi.org/simple/', timeout=30)\n\
              except Exception as x:\n    print('urllib:', x)\n\
              try:\n    urllib.request.urlopen('https://files.example/x', timeout=30)\n\
              except Exception as x:\n    print('urllib:', x)\n";
    let mut programs: Vec<Vec<&str>> = vec![vec!["python3", "-c", py]];
    // pip from a venv in the sandbox's /tmp (the tool image has python3-venv,
    // not curl or a system pip: packages go into a venv, never the image).
    let pip = "python3 -m venv /tmp/v && for h in registry.example pip.example; do \
               /tmp/v/bin/pip download --no-deps --retries 0 --timeout 20 \
               --index-url https://$h/simple -d /tmp/pip six; done";
    if backend == "process" {
        programs.push(vec!["sh", "-c", pip]);
    }
    let env = backend_env(backend);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for argv in &programs {
        let o = e.exec(backend, "none", argv, &env);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !err.contains("sandbox preparation failed"),
            "{backend}: {argv:?}: {err}"
        );
    }
    let leaves = leaves_json(&e.s, &e.db()).unwrap();
    let refusals: Vec<&serde_json::Value> = leaves
        .iter()
        .filter(|l| {
            l["kind"] == "policy.decision"
                && l["decision"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("has no network"))
        })
        .collect();
    let hosts: Vec<&str> = refusals
        .iter()
        .map(|l| l["target"]["host"].as_str().unwrap())
        .collect();
    let mut want = vec!["pypi.org", "files.example"];
    if backend == "process" {
        want.extend(["registry.example", "pip.example"]);
    }
    for h in want {
        assert!(
            hosts.contains(&h),
            "{backend}: no logged refusal for {h}: {hosts:?}"
        );
    }
    for l in &refusals {
        assert_eq!(l["decision"]["effect"], "deny");
        assert_eq!(l["outcome"]["status"], "denied");
    }
    // Nothing was allowed, and nothing resolved.
    assert!(
        leaves.iter().all(|l| l["kind"] != "net.connect"),
        "{backend}: a connection was allowed without network"
    );
}

#[test]
fn no_network_attempts_are_logged_process() {
    no_network_attempts_are_logged("process");
}

#[test]
fn no_network_attempts_are_logged_vm() {
    no_network_attempts_are_logged("vm");
}

/// Install a package the way the templates' "Installing more" describes:
/// a venv in the workspace (`.venv/`, made without pip: a few files), pip
/// from a venv in the sandbox's /tmp installing into it, from a PEP 503
/// index on the host's loopback that the policy allows by name and port.
fn a_package_installs_into_the_workspace(backend: &str) {
    use package_index::{Index, MODULE, PROJECT, VALUE, WHEEL};
    let index = Index::start();
    let e = Env::new(index.port);
    let env = backend_env(backend);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = format!("http://allowed.test:{}/simple", index.port);
    let install = format!(
        "set -e; cd /workspace; python3 -m venv --without-pip .venv; python3 -m venv /tmp/v; \
         /tmp/v/bin/pip --python /workspace/.venv/bin/python install --no-cache-dir \
         --disable-pip-version-check --retries 0 --timeout 60 \
         --index-url {url} --trusted-host allowed.test {PROJECT}"
    );
    let o = e.exec_for(backend, "proxy", "600", &["sh", "-c", &install], &env);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "{backend}: pip install failed:\n{out}\n{err}"
    );
    assert!(
        out.contains("Successfully installed stele-probe-1.0"),
        "{backend}: {out}\n{err}"
    );

    // The package is the workspace's: on the host's side of it, and
    // importable by the workspace venv's python in a later command.
    let site: Vec<PathBuf> = std::fs::read_dir(e.ws.join(".venv/lib"))
        .unwrap()
        .map(|d| d.unwrap().path().join("site-packages").join(MODULE))
        .filter(|p| p.join("__init__.py").is_file())
        .collect();
    assert_eq!(site.len(), 1, "{backend}: {site:?}");
    let probe =
        format!("import {MODULE}; print({MODULE}.VALUE, len({MODULE}.blob()), {MODULE}.__file__)");
    let o = e.exec(
        backend,
        "none",
        &["/workspace/.venv/bin/python", "-c", &probe],
        &env,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{backend}: {out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.starts_with(&format!(
            "{VALUE} {} /workspace/.venv/",
            package_index::BLOB_BYTES
        )),
        "{backend}: {out}"
    );

    // The index served the wheel once, whole.
    let served = index.served();
    let wheel: Vec<_> = served
        .iter()
        .filter(|r| r.path == format!("/files/{WHEEL}"))
        .collect();
    assert_eq!(wheel.len(), 1, "{backend}: {served:?}");
    assert!(served.iter().all(|r| r.status == 200), "{served:?}");
    assert!(wheel[0].bytes >= index.wheel_size, "{served:?}");

    // The log: each request to the index an allowed net.connect, each
    // closed with its bytes; together (and the wheel's own) at least the
    // wheel's size.
    let leaves = leaves_json(&e.s, &e.db()).unwrap();
    let intents: Vec<&serde_json::Value> = leaves
        .iter()
        .filter(|l| {
            l["kind"] == "net.connect"
                && l["target"]["port"].as_u64() == Some(u64::from(index.port))
        })
        .collect();
    assert!(
        intents.len() >= 2 && intents.len() == served.len(),
        "{backend}: {} intents for {} requests: {served:?}",
        intents.len(),
        served.len()
    );
    let mut bytes_in = Vec::new();
    for i in &intents {
        assert_eq!(i["decision"]["effect"], "allow", "{i}");
        assert_eq!(i["target"]["host"], "allowed.test", "{i}");
        assert_eq!(i["data"]["address"], "127.0.0.1", "{i}");
        let close = leaves
            .iter()
            .find(|l| l["kind"] == "net.close" && l["refs"]["intent_seq"] == i["seq"])
            .unwrap_or_else(|| panic!("{backend}: no net.close for {i}"));
        assert_eq!(close["outcome"]["status"], "ok", "{close}");
        bytes_in.push(close["outcome"]["bytes_in"].as_u64().unwrap());
    }
    let total: u64 = bytes_in.iter().sum();
    assert!(
        total >= index.wheel_size && bytes_in.iter().any(|b| *b >= index.wheel_size),
        "{backend}: closes report {bytes_in:?} bytes for a {}-byte wheel",
        index.wheel_size
    );
    // No other destination was reached (pip checked no other index).
    assert!(
        leaves
            .iter()
            .filter(|l| l["kind"] == "net.connect")
            .all(|l| l["target"]["port"].as_u64() == Some(u64::from(index.port))),
        "{backend}: a connection elsewhere"
    );

    // Nothing landed in the image: its python has no such module.
    let image = stele_sandbox::vm::ImageStore::at(vm_images())
        .current()
        .unwrap();
    let tree = image.tree().unwrap();
    for dir in ["usr/lib/python3/dist-packages", "usr/local/lib"] {
        let found = Command::new("find")
            .arg(tree.join(dir))
            .args(["-name", &format!("{MODULE}*")])
            .output()
            .unwrap();
        assert!(
            found.stdout.is_empty(),
            "{backend}: in the image: {}",
            String::from_utf8_lossy(&found.stdout)
        );
    }
}

#[test]
fn a_package_installs_into_the_workspace_process() {
    a_package_installs_into_the_workspace("process");
}

#[test]
fn a_package_installs_into_the_workspace_vm() {
    a_package_installs_into_the_workspace("vm");
}

/// `npm install` into the workspace's `node_modules/` from a local npm
/// registry the policy allows by name and port; npm's cache in the
/// sandbox's /tmp (`HOME` there), so nothing persists outside the workspace.
fn npm_command(port: u16) -> String {
    use package_index::npm::PACKAGE;
    format!(
        "set -e; cd /workspace; npm install --registry http://allowed.test:{port}/ \
         --cache /tmp/.npm --no-audit --no-fund --no-update-notifier \
         --fetch-retries 0 --fetch-timeout 60000 {PACKAGE}"
    )
}

fn an_npm_package_installs_into_the_workspace(backend: &str) {
    use package_index::npm::{Registry, BLOB_BYTES, PACKAGE, VALUE};
    let registry = Registry::start();
    let e = Env::new(registry.port);
    let env = backend_env(backend);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let install = npm_command(registry.port);
    let o = e.exec_for(backend, "proxy", "600", &["sh", "-c", &install], &env);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "{backend}: npm install failed:\n{out}\n{err}"
    );
    assert!(out.contains("added 1 package"), "{backend}: {out}\n{err}");

    // The package is the workspace's, and a later command (no network)
    // requires it from there.
    let installed = e.ws.join("node_modules").join(PACKAGE);
    assert!(
        installed.join("index.js").is_file() && installed.join("package.json").is_file(),
        "{backend}: nothing in {}",
        installed.display()
    );
    let probe = format!(
        "const p = require('{PACKAGE}'); \
         console.log(p.VALUE, p.blob().length, require.resolve('{PACKAGE}'))"
    );
    let o = e.exec(
        backend,
        "none",
        &["sh", "-c", &format!("cd /workspace && node -e \"{probe}\"")],
        &env,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{backend}: {out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.starts_with(&format!(
            "{VALUE} {BLOB_BYTES} /workspace/node_modules/{PACKAGE}/"
        )),
        "{backend}: {out}"
    );

    // The registry served the packument and the tarball, whole.
    let served = registry.served();
    let tarball: Vec<_> = served
        .iter()
        .filter(|r| r.path == registry.tarball_path)
        .collect();
    assert_eq!(tarball.len(), 1, "{backend}: {served:?}");
    assert!(served.iter().all(|r| r.status == 200), "{served:?}");
    assert!(tarball[0].bytes >= registry.tarball_size, "{served:?}");

    // The log: allowed net.connect decisions for the registry, each closed
    // with its bytes, one of them at least the tarball's size.
    let leaves = leaves_json(&e.s, &e.db()).unwrap();
    let intents: Vec<&serde_json::Value> = leaves
        .iter()
        .filter(|l| l["kind"] == "net.connect")
        .collect();
    assert!(!intents.is_empty(), "{backend}: no net.connect");
    let mut bytes_in = Vec::new();
    for i in &intents {
        assert_eq!(i["decision"]["effect"], "allow", "{i}");
        assert_eq!(i["target"]["host"], "allowed.test", "{i}");
        assert_eq!(
            i["target"]["port"].as_u64(),
            Some(u64::from(registry.port)),
            "{i}"
        );
        let close = leaves
            .iter()
            .find(|l| l["kind"] == "net.close" && l["refs"]["intent_seq"] == i["seq"])
            .unwrap_or_else(|| panic!("{backend}: no net.close for {i}"));
        assert_eq!(close["outcome"]["status"], "ok", "{close}");
        bytes_in.push(close["outcome"]["bytes_in"].as_u64().unwrap());
    }
    assert!(
        bytes_in.iter().any(|b| *b >= registry.tarball_size),
        "{backend}: closes report {bytes_in:?} bytes for a {}-byte tarball",
        registry.tarball_size
    );

    // Nothing landed in the image: no such package in its node paths.
    let image = stele_sandbox::vm::ImageStore::at(vm_images())
        .current()
        .unwrap();
    let tree = image.tree().unwrap();
    for dir in ["usr/lib/node_modules", "usr/share/nodejs", "usr/local/lib"] {
        if !tree.join(dir).exists() {
            continue;
        }
        let found = Command::new("find")
            .arg(tree.join(dir))
            .args(["-name", &format!("{PACKAGE}*")])
            .output()
            .unwrap();
        assert!(
            found.stdout.is_empty(),
            "{backend}: in the image: {}",
            String::from_utf8_lossy(&found.stdout)
        );
    }
}

#[test]
fn an_npm_package_installs_into_the_workspace_process() {
    an_npm_package_installs_into_the_workspace("process");
}

#[test]
fn an_npm_package_installs_into_the_workspace_vm() {
    an_npm_package_installs_into_the_workspace("vm");
}

/// The same install when the policy does not allow the registry (the
/// class rule's exception names another port): npm fails, nothing is
/// installed, the registry sees no request, and the refusal is logged.
#[test]
fn an_npm_install_from_a_refused_registry_is_logged_process() {
    use package_index::npm::{Registry, PACKAGE};
    let registry = Registry::start();
    let e = Env::new(9);
    let o = e.exec_for(
        "process",
        "proxy",
        "300",
        &["sh", "-c", &npm_command(registry.port)],
        &[],
    );
    assert!(
        !o.status.success(),
        "npm install succeeded against a refused registry: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(!e.ws.join("node_modules").join(PACKAGE).exists());
    assert!(registry.served().is_empty(), "{:?}", registry.served());
    let denied: Vec<serde_json::Value> = net_entries(&e, registry.port)
        .into_iter()
        .filter(|l| l["kind"] == "policy.decision" && l["decision"]["effect"] == "deny")
        .collect();
    assert!(!denied.is_empty(), "no denied decision for the registry");
    for d in &denied {
        assert_eq!(d["target"]["host"], "allowed.test", "{d}");
        assert_eq!(d["outcome"]["status"], "denied", "{d}");
    }
}

#[test]
fn the_hosts_file_is_ours_only_inside_the_test() {
    // The bind mount must not leak into the host's namespace.
    let e = Env::new(9);
    let o = e.stele(&["policy", "schema"], &[]);
    assert!(o.status.success());
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    assert!(!hosts.contains("db.test"), "{hosts}");
    assert!(Path::new(&e.hosts).exists());
}
