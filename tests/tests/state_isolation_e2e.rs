#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! No workspace may hold stele's own state, configuration or policy, nor
//! lie inside them, nor redirect them (issue 12, item 2). Each case runs
//! the `stele` binary as a user would, with a clean environment (HOME in a
//! scratch folder, no XDG_* or STELE_* from the caller), and checks that
//! the command refuses to start, names both paths and says what to do,
//! and wrote nothing. The last tests check, in both sandbox backends, that
//! a program inside an accepted workspace cannot reach the key or the log
//! through links it makes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use stele_tests::{clean_command, share, stele_bin};

/// A scratch home with stele's default state in it (a key made by
/// `stele keys init`), and a workspace beside the home.
struct Home {
    d: tempfile::TempDir,
    home: PathBuf,
    state: PathBuf,
    work: PathBuf,
}

impl Home {
    fn new() -> Home {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        let home = root.join("home");
        let work = root.join("work");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(work.join("reports")).unwrap();
        share(&work).unwrap();
        let h = Home {
            state: home.join(".local/state/stele"),
            d,
            home,
            work,
        };
        let o = h.stele(&["keys", "init", "--origin", "iso.stele.invalid/log"], &[]);
        assert!(o.status.success(), "{}", err(&o));
        h
    }

    fn root(&self) -> PathBuf {
        self.d.path().canonicalize().unwrap()
    }

    fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = clean_command(program, &self.home);
        c.current_dir(self.root());
        c
    }

    fn stele(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.cmd(stele_bin())
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    /// `sandbox exec --workspace WS -- true` (and extra arguments first).
    fn exec(&self, ws: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let mut args = vec!["sandbox", "exec", "--workspace", ws.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "true"]);
        self.stele(&args, env)
    }

    /// `run` or `chat` with a model that is never reached (the refusal comes first).
    fn agent(&self, command: &str, ws: &Path, env: &[(&str, &str)]) -> Output {
        let mut e = vec![
            ("ANTHROPIC_API_KEY", "sk-ant-test-0123456789"),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9"),
        ];
        e.extend_from_slice(env);
        self.stele(
            &[
                command,
                "--workspace",
                ws.to_str().unwrap(),
                "--model",
                "anthropic:claude-sonnet-4-5",
                "Summarise the folder",
            ],
            &e,
        )
    }
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The command refused to start, saying which location, naming the
/// workspace and the location, and what to do.
fn assert_refused(o: &Output, what: &str, paths: &[&Path]) {
    let e = err(o);
    assert!(!o.status.success(), "not refused: {e}");
    assert!(e.contains("refusing to start"), "{e}");
    assert!(e.contains(what), "expected {what:?} in: {e}");
    for p in paths {
        assert!(
            e.contains(p.to_str().unwrap()),
            "expected {} in: {e}",
            p.display()
        );
    }
    assert!(
        e.contains("Grant a folder that holds only the work"),
        "says what to do: {e}"
    );
    assert_eq!(e.lines().count(), 1, "one line: {e}");
}

/// Nothing was written to the state by a refused command: no log, no
/// built-in policy copy, no session.
fn assert_nothing_written(h: &Home) {
    assert!(!h.state.join("audit.db").exists(), "a log was created");
    assert!(!h.state.join("policies").exists(), "a policy was written");
}

