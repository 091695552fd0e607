#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Nothing stele prints from the log, the model or the workspace can drive
//! a reviewer's terminal or forge a line (issue 12, item 10), and a
//! principal name is checked where it enters. Every class of dangerous
//! character ([`HOSTILE`]: C0, ESC and OSC sequences, CR, LF, C1, DEL,
//! bidi overrides and isolates, zero-width, separators) and non-UTF-8
//! bytes are fed to each printing command; the output is checked with
//! [`terminal_hazards`], written independently of stele's escaping.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use serde_json::{json, Value};
use stele_audit::{
    Actor, AuditLog, DecisionRecord, Effect, Event, EventKind, LogOptions, Outcome, Status, Target,
};
use stele_tests::mock_model::{MockModel, Turn};
use stele_tests::{clean_command, share, stele_bin, terminal_hazards, Stele, HOSTILE};

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Neither stream of `o` holds a raw hazard.
fn assert_safe(o: &Output, what: &str) {
    let (h1, h2) = (terminal_hazards(&o.stdout), terminal_hazards(&o.stderr));
    assert!(
        h1.is_empty() && h2.is_empty(),
        "{what}: raw {h1:?} on stdout, {h2:?} on stderr\n{:?}\n{:?}",
        out(o),
        err(o)
    );
}

/// A state folder with a key and an empty log.
fn setup(d: &Path) -> Stele {
    let s = Stele::new(&d.join("state"));
    for args in [
        &["keys", "init", "--origin", "term.stele.invalid/log"][..],
        &["audit", "init"],
    ] {
        let o = s.run(args).unwrap();
        assert!(o.status.success(), "{}", err(&o));
    }
    s
}

fn entry_count(db: &Path) -> i64 {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
        .unwrap()
}

/// Every line is one entry: an index, then the time; indices strictly
/// increase (by one from 0 when `all`). A forged line would break either.
fn assert_one_line_per_entry(text: &str, all: bool) -> usize {
    let mut last: Option<u64> = None;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let seq: u64 = f
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an entry line: {line:?}"));
        let ts = f.next().unwrap_or("");
        assert!(
            ts.len() == 27 && ts.ends_with('Z'),
            "not an entry time: {line:?}"
        );
        assert!(last.is_none_or(|l| seq > l), "out of order: {line:?}");
        if all {
            assert_eq!(
                seq,
                last.map_or(0, |l| l + 1),
                "missing or forged: {line:?}"
            );
        }
        last = Some(seq);
    }
    text.lines().count()
}

#[test]
fn a_forged_user_name_is_refused_and_show_prints_no_forged_line() {
    let d = tempfile::tempdir().unwrap();
    let s = setup(d.path());
    let db = s.state.join("audit.db");
    let forged =
        "mallory\x1b[2J\x1b[H\n  99999  2026-01-01T00:00:00.000000Z  log.genesis  system  FORGED";
    let before = entry_count(&db);
    let o = s
        .run(&["audit", "tail", "-n", "1", "--user", forged])
        .unwrap();
    assert!(!o.status.success(), "the name was accepted");
    assert!(err(&o).contains("--user: the user name"), "{}", err(&o));
    assert!(err(&o).contains("a control character"), "{}", err(&o));
    assert_safe(&o, "tail --user");
    assert_eq!(entry_count(&db), before, "nothing was appended");
    let o = s.run(&["audit", "show"]).unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert_safe(&o, "show");
    assert!(
        !out(&o).contains("FORGED") && !out(&o).contains("mallory"),
        "{}",
        out(&o)
    );
    // The show's own read is its last line; the log's close comes after.
    assert_eq!(
        assert_one_line_per_entry(&out(&o), true) as i64,
        entry_count(&db) - 1
    );
}

