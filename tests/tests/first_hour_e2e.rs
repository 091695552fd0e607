//! The first hour with stele (issue 16): every error a new user meets says
//! what is wrong and the way forward, with its own exit code
//! (docs/exit-codes.md): no key or log yet, a host that cannot sandbox, a
//! person missing from members.toml, a model the policy does not allow; the
//! checks come in an order that does not hide one mistake behind another;
//! the log is read with the verifier key, not the private signing key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod e2e_common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use e2e_common::{policy, run_bounded, setup, workspace};
use stele_tests::mock_model::{MockModel, Wire};
use stele_tests::{sandbox_available, Stele};

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The one error line of a failed command.
fn error_line(o: &Output) -> String {
    err(o)
        .lines()
        .find(|l| l.starts_with("stele: error: "))
        .unwrap_or_else(|| panic!("no error line in {}", err(o)))
        .to_string()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn no_key_yet_says_keys_init_once_with_exit_78() {
    let d = tempfile::tempdir().unwrap();
    let s = Stele::new(&d.path().join("state"));
    let key = s.state.join("keys/log.key");
    let db = s.state.join("audit.db");
    let ws = d.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let no_key = format!(
        "stele: error: no audit signing key at {} (this machine has none yet); create one \
         with `stele keys init` (or give the key with --key FILE)",
        key.display()
    );
    let no_log = format!(
        "stele: error: no audit log at {} yet; stele creates it with the first session \
         (`stele run`, `stele sandbox exec`), or create it now with `stele audit init` (or \
         give the log with --db FILE)",
        db.display()
    );
    // run and sandbox exec: the key, not the OS error (once, not twice).
    for args in [
        vec![
            "run",
            "--workspace",
            p(&ws),
            "--model",
            "scripted:/x.json",
            "task",
        ],
        vec!["sandbox", "exec", "--workspace", p(&ws), "--", "true"],
    ] {
        let o = s.run(&args).unwrap();
        assert_eq!(o.status.code(), Some(78), "{args:?}: {}", err(&o));
        assert_eq!(error_line(&o), no_key, "{args:?}");
        assert!(!err(&o).contains("os error"), "{args:?}: {}", err(&o));
    }
    let o = s.run(&["keys", "show"]).unwrap();
    assert_eq!(
        (o.status.code(), error_line(&o)),
        (Some(78), no_key.clone())
    );
    // Reading: no log yet is said first (it is the first thing missing).
    for args in [
        vec!["audit", "show"],
        vec!["audit", "tail"],
        vec!["session", "list"],
        vec!["session", "show", "s-x"],
        vec!["audit", "checkpoint"],
    ] {
        let o = s.run(&args).unwrap();
        assert_eq!(o.status.code(), Some(78), "{args:?}: {}", err(&o));
        assert_eq!(error_line(&o), no_log, "{args:?}");
    }
    // A log exists but this reader has no signing key: reading the live log
    // is recorded, and --vkey is the way without the key.
    let other = d.path().join("other.key");
    assert!(s
        .run(&["keys", "init", "--key", p(&other)])
        .unwrap()
        .status
        .success());
    let o = s.run(&["audit", "init", "--key", p(&other)]).unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let o = s.run(&["audit", "show"]).unwrap();
    assert_eq!(o.status.code(), Some(78), "{}", err(&o));
    assert_eq!(
        error_line(&o),
        format!(
            "stele: error: reads of the live log are recorded in it, which needs its signing \
             key; to read without recording (a reviewer's copy), give the log's verifier key \
             with --vkey: no audit signing key at {} (this machine has none yet); create one \
             with `stele keys init` (or give the key with --key FILE)",
            key.display()
        )
    );
}

/// `audit verify --json`'s entry count.
fn entries(s: &Stele, db: &Path, vkey: &str) -> u64 {
    let o = s
        .run(&["audit", "verify", "--db", p(db), "--vkey", vkey, "--json"])
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["entries"].as_u64().unwrap()
}

#[test]
fn the_log_is_read_with_the_verifier_key_without_writing() {
    let d = tempfile::tempdir().unwrap();
    let s = Stele::new(&d.path().join("state"));
    let o = s.run(&["keys", "init"]).unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let o = s.run(&["audit", "init"]).unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let vkey = out(&s.run(&["keys", "show"]).unwrap()).trim().to_string();
    let db = s.state.join("audit.db");
    // The operator's read is recorded (one audit.read entry more).
    let before = entries(&s, &db, &vkey);
    let o = s.run(&["audit", "show"]).unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert!(entries(&s, &db, &vkey) > before, "the read is in the log");
    // A reviewer with only the verifier key: no signing key anywhere.
    std::fs::rename(s.state.join("keys/log.key"), d.path().join("away.key")).unwrap();
    let n = entries(&s, &db, &vkey);
    for args in [
        vec!["audit", "show", "--vkey", &vkey],
        vec!["audit", "tail", "-n", "5", "--vkey", &vkey],
        vec!["session", "list", "--vkey", &vkey],
    ] {
        let o = s.run(&args).unwrap();
        assert!(o.status.success(), "{args:?}: {}", err(&o));
        assert!(
            err(&o).contains("read-only") && err(&o).contains("not recorded in the log"),
            "{args:?} must say it is not recorded: {}",
            err(&o)
        );
    }
    let o = s.run(&["audit", "show", "--vkey", &vkey]).unwrap();
    assert_eq!(
        out(&o).lines().count() as u64,
        n,
        "every verified entry shown"
    );
    assert_eq!(entries(&s, &db, &vkey), n, "read-only reads write nothing");
    // Another log's key: nothing shown, exit 3 (as audit verify).
    let stranger = d.path().join("stranger.key");
    s.run(&["keys", "init", "--key", p(&stranger)]).unwrap();
    let wrong = out(&s.run(&["keys", "show", "--key", p(&stranger)]).unwrap())
        .trim()
        .to_string();
    let o = s.run(&["audit", "show", "--vkey", &wrong]).unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(out(&o).is_empty(), "nothing shown: {}", out(&o));
    // A tampered entry: nothing shown, exit 3.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("DROP TRIGGER entries_no_update;")
        .unwrap();
    let changed = conn
        .execute(
            "UPDATE entries SET leaf = CAST(replace(CAST(leaf AS TEXT), '\"ts\":\"2', \
             '\"ts\":\"1') AS BLOB) WHERE seq = (SELECT max(seq) FROM entries)",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);
    let o = s.run(&["audit", "show", "--vkey", &vkey]).unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(out(&o).is_empty(), "nothing shown: {}", out(&o));
}

#[test]
fn the_workspace_and_policy_are_checked_before_the_api_key() {
    let d = tempfile::tempdir().unwrap();
    let s = setup(d.path());
    let ws = workspace(d.path());
    let bundle = policy(d.path(), Wire::Anthropic, "");
    let run = |ws: &Path, bundle: &Path| {
        s.run_env(
            &[
                "run",
                "--workspace",
                p(ws),
                "--policy",
                p(bundle),
                "--model",
                "anthropic:claude-sonnet-4-5",
                "task",
            ],
            &[("ANTHROPIC_API_KEY", "")],
        )
        .unwrap()
    };
    let missing = d.path().join("no-such-folder");
    let o = run(&missing, &bundle);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        error_line(&o).starts_with(&format!("stele: error: workspace {}", missing.display())),
        "{}",
        err(&o)
    );
    let broken = d.path().join("broken");
    std::fs::create_dir_all(broken.join("org")).unwrap();
    std::fs::copy(
        bundle.join("schema.cedarschema"),
        broken.join("schema.cedarschema"),
    )
    .unwrap();
    std::fs::copy(bundle.join("members.toml"), broken.join("members.toml")).unwrap();
    std::fs::write(
        broken.join("org/bad.cedar"),
        "permit (principal, action, resource) when {",
    )
    .unwrap();
    let o = run(&ws, &broken);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        error_line(&o).contains(&format!("policy bundle {}", broken.display())),
        "{}",
        err(&o)
    );
    // Only then the key; the config key that names its variable is named.
    let o = run(&ws, &bundle);
    assert_eq!(o.status.code(), Some(1));
    assert!(error_line(&o).contains("ANTHROPIC_API_KEY"), "{}", err(&o));
}