#[test]
fn a_workspace_holding_the_state_is_refused_by_every_session_command() {
    let h = Home::new();
    let what = "contains stele's state folder";
    assert_refused(&h.exec(&h.home, &[], &[]), what, &[&h.home, &h.state]);
    assert_refused(
        &h.exec(&h.home, &["--backend", "vm"], &[]),
        what,
        &[&h.home],
    );
    assert_refused(&h.agent("run", &h.home, &[]), what, &[&h.home, &h.state]);
    assert_refused(&h.agent("chat", &h.home, &[]), what, &[&h.home, &h.state]);
    // A demo folder inside the state folder: refused before anything is made.
    let demo = h.state.join("demo-x");
    let o = h.stele(&["demo", "--dir", demo.to_str().unwrap()], &[]);
    assert_refused(&o, "lies inside stele's state folder", &[&h.state]);
    assert!(!demo.exists(), "nothing of the demo was made");
    // A workspace that is the state folder, or one of its folders.
    for ws in [h.state.clone(), h.state.join("keys")] {
        assert_refused(&h.exec(&ws, &[], &[]), "stele's state folder", &[&h.state]);
    }
    assert_nothing_written(&h);
    // The control: a workspace beside the home runs.
    let o = h.exec(&h.work, &[], &[]);
    assert!(o.status.success(), "{}", err(&o));
}

#[test]
fn locations_set_by_the_environment_or_flags_into_the_workspace_are_refused() {
    let h = Home::new();
    let w = &h.work;
    let ws = |rel: &str| w.join(rel).to_str().unwrap().to_string();
    // (environment, flags, what the refusal names)
    type Case<'a> = (Vec<(&'a str, String)>, Vec<String>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            vec![("STELE_STATE_DIR", ws("state"))],
            vec![],
            "stele's state folder",
        ),
        (
            vec![("XDG_STATE_HOME", ws("xdg"))],
            vec![],
            "stele's state folder",
        ),
        (
            vec![("XDG_CONFIG_HOME", ws("cfg"))],
            vec![],
            "stele's user configuration folder",
        ),
        (
            vec![("STELE_CONFIG", ws("config.toml"))],
            vec![],
            "stele's user configuration file",
        ),
        (
            vec![("STELE_MANAGED_CONFIG", ws("managed.toml"))],
            vec![],
            "stele's managed configuration file",
        ),
        (
            vec![("STELE_VM_IMAGES", ws("images"))],
            vec![],
            "the micro-VM image store",
        ),
        (
            vec![],
            vec!["--db".into(), ws("audit.db")],
            "the audit database",
        ),
        (
            vec![],
            vec!["--key".into(), ws("log.key")],
            "the log signing key",
        ),
    ];
    for (env, flags, what) in &cases {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let o = h.exec(w, &flags, &env);
        assert_refused(&o, what, &[w]);
    }
    // The inverse: the policy bundle in the workspace (the agent could
    // rewrite what the next run loads), by flag and by configuration.
    let bundle = w.join("policy");
    copy_dir(&repo().join("policies/strict-default"), &bundle);
    let o = h.exec(w, &["--policy", bundle.to_str().unwrap()], &[]);
    assert_refused(&o, "contains the policy bundle in use", &[w, &bundle]);
    let cfg = h.root().join("config.toml");
    std::fs::write(&cfg, format!("policy = {:?}\n", bundle.to_str().unwrap())).unwrap();
    let o = h.agent("run", w, &[("STELE_CONFIG", cfg.to_str().unwrap())]);
    assert_refused(&o, "contains the policy bundle in use", &[w, &bundle]);
    // A workspace inside a policy folder of the search order.
    let user_policy = h.home.join(".config/stele/policy/project");
    std::fs::create_dir_all(&user_policy).unwrap();
    let o = h.exec(&user_policy, &[], &[]);
    assert_refused(
        &o,
        "lies inside stele's user configuration folder",
        &[&user_policy],
    );
    std::fs::remove_dir_all(h.home.join(".config")).unwrap();
    assert_nothing_written(&h);
}

#[test]
fn the_root_and_system_folders_are_refused() {
    let h = Home::new();
    for ws in ["/", "/etc", "/root/.."] {
        let o = h.exec(Path::new(ws), &[], &[]);
        assert_refused(&o, "contains", &[]);
    }
    // `/etc` holds the managed configuration folder even when it does not exist.
    let o = h.exec(Path::new("/etc"), &[], &[]);
    assert!(
        err(&o).contains("stele's managed configuration folder /etc/stele")
            || err(&o).contains("stele's state folder"),
        "{}",
        err(&o)
    );
    assert_nothing_written(&h);
}