#[test]
fn every_way_a_name_enters_checks_it() {
    let d = tempfile::tempdir().unwrap();
    let s = setup(d.path());
    let db = s.state.join("audit.db");
    let ws = d.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    share(&ws).unwrap();
    let w = ws.to_str().unwrap();
    let out_dir = d.path().join("export");
    // Each command, with `--user NAME` going after its first `n` words.
    let commands: Vec<(Vec<&str>, usize)> = vec![
        (vec!["audit", "show"], 2),
        (vec!["audit", "tail", "-n", "3"], 2),
        (vec!["audit", "redact", "sha256s:00", "--reason", "test"], 2),
        (
            vec!["audit", "export", "--out", out_dir.to_str().unwrap()],
            2,
        ),
        (vec!["sandbox", "exec", "--workspace", w, "--", "true"], 2),
        (
            vec![
                "run",
                "--workspace",
                w,
                "--model",
                "anthropic:claude-sonnet-4-5",
                "task",
            ],
            1,
        ),
        (
            vec![
                "chat",
                "--workspace",
                w,
                "--model",
                "anthropic:claude-sonnet-4-5",
            ],
            1,
        ),
    ];
    let mut names: Vec<(String, &str)> = HOSTILE
        .iter()
        .map(|(class, sample)| (format!("bob{sample}"), *class))
        .collect();
    names.push(("bob smith".into(), "whitespace"));
    names.push(("bob\u{a0}smith".into(), "whitespace"));
    names.push((String::new(), "empty"));
    names.push(("b".repeat(129), "over-long"));
    let model_env = [
        ("ANTHROPIC_API_KEY", "sk-ant-test-0123456789"),
        ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9"),
    ];
    let before = entry_count(&db);
    for (cmd, at) in &commands {
        for (name, class) in &names {
            let mut args = cmd.clone();
            args.splice(*at..*at, ["--user", name.as_str()]);
            let o = s.run_env(&args, &model_env).unwrap();
            let what = format!("{} --user <{class}>", cmd.join(" "));
            assert!(!o.status.success(), "{what}: accepted");
            assert!(
                err(&o).contains("--user: the user name"),
                "{what}: {}",
                err(&o)
            );
            assert_safe(&o, &what);
        }
        // From the environment: $USER, then $LOGNAME, each named.
        let (name, _) = &names[0];
        let o = s
            .run_env(cmd, &[model_env[0], model_env[1], ("USER", name.as_str())])
            .unwrap();
        assert!(
            err(&o).contains("$USER: the user name"),
            "{}: {}",
            cmd.join(" "),
            err(&o)
        );
        assert_safe(&o, "USER");
        let o = clean_command(stele_bin(), d.path())
            .env_remove("USER")
            .env("LOGNAME", "eve\u{202e}")
            .env("STELE_STATE_DIR", &s.state)
            .envs(model_env)
            .args(cmd)
            .output()
            .unwrap();
        assert!(
            err(&o).contains("$LOGNAME: the user name"),
            "{}: {}",
            cmd.join(" "),
            err(&o)
        );
        assert!(err(&o).contains("bidirectional"), "{}", err(&o));
        assert_safe(&o, "LOGNAME");
    }
    assert_eq!(
        entry_count(&db),
        before,
        "no refused command wrote to the log"
    );
    assert!(!out_dir.exists());
    // Ordinary names still work, including non-Latin ones.
    for ok in ["alice", "josé", "山田"] {
        let o = s.run(&["audit", "tail", "-n", "1", "--user", ok]).unwrap();
        assert!(o.status.success(), "{ok}: {}", err(&o));
    }
}

/// A log as an older stele (or a hostile writer holding the key) could
/// have left it: every text field carries every class of hazard. Returns
/// the session id.
fn write_hostile_log(s: &Stele) -> String {
    let all: String = HOSTILE.iter().map(|(_, v)| *v).collect();
    let key = stele_attest::load_key_file(&s.state.join("keys/log.key")).unwrap();
    let log = AuditLog::open(
        &s.state.join("audit.db"),
        Arc::new(key),
        LogOptions::default(),
    )
    .unwrap();
    let session = format!("s-{all}");
    let mut actor = Actor::system();
    actor.principal = format!("mallory{all}");
    let target = Target {
        path: Some(format!("receipts/{all}.txt")),
        program: Some(format!("py{all}")),
        host: Some(format!("h{all}")),
        tool: Some(format!("t{all}")),
        model: Some(format!("m{all}")),
        ..Target::default()
    };
    let decision = DecisionRecord {
        bundle: "sha256:00".into(),
        effect: Effect::Deny,
        layer: Some(format!("team:{all}")),
        policies: vec![format!("p{all}")],
        reason: Some(format!("because{all}")),
    };
    let mut failed = Outcome::status(Status::Error);
    failed.detail = Some(format!("provider said{all}"));
    for ev in [
        Event::new(EventKind::SessionStart, actor.clone())
            .in_session(&session)
            .with_data(json!({"workspace": format!("/w{all}")})),
        Event::new(EventKind::PolicyDecision, actor.clone())
            .in_session(&session)
            .with_target(target)
            .with_decision(decision)
            .with_outcome(Outcome::status(Status::Denied)),
    ] {
        log.append_blocking(ev).unwrap();
    }
    // A failed model response (the session shows as paused, with why).
    let req = log
        .append_blocking(
            Event::new(EventKind::ModelRequest, actor.clone())
                .in_session(&session)
                .with_target(Target {
                    model: Some(format!("m{all}")),
                    ..Target::default()
                }),
        )
        .unwrap();
    use base64::Engine as _;
    log.append_blocking(
        Event::new(EventKind::ModelResponse, actor.clone())
            .in_session(&session)
            .with_refs(stele_audit::Refs {
                intent_leaf: base64::engine::general_purpose::STANDARD.encode(req.leaf_hash),
                intent_seq: req.seq,
            })
            .with_outcome(failed),
    )
    .unwrap();
    log.close().unwrap();
    session
}