#[test]
fn a_host_that_cannot_sandbox_says_what_is_needed_with_exit_69() {
    // Not root: the reproduction of the issue (mount_setattr refused).
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    stele_tests::share(root).unwrap();
    let state = root.join("state");
    let ws = root.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    // The set-up's tool image lives in root's state folder, which this user
    // cannot read: the host's system directories stand in (the choice is
    // not what is refused here; the sandbox's own set-up is).
    let config = root.join("config.toml");
    std::fs::write(&config, "sandbox_root = \"host\"\n").unwrap();
    stele_tests::share(root).unwrap();
    let as_other = |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args(["--reuid=2013265925", "--regid=2013265925", "--clear-groups"])
            .arg(stele_tests::stele_bin())
            .args(args)
            .env("STELE_STATE_DIR", &state)
            .env("STELE_CONFIG", &config)
            .env("HOME", root)
            .env("USER", "bob")
            .output()
            .unwrap()
    };
    let o = as_other(&["keys", "init"]);
    assert!(o.status.success(), "{}", err(&o));
    let o = as_other(&["sandbox", "exec", "--workspace", p(&ws), "--", "true"]);
    if o.status.success() {
        eprintln!("SKIPPED: this host sandboxes unprivileged users too; nothing to refuse");
        return;
    }
    assert_eq!(o.status.code(), Some(69), "{}", err(&o));
    let line = error_line(&o);
    assert!(
        line.starts_with("stele: error: the sandbox cannot be set up on this host: "),
        "{line}"
    );
    assert!(
        line.ends_with(
            ". stele never runs unsandboxed; it needs root (or unprivileged user namespaces \
             with mount permissions), Landlock, seccomp and /dev/fuse. `stele sandbox check` \
             shows each layer and what is missing"
        ),
        "{line}"
    );
    // The demo fails the same way, with the same code.
    let o = as_other(&["demo", "--dir", p(&root.join("demo"))]);
    assert_eq!(o.status.code(), Some(69), "{}", err(&o));
    assert!(
        error_line(&o).contains("`stele sandbox check`"),
        "{}",
        err(&o)
    );
    // sandbox check names what is missing and exits 69 too.
    let o = as_other(&["sandbox", "check"]);
    assert_eq!(o.status.code(), Some(69), "{}", out(&o));
}