#[test]
fn relative_paths_are_resolved_against_the_current_folder() {
    let h = Home::new();
    // `--workspace .` from the home.
    let o = h
        .cmd(stele_bin())
        .current_dir(&h.home)
        .args(["sandbox", "exec", "--workspace", ".", "--", "true"])
        .output()
        .unwrap();
    assert_refused(&o, "contains stele's state folder", &[&h.home]);
    // A relative --db and a relative STELE_STATE_DIR, from the workspace.
    for (args, env) in [
        (vec!["--db", "audit.db"], vec![]),
        (vec![], vec![("STELE_STATE_DIR", "state")]),
        (vec!["--key", "./k/../log.key"], vec![]),
    ] {
        let mut a = vec!["sandbox", "exec", "--workspace", "."];
        a.extend(args);
        a.extend(["--", "true"]);
        let o = h
            .cmd(stele_bin())
            .current_dir(&h.work)
            .args(&a)
            .envs(env)
            .output()
            .unwrap();
        assert_refused(&o, "contains", &[&h.work]);
    }
    assert!(!h.work.join("audit.db").exists() && !h.work.join("state").exists());
}

#[test]
fn symlinks_and_hard_links_do_not_hide_the_state() {
    let h = Home::new();
    // A workspace that is a symlink to the home.
    let link = h.root().join("link-to-home");
    std::os::unix::fs::symlink(&h.home, &link).unwrap();
    assert_refused(
        &h.exec(&link, &[], &[]),
        "contains stele's state folder",
        &[&h.home],
    );
    // A key path that passes through a symlink the workspace holds: the
    // program could repoint it between sessions.
    std::os::unix::fs::symlink(h.state.join("keys"), h.work.join("keys")).unwrap();
    let via = h.work.join("keys/log.key");
    let o = h.exec(&h.work, &["--key", via.to_str().unwrap()], &[]);
    assert_refused(&o, "passes through", &[&h.work]);
    std::fs::remove_file(h.work.join("keys")).unwrap();
    // A state folder configured through a symlink into the workspace.
    std::fs::create_dir_all(h.work.join("st")).unwrap();
    let st = h.root().join("st-link");
    std::os::unix::fs::symlink(h.work.join("st"), &st).unwrap();
    let o = h.exec(&h.work, &[], &[("STELE_STATE_DIR", st.to_str().unwrap())]);
    assert_refused(&o, "contains stele's state folder", &[&h.work]);
    // The key hard-linked into the workspace: a second name.
    let key = h.state.join("keys/log.key");
    std::fs::hard_link(&key, h.work.join("copy.key")).unwrap();
    let o = h.exec(&h.work, &[], &[]);
    let e = err(&o);
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains("has 2 names (hard links)") && e.contains(key.to_str().unwrap()),
        "{e}"
    );
    std::fs::remove_file(h.work.join("copy.key")).unwrap();
    assert_nothing_written(&h);
}