/// The leaves as stored (parsed), to compare `--json` output with.
fn stored_leaves(db: &Path) -> Vec<Value> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let mut st = c.prepare("SELECT leaf FROM entries ORDER BY seq").unwrap();
    st.query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|b| serde_json::from_slice(&b.unwrap()).unwrap())
        .collect()
}

#[test]
fn the_log_is_shown_escaped_by_every_reading_command() {
    let d = tempfile::tempdir().unwrap();
    let s = setup(d.path());
    let db = s.state.join("audit.db");
    let session = write_hostile_log(&s);
    let id = OsStr::new(&session);
    for args in [
        vec![OsStr::new("audit"), OsStr::new("show")],
        vec![
            OsStr::new("audit"),
            OsStr::new("tail"),
            OsStr::new("-n"),
            OsStr::new("50"),
        ],
        vec![
            OsStr::new("audit"),
            OsStr::new("show"),
            OsStr::new("--session"),
            id,
        ],
        vec![OsStr::new("session"), OsStr::new("show"), id],
    ] {
        let o = stele(&s, &args);
        let what = format!("{args:?}");
        assert!(o.status.success(), "{what}: {}", err(&o));
        assert_safe(&o, &what);
        assert_one_line_per_entry(&out(&o), args.len() == 2);
        assert!(
            out(&o).contains("\\u{202e}") && out(&o).contains("\\u{1b}[2J"),
            "{what}: {}",
            out(&o)
        );
    }
    // session list: one line for the one session, its paused state escaped.
    let o = s.run(&["session", "list"]).unwrap();
    assert_safe(&o, "session list");
    assert_eq!(out(&o).lines().count(), 1, "{}", out(&o));
    assert!(out(&o).contains("paused: provider said"), "{}", out(&o));
    // JSON: only ASCII escapes on the terminal, the same values for a reader.
    let o = s.run(&["session", "list", "--json"]).unwrap();
    assert_safe(&o, "session list --json");
    let v: Value = serde_json::from_str(out(&o).trim()).unwrap();
    assert_eq!(v["id"], session.as_str());
    let o = s.run(&["audit", "show", "--json"]).unwrap();
    assert_safe(&o, "show --json");
    let shown: Vec<Value> = out(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let stored = stored_leaves(&db);
    assert_eq!(shown[..], stored[..shown.len()], "--json is faithful");
    // Verification reports and errors that quote the input.
    let o = s.run(&["audit", "verify"]).unwrap();
    assert!(o.status.success(), "{}", out(&o));
    assert_safe(&o, "verify");
    let o = s
        .run(&["audit", "show", "--kind", "x\x1b[2J\u{202e}"])
        .unwrap();
    assert!(!o.status.success());
    assert_safe(&o, "show --kind");
    let o = stele(
        &s,
        &[
            OsStr::new("session"),
            OsStr::new("show"),
            OsStr::from_bytes(b"s-\xff\x1b]0;t\x07"),
        ],
    );
    assert!(!o.status.success());
    assert_safe(&o, "session show (unknown, not UTF-8)");
}

fn stele(s: &Stele, args: &[&OsStr]) -> Output {
    clean_command(stele_bin(), &s.state)
        .env("STELE_STATE_DIR", &s.state)
        .args(args)
        .output()
        .unwrap()
}

/// Everything the model says, calls and answers carries hazards.
#[test]
fn model_output_is_shown_escaped_and_json_stays_faithful() {
    let all: String = HOSTILE.iter().map(|(_, v)| *v).collect();
    for (command, json_mode) in [("run", false), ("run", true), ("chat", false)] {
        let d = tempfile::tempdir().unwrap();
        let s = setup(d.path());
        let ws = d.path().join("ws");
        std::fs::create_dir_all(ws.join("receipts")).unwrap();
        share(&ws).unwrap();
        let mock = MockModel::start().unwrap();
        mock.push(
            Turn::new()
                .text(&format!("thinking{all}"))
                .tool_use(
                    "t1",
                    "file_read",
                    json!({"path": format!("receipts/{all}.txt")}),
                )
                .into(),
        );
        mock.push(
            Turn::new()
                .tool_use("t2", "exec", json!({"argv": [format!("ls{all}"), "-l"]}))
                .into(),
        );
        mock.push(
            Turn::new()
                .tool_use("t3", &format!("tool{all}"), json!({}))
                .into(),
        );
        mock.push(
            Turn::new()
                .tool_use(
                    "t4",
                    "final_answer",
                    json!({"answer": format!("done{all}")}),
                )
                .into(),
        );
        let url = mock.base_url();
        // The template pins Anthropic's API; this copy allows the mock.
        let policy = stele_tests::mock_template("strict-default");
        let mut args = vec![
            command,
            "--workspace",
            ws.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--model",
            "anthropic:claude-sonnet-4-5",
        ];
        if json_mode {
            args.push("--json");
        }
        args.push("Read the receipts");
        let o = s
            .run_env(
                &args,
                &[
                    ("ANTHROPIC_API_KEY", "sk-ant-test-0123456789"),
                    ("ANTHROPIC_BASE_URL", &url),
                ],
            )
            .unwrap();
        assert!(o.status.success(), "{}", err(&o));
        assert_safe(&o, &format!("{command} json={json_mode}"));
        if json_mode {
            let events: Vec<Value> = out(&o)
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert!(
                events
                    .iter()
                    .any(|e| e["event"] == "text" && e["text"] == format!("thinking{all}")),
                "the model's text, decoded, is exactly what it said: {events:?}"
            );
        } else {
            // run shows the answer on stderr, chat on stdout.
            let shown = format!("{}{}", out(&o), err(&o));
            assert!(shown.contains("done\\u{1b}[2J"), "{shown}");
        }
        // The session's entries (paths, programs, tools) as a reviewer sees them.
        let o = s.run(&["audit", "show"]).unwrap();
        assert_safe(&o, "audit show after run");
        assert_one_line_per_entry(&out(&o), true);
    }
}

const PROGRAM: &str = r#"import sys
for name in ["\u202egpj.exe", "a\u200bb", "c\u2066d"]:
    open(name, "w").write("x")
sys.stdout.write("out\x1b[2J\x1b]0;pwned\x07\u202e\r\u009b31m\n")
sys.stdout.flush()
sys.stderr.write("err\x1b[H\u200bFORGED\n")
"#;

#[test]
fn a_programs_output_and_file_names_are_escaped_on_a_terminal_and_faithful_in_a_pipe() {
    let d = tempfile::tempdir().unwrap();
    let s = setup(d.path());
    let ws = d.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("prog.py"), PROGRAM).unwrap();
    share(&ws).unwrap();
    let w = ws.to_str().unwrap();
    // Into a pipe: byte for byte.
    let o = s
        .run(&[
            "sandbox",
            "exec",
            "--workspace",
            w,
            "--",
            "python3",
            "prog.py",
        ])
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "out\x1b[2J\x1b]0;pwned\x07\u{202e}\r\u{9b}31m\n");
    assert!(
        err(&o).starts_with("err\x1b[H\u{200b}FORGED\n"),
        "{}",
        err(&o)
    );
    // --json: ASCII escapes only, decoding to the same text.
    let o = s
        .run(&[
            "sandbox",
            "exec",
            "--json",
            "--workspace",
            w,
            "--",
            "python3",
            "prog.py",
        ])
        .unwrap();
    assert_safe(&o, "exec --json");
    let v: Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(
        v["stdout"],
        "out\x1b[2J\x1b]0;pwned\x07\u{202e}\r\u{9b}31m\n"
    );
    // On a terminal (a pseudo-terminal made by script(1)): escaped.
    let cmd = format!(
        "{} sandbox exec --workspace {w} -- python3 prog.py",
        stele_bin().display()
    );
    let o = clean_command("script", d.path())
        .env("STELE_STATE_DIR", &s.state)
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    // The terminal turns each line feed into CR LF; any other CR is the program's.
    let shown = String::from_utf8_lossy(&o.stdout).replace("\r\n", "\n");
    assert!(terminal_hazards(shown.as_bytes()).is_empty(), "{shown:?}");
    assert!(
        shown.contains("out\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{202e}\\r\\u{9b}31m"),
        "{shown:?}"
    );
    assert!(shown.contains("err\\u{1b}[H\\u{200b}FORGED"), "{shown:?}");
    // The file names as the log shows them.
    let o = s.run(&["audit", "show"]).unwrap();
    assert_safe(&o, "audit show of file names");
    assert!(out(&o).contains("path=\\u{202e}gpj.exe"), "{}", out(&o));
    // A denial quoting a hostile program name (the finance policy allows
    // only python for alice).
    // A program name that does not exist, quoted back escaped; a denial
    // (the finance policy allows only python for alice).
    let o = s
        .run(&[
            "sandbox",
            "exec",
            "--workspace",
            w,
            "--",
            "evil\x1b[2J\u{202e}",
        ])
        .unwrap();
    assert!(!o.status.success());
    assert!(err(&o).contains("evil\\u{1b}[2J\\u{202e}"), "{}", err(&o));
    assert_safe(&o, "exec of an unknown program");
    let finance = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/finance");
    let o = s
        .run(&[
            "sandbox",
            "exec",
            "--policy",
            finance.to_str().unwrap(),
            "--workspace",
            w,
            "--",
            "ls",
        ])
        .unwrap();
    assert_eq!(o.status.code(), Some(126), "{}", err(&o));
    assert!(err(&o).contains("denied: "), "{}", err(&o));
    assert_safe(&o, "exec denial");
}

