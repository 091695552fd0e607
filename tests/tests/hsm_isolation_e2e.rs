#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A token key's files are stele's own files too: no workspace may hold,
//! lie inside, redirect or hard-link the `[signing.pkcs11]` PIN file, the
//! PKCS#11 module stele loads, SoftHSM's configuration (`SOFTHSM2_CONF`) or
//! its token folder — the PIN and the token folder together *are* the key.
//! Each refusal is checked with both sandbox backends (the check runs
//! before either is built), and a program inside an accepted workspace
//! tries to reach the PIN and the token through absolute paths, symlinks
//! and hard links, in both backends. A real SoftHSM token (scripts/setup-hsm).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use stele_tests::{clean_command, share, stele_bin};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "iso-pin-8642";

/// A home, a workspace, and a SoftHSM token with a key outside both,
/// named by the configuration.
struct Token {
    _d: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    work: PathBuf,
    hsm: PathBuf,
    config: PathBuf,
}

impl Token {
    fn new() -> Token {
        assert!(
            Path::new(MODULE).exists(),
            "SoftHSM is not installed: run scripts/setup-hsm (this test must run, not skip)"
        );
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        let (home, work, hsm) = (root.join("home"), root.join("work"), root.join("hsm"));
        for p in [&home, &work, &hsm.join("tokens")] {
            std::fs::create_dir_all(p).unwrap();
        }
        share(&work).unwrap();
        let t = Token {
            config: root.join("config.toml"),
            _d: d,
            root,
            home,
            work,
            hsm,
        };
        t.write_conf(&t.conf(), &t.hsm.join("tokens"));
        let pin = t.hsm.join("pin");
        std::fs::write(&pin, format!("{PIN}\n")).unwrap();
        std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
        let o = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", t.conf())
            .args(["--init-token", "--free", "--label", "iso", "--pin", PIN])
            .args(["--so-pin", "so-8642"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = t.stele(
            &[
                "keys",
                "init",
                "--pkcs11",
                "--module",
                MODULE,
                "--token",
                "iso",
                "--label",
                "log",
                "--pin-file",
                pin.to_str().unwrap(),
                "--origin",
                "iso.stele.invalid/hsm",
            ],
            &[],
        );
        assert!(o.status.success(), "{}", err(&o));
        t.configure(MODULE, &pin);
        t
    }

    fn conf(&self) -> PathBuf {
        self.hsm.join("softhsm2.conf")
    }

    fn write_conf(&self, conf: &Path, tokens: &Path) {
        std::fs::write(
            conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
    }

    fn configure(&self, module: &str, pin: &Path) {
        std::fs::write(
            &self.config,
            format!(
                "[signing]\npkcs11 = {{ module = {module:?}, token = \"iso\", label = \"log\", pin_file = {:?} }}\n",
                pin.to_str().unwrap()
            ),
        )
        .unwrap();
    }

    /// `stele ARGS` in a clean environment naming the configuration and
    /// SoftHSM's (unless `env` gives another).
    fn stele(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = clean_command(stele_bin(), &self.home);
        c.current_dir(&self.root)
            .env("STELE_CONFIG", &self.config)
            .env("SOFTHSM2_CONF", self.conf())
            .args(args)
            .envs(env.iter().copied());
        c.output().unwrap()
    }

    /// `sandbox exec --backend B --workspace WS -- ARGV`.
    fn exec(&self, backend: &str, ws: &Path, argv: &[&str], env: &[(&str, &str)]) -> Output {
        let mut args = vec![
            "sandbox",
            "exec",
            "--backend",
            backend,
            "--workspace",
            ws.to_str().unwrap(),
            "--",
        ];
        args.extend_from_slice(argv);
        let mut e = vec![("STELE_VM_IMAGES", vm_images())];
        e.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.stele(&args, &e)
    }
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn vm_images() -> String {
    let p = match std::env::var_os("STELE_VM_IMAGES") {
        Some(p) => PathBuf::from(p),
        None => {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".local/state/stele/vm/images")
        }
    };
    assert!(
        p.join("current").exists(),
        "no guest image in {} (scripts/setup-vm builds it)",
        p.display()
    );
    p.to_str().unwrap().to_string()
}

const BACKENDS: [&str; 2] = ["process", "vm"];

/// Refused at the start with both backends, naming `what`, before any
/// sandbox or log.
fn assert_refused_by_both(t: &Token, ws: &Path, env: &[(&str, &str)], what: &str) {
    for backend in BACKENDS {
        let o = t.exec(backend, ws, &["true"], env);
        let e = err(&o);
        assert!(!o.status.success(), "{backend}, {what}: not refused: {e}");
        assert!(e.contains("refusing to start"), "{backend}: {e}");
        assert!(e.contains(what), "{backend}: expected {what:?} in: {e}");
        assert!(!e.contains(PIN), "{backend}: the PIN is shown: {e}");
    }
}

#[test]
fn a_workspace_may_not_hold_redirect_or_link_the_token_keys_files() {
    let t = Token::new();
    let w = &t.work;
    let pin = t.hsm.join("pin");
    // The baseline: the token key signs a session in the workspace.
    let o = t.exec("process", w, &["true"], &[]);
    assert!(o.status.success(), "{}", err(&o));

    // The PIN file in the workspace.
    std::fs::copy(&pin, w.join("pin")).unwrap();
    t.configure(MODULE, &w.join("pin"));
    assert_refused_by_both(
        &t,
        w,
        &[],
        "contains the PIN file of the [signing.pkcs11] key",
    );
    std::fs::remove_file(w.join("pin")).unwrap();
    // Its path passing through a symlink the workspace holds.
    std::os::unix::fs::symlink(&t.hsm, w.join("hsm-link")).unwrap();
    t.configure(MODULE, &w.join("hsm-link/pin"));
    assert_refused_by_both(&t, w, &[], "passes through");
    std::fs::remove_file(w.join("hsm-link")).unwrap();
    // A second name for it in the workspace.
    t.configure(MODULE, &pin);
    std::fs::hard_link(&pin, w.join("pin.copy")).unwrap();
    assert_refused_by_both(&t, w, &[], "has 2 names (hard links)");
    std::fs::remove_file(w.join("pin.copy")).unwrap();
    // A workspace that is a symlink to the folder holding it.
    let ws_link = t.root.join("ws-link");
    std::os::unix::fs::symlink(&t.hsm, &ws_link).unwrap();
    assert_refused_by_both(&t, &ws_link, &[], "contains the PIN file");

    // SoftHSM's token folder in the workspace, or reached through a
    // symlink there; a workspace inside it; its configuration there.
    let conf2 = t.root.join("softhsm2-other.conf");
    let conf2_s = conf2.to_str().unwrap().to_string();
    std::fs::create_dir_all(w.join("tokens")).unwrap();
    t.write_conf(&conf2, &w.join("tokens"));
    assert_refused_by_both(
        &t,
        w,
        &[("SOFTHSM2_CONF", &conf2_s)],
        "SoftHSM's token folder",
    );
    std::fs::remove_dir_all(w.join("tokens")).unwrap();
    std::os::unix::fs::symlink(&t.hsm, w.join("t-link")).unwrap();
    t.write_conf(&conf2, &w.join("t-link/tokens"));
    assert_refused_by_both(&t, w, &[("SOFTHSM2_CONF", &conf2_s)], "passes through");
    std::fs::remove_file(w.join("t-link")).unwrap();
    let inside = t.hsm.join("tokens/project");
    std::fs::create_dir_all(&inside).unwrap();
    share(&inside).unwrap();
    assert_refused_by_both(&t, &inside, &[], "lies inside SoftHSM's token folder");
    std::fs::remove_dir(&inside).unwrap();
    std::fs::copy(t.conf(), w.join("softhsm2.conf")).unwrap();
    let in_ws = w.join("softhsm2.conf");
    assert_refused_by_both(
        &t,
        w,
        &[("SOFTHSM2_CONF", in_ws.to_str().unwrap())],
        "SoftHSM's configuration",
    );
    std::fs::remove_file(&in_ws).unwrap();

    // The module stele would load, in the workspace (refused before it is
    // loaded: code the program wrote would run on the host).
    std::fs::copy(MODULE, w.join("libsofthsm2.so")).unwrap();
    t.configure(w.join("libsofthsm2.so").to_str().unwrap(), &pin);
    assert_refused_by_both(&t, w, &[], "the PKCS#11 module");
    std::fs::remove_file(w.join("libsofthsm2.so")).unwrap();

    // Back as it was: accepted again.
    t.configure(MODULE, &pin);
    let o = t.exec("process", w, &["true"], &[]);
    assert!(o.status.success(), "{}", err(&o));
}

/// What a program in an accepted workspace tries in order to reach the
/// PIN and the token. Each success prints LEAK.
fn escape_script(t: &Token) -> String {
    let (pin, tokens, conf) = (t.hsm.join("pin"), t.hsm.join("tokens"), t.conf());
    format!(
        r#"P={}; T={}; C={}
cat "$P" 2>/dev/null && echo LEAK-absolute-pin
ls "$T" 2>/dev/null && echo LEAK-absolute-tokens
cat "$C" 2>/dev/null && echo LEAK-absolute-conf
ln -s "$P" p 2>/dev/null; cat p 2>/dev/null && echo LEAK-link-pin
ln -s "$T" t 2>/dev/null; ls t/ 2>/dev/null && echo LEAK-link-tokens
ln "$P" hard.pin 2>/dev/null && echo LEAK-hardlink-pin
python3 -c "open('p','w').write('x'); print('LEAK-write-pin')" 2>/dev/null
echo DONE
"#,
        pin.display(),
        tokens.display(),
        conf.display()
    )
}

fn sandbox_cannot_reach_the_token(backend: &str) {
    let t = Token::new();
    let pin_before = std::fs::read(t.hsm.join("pin")).unwrap();
    let o = t.exec(backend, &t.work, &["sh", "-c", &escape_script(&t)], &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("DONE"), "{backend}: {out}\n{}", err(&o));
    assert!(!out.contains("LEAK"), "{backend}: {out}");
    assert!(
        !out.contains(PIN) && !err(&o).contains(PIN),
        "{backend}: the PIN leaked"
    );
    assert_eq!(std::fs::read(t.hsm.join("pin")).unwrap(), pin_before);
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(std::fs::metadata(t.hsm.join("pin")).unwrap().nlink(), 1);
    // The links the program left are not stele's paths: the next session
    // starts, signed by the token, and the log verifies under it.
    let o = t.exec(backend, &t.work, &["true"], &[]);
    assert!(o.status.success(), "{backend}: {}", err(&o));
    let o = t.stele(&["audit", "verify"], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn a_program_cannot_reach_the_pin_or_the_token_process_backend() {
    sandbox_cannot_reach_the_token("process");
}

#[test]
fn a_program_cannot_reach_the_pin_or_the_token_vm_backend() {
    sandbox_cannot_reach_the_token("vm");
}