/// A run denied its model: the output, the members file, the model's endpoint.
fn denied_run(user: &str, model: &str) -> (Output, String, String) {
    let d = tempfile::tempdir().unwrap();
    let s = setup(d.path());
    let ws = workspace(d.path());
    let bundle = policy(d.path(), Wire::Anthropic, "");
    let mock = MockModel::start().unwrap();
    let mut c = std::process::Command::new(stele_tests::stele_bin());
    c.args(["run", "--workspace", p(&ws), "--policy", p(&bundle)])
        .args(["--user", user, "--model", model, "task"])
        .env("STELE_STATE_DIR", &s.state)
        .env("USER", user)
        .envs(e2e_common::env(Wire::Anthropic, &mock));
    let o = run_bounded(c, Duration::from_secs(120));
    assert!(mock.requests().is_empty(), "no request reached the model");
    (
        o,
        bundle.join("members.toml").display().to_string(),
        mock.base_url(),
    )
}

#[test]
fn a_person_missing_from_members_is_told_in_words_first() {
    if !sandbox_available("a_person_missing_from_members_is_told_in_words_first") {
        return;
    }
    let (o, members, _) = denied_run("dave", "anthropic:claude-sonnet-4-5");
    assert_eq!(o.status.code(), Some(11), "{}", err(&o));
    let e = err(&o);
    assert!(
        e.contains(&format!(
            "stele: warning: you (dave) are not in this policy's members list ({members})"
        )),
        "said before anything runs: {e}"
    );
    let stop = e.lines().find(|l| l.starts_with("stopped: ")).unwrap();
    assert_eq!(
        stop.split(". Rule: ").next().unwrap(),
        format!(
            "stopped: the model request was denied: you (dave) are not in this deployment's \
             members list ({members}); ask whoever maintains the policy to add you to a team"
        )
    );
    assert!(
        stop.contains(". Rule: model.request denied by org.members-only (org, "),
        "the rule second: {stop}"
    );
}

#[test]
fn a_model_the_policy_does_not_allow_names_the_allowed_one() {
    if !sandbox_available("a_model_the_policy_does_not_allow_names_the_allowed_one") {
        return;
    }
    let (o, _, endpoint) = denied_run("alice", "anthropic:claude-opus-4");
    assert_eq!(o.status.code(), Some(11), "{}", err(&o));
    let e = err(&o);
    let stop = e.lines().find(|l| l.starts_with("stopped: ")).unwrap();
    assert!(
        stop.starts_with(&format!(
            "stopped: the model request was denied: this model is not one the policy allows \
             you (alice); it allows: anthropic/claude-sonnet-4-5 at {endpoint} (give --model \
             PROVIDER:NAME). Rule: model.request denied by finance.only-one-model (team:finance, "
        )),
        "{stop}"
    );
    assert!(!e.contains("not in this"), "alice is a member: {e}");
}

/// `audit verify` on a small log gives no rate made from a few
/// milliseconds of CPU (it printed "62000000000 entries/s"): a rate, when
/// shown, is one a core could reach.
#[test]
fn audit_verify_on_a_small_log_prints_no_absurd_rate() {
    let d = tempfile::tempdir().unwrap();
    let s = setup(d.path());
    assert!(s.run(&["audit", "init"]).unwrap().status.success());
    let o = s.run(&["audit", "verify"]).unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    for line in text.lines().filter(|l| l.contains("entries/s")) {
        let rate: f64 = line
            .split('(')
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!(rate < 1e8, "an absurd rate: {line}");
    }
    assert!(text.contains("entries") || text.contains("OK"), "{text}");
}