#[test]
fn error_messages_escape_paths_even_when_they_are_not_utf8() {
    let d = tempfile::tempdir().unwrap();
    let s = setup(d.path());
    let bad = OsStr::from_bytes(b"/nonexistent/r\xe9sum\xe9\x1b[2J\xe2\x80\xae\n  1  FORGED");
    let bad_db = PathBuf::from(bad).join("audit.db");
    for args in [
        vec![
            OsStr::new("sandbox"),
            OsStr::new("exec"),
            OsStr::new("--workspace"),
            bad,
            OsStr::new("--"),
            OsStr::new("true"),
        ],
        vec![
            OsStr::new("audit"),
            OsStr::new("show"),
            OsStr::new("--db"),
            bad_db.as_os_str(),
        ],
        vec![
            OsStr::new("audit"),
            OsStr::new("verify"),
            OsStr::new("--db"),
            bad_db.as_os_str(),
        ],
        vec![OsStr::new("policy"), OsStr::new("validate"), bad],
        vec![
            OsStr::new("keys"),
            OsStr::new("show"),
            OsStr::new("--key"),
            bad,
        ],
    ] {
        let o = stele(&s, &args);
        let what = format!("{args:?}");
        assert!(!o.status.success(), "{what}");
        assert_safe(&o, &what);
        let e = err(&o);
        // Non-UTF-8 bytes as \xNN where stele formats the path, as U+FFFD
        // where another crate's error did; the hazards escaped either way.
        assert!(
            e.contains("r\\xe9sum\\xe9\\u{1b}[2J\\u{202e}\\n")
                || e.contains("r\u{fffd}sum\u{fffd}\\u{1b}[2J\\u{202e}\\n"),
            "{what}: {e}"
        );
        assert!(
            !e.lines().any(|l| l.trim_start().starts_with("1  FORGED")),
            "{what}: {e}"
        );
    }
}