/// Run `stele ARGS` in a private mount namespace after bind-mounting
/// `from` onto `onto` (root only; the host's mounts are untouched).
fn with_bind(h: &Home, from: &Path, onto: &Path, args: &[&str]) -> Output {
    std::fs::create_dir_all(onto).unwrap();
    h.cmd("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount --bind \"$1\" \"$2\" && shift 2 && exec \"$@\"")
        .arg("sh")
        .arg(from)
        .arg(onto)
        .arg(stele_bin())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn bind_mounts_do_not_hide_the_state() {
    let h = Home::new();
    let root = h.root();
    // Probe: can this machine make a private mount namespace?
    let probe = h.cmd("unshare").args(["--mount", "true"]).output().unwrap();
    assert!(
        probe.status.success(),
        "unshare --mount failed (the tests run as root): {}",
        err(&probe)
    );
    // The workspace is the home, mounted elsewhere.
    let m1 = root.join("m1");
    let o = with_bind(
        &h,
        &h.home,
        &m1,
        &[
            "sandbox",
            "exec",
            "--workspace",
            m1.to_str().unwrap(),
            "--",
            "true",
        ],
    );
    assert_refused(&o, "contains stele's state folder", &[&m1]);
    // The state folder mounted inside an ordinary workspace.
    let inner = h.work.join("mounted");
    let o = with_bind(
        &h,
        &h.state,
        &inner,
        &[
            "sandbox",
            "exec",
            "--workspace",
            h.work.to_str().unwrap(),
            "--",
            "true",
        ],
    );
    assert_refused(&o, "contains stele's state folder", &[&h.work]);
    // The workspace is the state's keys folder, mounted elsewhere.
    let m2 = root.join("m2");
    let o = with_bind(
        &h,
        &h.state.join("keys"),
        &m2,
        &[
            "sandbox",
            "exec",
            "--workspace",
            m2.to_str().unwrap(),
            "--",
            "true",
        ],
    );
    assert_refused(&o, "lies inside stele's state folder", &[&m2]);
    assert_nothing_written(&h);
}

#[test]
fn files_of_configured_mcp_servers_are_kept_out_of_the_workspace() {
    let h = Home::new();
    let w = &h.work;
    std::fs::create_dir_all(w.join("srv")).unwrap();
    std::fs::write(w.join("creds.json"), "{}").unwrap();
    std::fs::write(w.join("server.js"), "").unwrap();
    let creds = w.join("creds.json");
    let cases = [
        format!("command = {:?}", w.join("server.sh").to_str().unwrap()),
        format!(
            "command = \"node\"\nargs = [{:?}]",
            w.join("server.js").to_str().unwrap()
        ),
        format!(
            "command = \"node\"\ncwd = {:?}",
            w.join("srv").to_str().unwrap()
        ),
        format!(
            "command = \"node\"\nargs = [\"--config\", {:?}]",
            creds.to_str().unwrap()
        ),
        format!(
            "command = \"node\"\nenv = {{ GOOGLE_APPLICATION_CREDENTIALS = {:?} }}",
            creds.to_str().unwrap()
        ),
    ];
    let cfg = h.root().join("config.toml");
    for body in &cases {
        std::fs::write(&cfg, format!("[mcp.files]\n{body}\n")).unwrap();
        let o = h.exec(w, &[], &[("STELE_CONFIG", cfg.to_str().unwrap())]);
        assert_refused(&o, "MCP server \"files\"", &[w]);
    }
    // A server whose working folder holds the workspace (a home folder) is fine.
    std::fs::write(
        &cfg,
        format!(
            "[mcp.files]\ncommand = \"node\"\ncwd = {:?}\n",
            h.root().to_str().unwrap()
        ),
    )
    .unwrap();
    std::fs::remove_dir_all(w.join("srv")).unwrap();
    std::fs::remove_file(w.join("creds.json")).unwrap();
    std::fs::remove_file(w.join("server.js")).unwrap();
    let o = h.exec(w, &[], &[("STELE_CONFIG", cfg.to_str().unwrap())]);
    assert!(o.status.success(), "{}", err(&o));
}

#[test]
fn exports_are_never_written_into_or_granted_with_a_workspace() {
    let h = Home::new();
    let (w1, w2) = (h.root().join("w1"), h.root().join("w2"));
    for w in [&w1, &w2] {
        std::fs::create_dir_all(w).unwrap();
        share(w).unwrap();
    }
    let o = h.exec(&w1, &[], &[]);
    assert!(o.status.success(), "{}", err(&o));
    // Into a workspace the log records: refused, nothing written.
    for out in [w1.join("export"), w1.join("sub/export.tar")] {
        let o = h.stele(&["audit", "export", "--out", out.to_str().unwrap()], &[]);
        let e = err(&o);
        assert!(!o.status.success(), "{e}");
        assert!(
            e.contains("a workspace of this log") && e.contains(w1.to_str().unwrap()),
            "{e}"
        );
        assert!(!out.exists());
    }
    // Relative, from inside the workspace.
    let o = h
        .cmd(stele_bin())
        .current_dir(&w1)
        .args(["audit", "export", "--out", "rel-export"])
        .output()
        .unwrap();
    assert!(
        !o.status.success() && !w1.join("rel-export").exists(),
        "{}",
        err(&o)
    );
    // Elsewhere: written; then a workspace holding it is refused.
    let out = w2.join("exports/e1");
    let o = h.stele(&["audit", "export", "--out", out.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", err(&o));
    let o = h.exec(&w2, &[], &[]);
    assert_refused(&o, "contains an export of this audit log", &[&w2, &out]);
    // …and one inside it.
    let sub = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .expect("an export has folders");
    let o = h.exec(&sub, &[], &[]);
    assert_refused(&o, "lies inside an export of this audit log", &[&out]);
}

fn entry_count(db: &Path) -> i64 {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn session_resume_checks_the_workspace_again() {
    use stele_tests::mock_model::{MockModel, Reply};
    let h = Home::new();
    let mock = MockModel::start().unwrap();
    mock.push(Reply::Malformed);
    let url = mock.base_url();
    let env = [
        ("ANTHROPIC_API_KEY", "sk-ant-test-0123456789"),
        ("ANTHROPIC_BASE_URL", url.as_str()),
    ];
    // The template pins Anthropic's API; this copy allows the mock.
    let policy = stele_tests::mock_template("strict-default");
    let o = h.stele(
        &[
            "run",
            "--workspace",
            h.work.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--model",
            "anthropic:claude-sonnet-4-5",
            "Summarise",
        ],
        &env,
    );
    assert_eq!(o.status.code(), Some(75), "paused: {}", err(&o));
    let e = err(&o);
    let id = e
        .split("stele session resume ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("the resume hint names the session")
        .trim_end_matches('`')
        .to_string();
    let db = h.state.join("audit.db");
    let before = entry_count(&db);
    // The bundle to resume with lies in the workspace.
    let bundle = h.work.join("policy");
    copy_dir(&repo().join("policies/strict-default"), &bundle);
    let o = h.stele(
        &[
            "session",
            "resume",
            &id,
            "--policy",
            bundle.to_str().unwrap(),
        ],
        &env,
    );
    assert_refused(&o, "contains the policy bundle in use", &[&h.work, &bundle]);
    // The configuration now points into the workspace.
    let cfg = h.work.join("config.toml");
    std::fs::write(&cfg, "").unwrap();
    let o = h.stele(
        &["session", "resume", &id],
        &[env[0], env[1], ("STELE_CONFIG", cfg.to_str().unwrap())],
    );
    assert_refused(
        &o,
        "contains stele's user configuration file",
        &[&h.work, &cfg],
    );
    assert_eq!(entry_count(&db), before, "a refused resume writes nothing");
    assert_eq!(mock.requests().len(), 1, "and asks no model");
}

/// What a program in an accepted workspace tries in order to reach the
/// key and the log: absolute paths, symlinks to them, a hard link, and
/// SQLite through a link. Each success prints LEAK.
fn escape_script(state: &Path) -> String {
    let s = state.to_str().unwrap();
    format!(
        r#"K={s}/keys/log.key; S={s}
cat "$K" 2>/dev/null && echo LEAK-absolute-key
ls "$S" 2>/dev/null && echo LEAK-absolute-state
ln -s "$K" k 2>/dev/null; cat k 2>/dev/null && echo LEAK-link-key
ln -s "$S" st 2>/dev/null; ls st/ 2>/dev/null && echo LEAK-link-state
cat st/keys/log.key 2>/dev/null && echo LEAK-link-state-key
ln "$K" hard.key 2>/dev/null && echo LEAK-hardlink
python3 -c "import sqlite3; c=sqlite3.connect('file:st/audit.db?mode=rw', uri=True); c.execute('select count(*) from entries').fetchall(); print('LEAK-db')" 2>/dev/null
python3 -c "open('k','w').write('x'); print('LEAK-write-key')" 2>/dev/null
echo DONE
"#
    )
}

fn sandbox_cannot_reach_the_log_or_key(backend: &str, env: &[(&str, &str)]) {
    let h = Home::new();
    // A first session makes the log.
    let o = h.exec(&h.work, &[], env);
    assert!(o.status.success(), "{}", err(&o));
    let key_before = std::fs::read(h.state.join("keys/log.key")).unwrap();
    let o = h.stele(
        &[
            "sandbox",
            "exec",
            "--backend",
            backend,
            "--workspace",
            h.work.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &escape_script(&h.state),
        ],
        env,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("DONE"), "{backend}: {out}\n{}", err(&o));
    assert!(!out.contains("LEAK"), "{backend}: {out}");
    for secret in key_secrets(&key_before) {
        assert!(
            !out.contains(&secret) && !err(&o).contains(&secret),
            "{backend}: the key leaked ({secret} in the output)"
        );
    }
    assert_eq!(
        std::fs::read(h.state.join("keys/log.key")).unwrap(),
        key_before
    );
    // The key still has one name, and the log verifies.
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(
        std::fs::metadata(h.state.join("keys/log.key"))
            .unwrap()
            .nlink(),
        1
    );
    let o = h.stele(&["audit", "verify"], env);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    // The links the program made stay in the workspace; a later session
    // still starts (they are not stele's paths) and still cannot follow them.
    let o = h.exec(&h.work, &["--backend", backend], env);
    assert!(o.status.success(), "{}", err(&o));
}

/// The private key's forms a leak would show: the key file's whole base64
/// field, and the seed in base64 and in hex. (The field is taken whole: the
/// base64 alphabet has '+', the key file's separator, so the text after the
/// last '+' can be a character or two — which any output contains by chance.
/// That is why this test once failed with the VM's longer output.)
fn key_secrets(key_file: &[u8]) -> Vec<String> {
    use base64::Engine as _;
    let text = String::from_utf8_lossy(key_file);
    let field = text
        .trim()
        .strip_prefix("PRIVATE+KEY+")
        .unwrap()
        .splitn(3, '+')
        .nth(2)
        .unwrap()
        .to_string();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&field)
        .unwrap();
    assert_eq!(raw.len(), 33, "0x01 and a 32-byte seed");
    let seed = &raw[1..];
    vec![
        field,
        base64::engine::general_purpose::STANDARD.encode(seed),
        seed.iter().map(|b| format!("{b:02x}")).collect(),
    ]
}

#[test]
fn key_secrets_are_whole_whatever_the_base64_holds() {
    // A key field with '+' inside: the secret is the whole field, not
    // what follows its last '+'.
    let line = b"PRIVATE+KEY+x.example/l+c5fd44d7+AZaxDvQRAjzGZzdcCiHWHm5Lcz3yWsfC3x+oajJKuSsc\n";
    let s = key_secrets(line);
    assert_eq!(s[0], "AZaxDvQRAjzGZzdcCiHWHm5Lcz3yWsfC3x+oajJKuSsc");
    assert!(s.iter().all(|x| x.len() >= 43), "{s:?}");
}

#[test]
fn a_program_cannot_reach_the_log_or_key_through_links_process_backend() {
    sandbox_cannot_reach_the_log_or_key("process", &[]);
}

#[test]
fn a_program_cannot_reach_the_log_or_key_through_links_vm_backend() {
    let images = vm_image_store();
    assert!(
        images.join("current").exists(),
        "no guest image in {} (scripts/setup-vm builds it)",
        images.display()
    );
    sandbox_cannot_reach_the_log_or_key("vm", &[("STELE_VM_IMAGES", images.to_str().unwrap())]);
}

/// The image store `scripts/setup-vm` filled (the caller's default state).
fn vm_image_store() -> PathBuf {
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

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().unwrap().is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}