#[test]
fn policy_explain_shows_hostile_names_escaped() {
    let strict = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/strict-default");
    let d = tempfile::tempdir().unwrap();
    let s = Stele::new(&d.path().join("state"));
    for json_mode in [false, true] {
        let mut args = vec![
            "policy",
            "explain",
            strict.to_str().unwrap(),
            "--principal",
            "mallory\u{202e}\x1b[2J",
            "--action",
            "file.read",
            "--resource",
            "File::\"receipts/\u{202e}gpj.exe\u{200b}\"",
        ];
        if json_mode {
            args.push("--json");
        }
        let o = s.run(&args).unwrap();
        assert_safe(&o, "policy explain");
        assert!(o.status.code().is_some(), "{}", err(&o));
    }
}

#[test]
fn a_log_origin_with_hazards_is_refused_at_keys_init() {
    let d = tempfile::tempdir().unwrap();
    let s = Stele::new(&d.path().join("state"));
    for (class, sample) in HOSTILE {
        let origin = format!("example.org/log{sample}");
        let o = s.run(&["keys", "init", "--origin", &origin]).unwrap();
        assert!(!o.status.success(), "{class}: accepted");
        assert!(err(&o).contains("--origin"), "{class}: {}", err(&o));
        assert_safe(&o, class);
    }
    assert!(!s.state.join("keys/log.key").exists());
}
