#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `stele --server URL run` and `stele --server URL watch` end to end: the
//! real `stele` binary as the client of a real `stele serve`, the mock
//! model over the real wire. The run's `--json` lines are exactly the
//! server's events, each once, even across a connection a proxy cuts
//! mid-stream; model text cannot drive the terminal; a step waiting for
//! approval says where it waits and goes on once answered; Ctrl-C
//! detaches and `watch` reattaches; exit codes are `stele run`'s; refusals
//! (unreachable, bad token, 403, unknown workspace) are clear and non-zero.

mod e2e_common;
mod server_support;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use server_support::api::{answer, wait_pending};
use server_support::{parse_sse, runtime, Server};
use stele_tests::mock_model::Turn;
use stele_tests::sandbox_available;

/// `stele --server URL ARGS…` with `token` in STELE_TOKEN.
fn client(srv: &Server, server: &str, token: &str, args: &[&str]) -> Command {
    let mut c = Command::new(stele_tests::stele_bin());
    c.arg("--server")
        .arg(server)
        .args(args)
        .env("STELE_STATE_DIR", srv.dir.path().join("client-state"))
        .env("STELE_TOKEN", token)
        .env_remove("STELE_TOKEN_FILE")
        .env_remove("STELE_SERVER")
        .stdin(Stdio::null());
    c
}

fn output(mut c: Command) -> Output {
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child)
}

fn wait_output(child: Child) -> Output {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("stele did not finish")
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every event of a session, fetched directly from the API.
fn api_events(srv: &Server, token: &str, id: &str) -> Vec<Value> {
    runtime().block_on(async {
        let body = srv
            .http
            .get(srv.url(&format!("/api/v1/sessions/{id}/events")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        parse_sse(&body).into_iter().map(|(_, v)| v).collect()
    })
}

fn json_lines(stdout: &[u8]) -> Vec<Value> {
    text(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// A TCP proxy to the server that cuts the first `times` event streams,
/// each after `cut_after` bytes of its response (in the headers, mid-event,
/// mid-chunk, depending on where that falls).
struct CuttingProxy {
    url: String,
    cuts: Arc<AtomicUsize>,
}

fn cutting_proxy(target: &str, cut_after: usize, times: usize) -> CuttingProxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let target = target.trim_start_matches("http://").to_string();
    let cuts = Arc::new(AtomicUsize::new(0));
    let cuts2 = cuts.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(client) = conn else { return };
            let server = TcpStream::connect(&target).unwrap();
            let events = Arc::new(AtomicBool::new(false));
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let ev = events.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    let n = c_in.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        let _ = s_out.shutdown(Shutdown::Write);
                        return;
                    }
                    if buf[..n].windows(7).any(|w| w == b"/events") {
                        ev.store(true, Ordering::SeqCst);
                    }
                    if s_out.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
            let cuts = cuts2.clone();
            let (mut s_in, mut c_out) = (server, client);
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                let mut sent = 0usize;
                loop {
                    let n = s_in.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        let _ = c_out.shutdown(Shutdown::Write);
                        return;
                    }
                    if events.load(Ordering::SeqCst) && cuts.load(Ordering::SeqCst) < times {
                        if sent + n >= cut_after {
                            let _ = c_out.write_all(&buf[..cut_after - sent]);
                            cuts.fetch_add(1, Ordering::SeqCst);
                            let _ = c_out.shutdown(Shutdown::Both);
                            let _ = s_in.shutdown(Shutdown::Both);
                            return;
                        }
                        sent += n;
                    }
                    if c_out.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    CuttingProxy { url, cuts }
}

fn push_answer(srv: &Server, said: &str, answer: &str) {
    srv.mock.push(
        Turn::new()
            .text(said)
            .tool_use("l", "file_list", json!({"path": "receipts"}))
            .into(),
    );
    srv.mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": answer}))
            .into(),
    );
}

#[test]
fn a_run_streams_every_event_once_across_a_dropped_connection() {
    if !sandbox_available("a_run_streams_every_event_once_across_a_dropped_connection") {
        return;
    }
    let srv = Server::start("", "");
    let alice = srv.token("alice");
    // Cut in the response's head, in the first event, later, and several
    // times in a row: each time the client picks up after the last event it
    // printed.
    for (cut_after, times) in [(40, 1), (300, 1), (420, 1), (900, 1), (420, 3)] {
        push_answer(&srv, "Reading the receipts.", "two receipts");
        let proxy = cutting_proxy(&srv.base, cut_after, times);
        let o = output(client(
            &srv,
            &proxy.url,
            &alice,
            &[
                "run",
                "--workspace",
                "books",
                "--json",
                "count the receipts",
            ],
        ));
        let case = format!("cut after {cut_after} bytes, {times} times");
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{case}: {err}\n{}", srv.stderr());
        assert_eq!(proxy.cuts.load(Ordering::SeqCst), times, "{case}: {err}");
        assert_eq!(
            err.matches("reconnecting after event").count(),
            times,
            "{case}: {err}"
        );
        let printed = json_lines(&o.stdout);
        let id = printed[0]["session"].as_str().unwrap().to_string();
        // Exactly the server's events, in order, none twice, none missing.
        assert_eq!(printed, api_events(&srv, &alice, &id), "{case}: {err}");
        assert_eq!(printed[0]["event"], "start");
        let end = printed.last().unwrap();
        assert_eq!(
            (end["event"].as_str(), end["outcome"].as_str()),
            (Some("end"), Some("answered")),
            "{case}"
        );
        // Each line is a protocol event, as `stele run --json` prints them.
        for e in &printed {
            let typed: stele_protocol::SessionEvent = serde_json::from_value(e.clone()).unwrap();
            assert_eq!(&serde_json::to_value(&typed).unwrap(), e);
        }
    }
    // The same run for a person: stele run's lines, model text escaped.
    push_answer(&srv, "hi\x1b]0;pwned\x07\x1b[2J there", "done\x1b[31m red");
    let o = output(client(
        &srv,
        &srv.base,
        &alice,
        &["run", "--workspace", "books", "count again"],
    ));
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    for line in [
        "── step 1",
        "   model: hi",
        "   → file_list",
        "   ✓ file_list",
    ] {
        assert!(err.contains(line), "{line:?} missing:\n{err}");
    }
    assert!(err.contains("done"), "{err}");
    let hazards = stele_tests::terminal_hazards(&o.stderr);
    assert!(hazards.is_empty(), "{hazards:?}\n{err}");
    assert!(o.stdout.is_empty(), "{}", text(&o.stdout));
}

/// Lines of a child's stderr, as they come.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    rx
}

fn wait_for_line(rx: &mpsc::Receiver<String>, seen: &mut String, want: &str) {
    let began = Instant::now();
    while !seen.contains(want) {
        let left = Duration::from_secs(60).saturating_sub(began.elapsed());
        match rx.recv_timeout(left) {
            Ok(l) => {
                seen.push_str(&l);
                seen.push('\n');
            }
            Err(_) => panic!("never saw {want:?}:\n{seen}"),
        }
    }
}

async fn grant_first(srv: &Server, approver: &str) -> Value {
    let a = wait_pending(srv, approver, &[]).await;
    assert_eq!(answer(srv, approver, &a, "granted").await.status(), 200);
    a
}

fn push_exec_then_finish(srv: &Server) {
    srv.mock.push(
        Turn::new()
            .tool_use(
                "x",
                "exec",
                json!({"argv": ["python3", "-c", "print(6*7)"]}),
            )
            .into(),
    );
    srv.mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "forty-two"}))
            .into(),
    );
}

#[test]
fn a_step_waiting_for_approval_says_where_and_goes_on_once_answered() {
    if !sandbox_available("a_step_waiting_for_approval_says_where_and_goes_on_once_answered") {
        return;
    }
    let srv = Server::start(e2e_common::EXEC_NEEDS_APPROVAL, "");
    let (alice, bob) = (srv.token("alice"), srv.token("bob"));
    push_exec_then_finish(&srv);
    let mut child = client(
        &srv,
        &srv.base,
        &alice,
        &["run", "--workspace", "books", "compute"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let rx = stderr_lines(&mut child);
    let mut seen = String::new();
    wait_for_line(&rx, &mut seen, "in the server's approvals queue");
    wait_for_line(&rx, &mut seen, "/api/v1/approvals");
    assert!(seen.contains("python3"), "the question is shown:\n{seen}");
    let a = runtime().block_on(grant_first(&srv, &bob));
    assert!(seen.contains(a["approval_id"].as_str().unwrap()), "{seen}");
    let status = child.wait().unwrap();
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(5)) {
        seen.push_str(&l);
        seen.push('\n');
    }
    assert_eq!(status.code(), Some(0), "{seen}");
    assert!(seen.contains("approval granted by bob"), "{seen}");
    assert!(seen.contains("forty-two"), "{seen}");
}

#[test]
fn ctrl_c_detaches_and_watch_reattaches() {
    if !sandbox_available("ctrl_c_detaches_and_watch_reattaches") {
        return;
    }
    let srv = Server::start(e2e_common::EXEC_NEEDS_APPROVAL, "");
    let (alice, bob) = (srv.token("alice"), srv.token("bob"));
    push_exec_then_finish(&srv);
    let mut child = client(
        &srv,
        &srv.base,
        &alice,
        &["run", "--workspace", "books", "--json", "compute"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut id = String::new();
    loop {
        let mut l = String::new();
        assert!(out.read_line(&mut l).unwrap() > 0, "the run ended early");
        let v: Value = serde_json::from_str(&l).unwrap();
        if v["event"] == "start" {
            id = v["session"].as_str().unwrap().to_string();
        }
        if v["event"] == "approval_requested" {
            break;
        }
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = wait_output(child);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("detached"), "{err}");
    assert!(err.contains(&format!("watch {id}")), "{err}");
    // The session went on waiting on the server; bob answers; watch follows it to the end.
    runtime().block_on(grant_first(&srv, &bob));
    let o = output(client(&srv, &srv.base, &alice, &["watch", &id, "--json"]));
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let printed = json_lines(&o.stdout);
    assert_eq!(printed, api_events(&srv, &alice, &id));
    assert_eq!(printed.last().unwrap()["outcome"], "answered");
    // Someone who may not see it is refused, naming the audit entry.
    let dave = srv.token("dave");
    let o = output(client(&srv, &srv.base, &dave, &["watch", &id]));
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("403") && err.contains("audit entry"), "{err}");
}

#[test]
fn exit_codes_and_refusals_are_those_of_stele_run() {
    if !sandbox_available("exit_codes_and_refusals_are_those_of_stele_run") {
        return;
    }
    let srv = Server::start("", "");
    let (alice, carol) = (srv.token("alice"), srv.token("carol"));
    // A budget that runs out: exit 10, as `stele run`.
    for _ in 0..3 {
        srv.mock.push(
            Turn::new()
                .tool_use("l", "file_list", json!({"path": "."}))
                .into(),
        );
    }
    // (The token from a file this time, which wins over STELE_TOKEN.)
    let token_file = srv.dir.path().join("alice.token");
    std::fs::write(&token_file, format!("{alice}\n")).unwrap();
    let o = output(client(
        &srv,
        &srv.base,
        "stele_not-a-token",
        &[
            "--token-file",
            token_file.to_str().unwrap(),
            "run",
            "--workspace",
            "books",
            "--max-steps",
            "1",
            "list",
        ],
    ));
    assert_eq!(o.status.code(), Some(10), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("stopped:"), "{}", text(&o.stderr));
    let run = |server: &str, token: &str, args: &[&str]| {
        let o = output(client(&srv, server, token, args));
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o.stderr));
        assert!(o.stdout.is_empty());
        text(&o.stderr)
    };
    let task = ["run", "--workspace", "books", "x"];
    // Nothing listening.
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = run(&format!("http://{free}"), &alice, &task);
    assert!(err.contains("cannot reach the server"), "{err}");
    // A token the server does not know.
    let err = run(&srv.base, "stele_not-a-token", &task);
    assert!(
        err.contains("401") && err.contains("stele token create"),
        "{err}"
    );
    // carol's team has no right to the workspace: 403 with the entry recording it.
    let err = run(&srv.base, &carol, &task);
    assert!(err.contains("403") && err.contains("audit entry"), "{err}");
    // A workspace the server does not have.
    let err = run(&srv.base, &alice, &["run", "--workspace", "nope", "x"]);
    assert!(err.contains("no workspace \"nope\""), "{err}");
    // Flags that only mean something on this machine.
    let err = run(
        &srv.base,
        &alice,
        &["run", "--workspace", "books", "--policy", "/tmp", "x"],
    );
    assert!(err.contains("--policy"), "{err}");
    let err = run(
        &srv.base,
        &alice,
        &["run", "--workspace", "books", "--approve", "allow", "x"],
    );
    assert!(err.contains("--approve allow"), "{err}");
    // A token file alone does not send `run` to a server, even with STELE_SERVER set.
    let o = Command::new(stele_tests::stele_bin())
        .args([
            "--token-file",
            "/nonexistent",
            "run",
            "--workspace",
            "books",
            "x",
        ])
        .env("STELE_SERVER", &srv.base)
        .env("STELE_STATE_DIR", srv.dir.path().join("client-state"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("go with `run`, `watch` and `schedule`"),
        "{}",
        text(&o.stderr)
    );
    // --server goes with run and watch only.
    let err = run(&srv.base, &alice, &["audit", "verify"]);
    assert!(
        err.contains("go with `run`, `watch` and `schedule`"),
        "{err}"
    );
    // An unknown session to watch.
    let err = run(&srv.base, &alice, &["watch", "no-such-session"]);
    assert!(err.contains("404"), "{err}");
}

fn sha256_hex(b: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[test]
fn token_list_shows_each_token_and_never_a_secret() {
    let srv = Server::start("", "");
    let config = srv.config.to_str().unwrap().to_string();
    let (a1, a2, b) = (
        srv.token("alice"),
        srv.token_scoped("alice", "read"),
        srv.token("bob"),
    );
    let id = |t: &str| sha256_hex(t.as_bytes())[..12].to_string();
    let o = srv
        .s
        .run(&["token", "revoke", &id(&a2), "--config", &config])
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let db = rusqlite::Connection::open(srv.store()).unwrap();
    let aged = db
        .execute(
            "UPDATE tokens SET expires = 1 WHERE hash LIKE ?1",
            [format!("{}%", id(&b))],
        )
        .unwrap();
    assert_eq!(aged, 1);
    drop(db);
    let list = |more: &[&str]| {
        let mut args = vec!["token", "list", "--config", config.as_str()];
        args.extend_from_slice(more);
        let began = Instant::now();
        loop {
            let o = srv.s.run(&args).unwrap();
            assert!(o.status.success(), "{}", text(&o.stderr));
            // Secrets never: not the tokens, not their hashes.
            for t in [&a1, &a2, &b] {
                let out = text(&o.stdout);
                assert!(!out.contains(t.as_str()), "{out}");
                assert!(!out.contains(&sha256_hex(t.as_bytes())), "{out}");
                assert!(!out.contains(&sha256_hex(t.as_bytes())[..20]), "{out}");
            }
            // The server records host-made tokens as it polls: wait for it.
            if !text(&o.stdout).contains("unrecorded") || began.elapsed() > Duration::from_secs(20)
            {
                return o;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let o = list(&["--json"]);
    let rows = json_lines(&o.stdout);
    let row = |t: &str| {
        rows.iter()
            .find(|r| r["id"] == id(t).as_str())
            .unwrap_or_else(|| panic!("{} not listed: {rows:?}", id(t)))
            .clone()
    };
    let r = row(&a1);
    assert_eq!(
        (r["user"].as_str(), r["state"].as_str(), r["label"].as_str()),
        (Some("alice"), Some("live"), Some("api"))
    );
    assert_eq!(r["scopes"], json!(["read", "run", "approve"]));
    assert!(r["created"].as_str().unwrap().ends_with('Z'));
    assert!(r["revoked"].is_null());
    let r = row(&a2);
    assert_eq!(r["state"], "revoked");
    assert_eq!(r["scopes"], json!(["read"]));
    assert!(r["revoked"].as_str().is_some());
    let r = row(&b);
    assert_eq!(
        (r["user"].as_str(), r["state"].as_str()),
        (Some("bob"), Some("expired"))
    );
    assert_eq!(r["expires"], "1970-01-01T00:00:01Z");
    // One account's tokens only.
    let mine = json_lines(&list(&["--json", "--user", "alice"]).stdout);
    assert_eq!(mine.len(), 2, "{mine:?}");
    assert!(mine.iter().all(|r| r["user"] == "alice"));
    // For people: a header and a line each.
    let o = list(&[]);
    let out = text(&o.stdout);
    assert!(out.starts_with("ID"), "{out}");
    for (t, state) in [(&a1, "live"), (&a2, "revoked"), (&b, "expired")] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&id(t)) && l.ends_with(state)),
            "{state}: {out}"
        );
    }
    // An account that does not exist is a clear error.
    let o = srv
        .s
        .run(&["token", "list", "--user", "nobody", "--config", &config])
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("no account \"nobody\""),
        "{}",
        text(&o.stderr)
    );
}

/// `stele --server URL ARGS…` on a terminal of its own (`script` gives it a
/// pseudo-terminal): what it prints comes back on the child's stdout, what
/// the test writes to its stdin is typed.
fn on_terminal(srv: &Server, token: &str, args: &[&str]) -> Child {
    let mut line = format!(
        "{} --server {}",
        stele_tests::stele_bin().display(),
        srv.base
    );
    for a in args {
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:".contains(c)));
        line.push(' ');
        line.push_str(a);
    }
    Command::new("script")
        .args(["-qefc", &line, "/dev/null"])
        .env("STELE_STATE_DIR", srv.dir.path().join("client-state"))
        .env("STELE_TOKEN", token)
        .env("TERM", "dumb")
        .env_remove("STELE_SERVER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Everything a terminal shows, as it comes.
fn screen(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let mut out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                return;
            }
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    rx
}

fn wait_for_text(rx: &mpsc::Receiver<String>, seen: &mut String, want: &[&str]) -> usize {
    let began = Instant::now();
    loop {
        if let Some(i) = want.iter().position(|w| seen.contains(w)) {
            return i;
        }
        let left = Duration::from_secs(60).saturating_sub(began.elapsed());
        match rx.recv_timeout(left) {
            Ok(t) => seen.push_str(&t),
            Err(_) => panic!("never saw {want:?}:\n{seen}"),
        }
    }
}

#[test]
fn an_approver_watching_on_a_terminal_answers_there_and_the_requester_cannot() {
    if !sandbox_available(
        "an_approver_watching_on_a_terminal_answers_there_and_the_requester_cannot",
    ) {
        return;
    }
    // The finance template unchanged: letters in outbox/ need another member's approval.
    let srv = Server::start("", "");
    srv.mock.push(
        Turn::new()
            .tool_use(
                "w",
                "file_write",
                json!({"path": "outbox/letter.txt", "content": "Dear Acme"}),
            )
            .into(),
    );
    srv.mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "sent"}))
            .into(),
    );
    let (alice, bob) = (srv.token("alice"), srv.token("bob"));
    // alice runs the task on her terminal: the step waits; she is offered
    // the answer, but her grant cannot lift the four-eyes rule.
    let mut run = on_terminal(&srv, &alice, &["run", "--workspace", "books", "write"]);
    let run_rx = screen(&mut run);
    let mut run_seen = String::new();
    wait_for_text(&run_rx, &mut run_seen, &["answer it here?"]);
    run.stdin.as_mut().unwrap().write_all(b"y\n").unwrap();
    wait_for_text(&run_rx, &mut run_seen, &["your answer was not taken"]);
    // The refusal says why (the rest of its line may come a moment later).
    wait_for_text(&run_rx, &mut run_seen, &["segregation of duties"]);
    assert!(!srv.ws.join("outbox/letter.txt").exists());
    let id = run_seen
        .split("started session ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    // bob watches it on his terminal and grants it there.
    let mut watch = on_terminal(&srv, &bob, &["watch", &id]);
    let watch_rx = screen(&mut watch);
    let mut watch_seen = String::new();
    wait_for_text(&watch_rx, &mut watch_seen, &["answer it here?"]);
    assert!(watch_seen.contains("letter.txt"), "{watch_seen}");
    watch.stdin.as_mut().unwrap().write_all(b"y\n").unwrap();
    wait_for_text(&watch_rx, &mut watch_seen, &["answered: granted"]);
    let status = watch.wait().unwrap();
    while let Ok(t) = watch_rx.recv_timeout(Duration::from_secs(2)) {
        watch_seen.push_str(&t);
    }
    assert_eq!(status.code(), Some(0), "{watch_seen}");
    assert!(watch_seen.contains("sent"), "{watch_seen}");
    // alice's run goes on to its end too.
    let status = run.wait().unwrap();
    while let Ok(t) = run_rx.recv_timeout(Duration::from_secs(2)) {
        run_seen.push_str(&t);
    }
    assert_eq!(status.code(), Some(0), "{run_seen}");
    assert!(run_seen.contains("approval granted by bob"), "{run_seen}");
    assert_eq!(
        std::fs::read_to_string(srv.ws.join("outbox/letter.txt")).unwrap(),
        "Dear Acme"
    );
    // The grant is bob's, by token, once.
    let events = api_events(&srv, &alice, &id);
    let grants: Vec<&Value> = events
        .iter()
        .filter(|e| e["decision"] == "granted")
        .collect();
    assert_eq!(grants.len(), 1, "{events:?}");
    assert_eq!(grants[0]["approver"], "bob");
}

#[test]
fn a_prompt_gives_way_when_someone_else_answers_first() {
    if !sandbox_available("a_prompt_gives_way_when_someone_else_answers_first") {
        return;
    }
    let srv = Server::start(e2e_common::EXEC_NEEDS_APPROVAL, "");
    let (alice, bob) = (srv.token("alice"), srv.token("bob"));
    push_exec_then_finish(&srv);
    let mut run = on_terminal(&srv, &alice, &["run", "--workspace", "books", "compute"]);
    let rx = screen(&mut run);
    let mut seen = String::new();
    wait_for_text(&rx, &mut seen, &["answer it here?"]);
    // Nobody types at alice's terminal; bob answers from elsewhere.
    runtime().block_on(grant_first(&srv, &bob));
    wait_for_text(&rx, &mut seen, &["answered elsewhere"]);
    let status = run.wait().unwrap();
    while let Ok(t) = rx.recv_timeout(Duration::from_secs(2)) {
        seen.push_str(&t);
    }
    assert_eq!(status.code(), Some(0), "{seen}");
    assert!(seen.contains("approval granted by bob"), "{seen}");
    assert!(seen.contains("forty-two"), "{seen}");
}

#[test]
fn a_session_paused_on_the_server_exits_75_as_stele_run() {
    if !sandbox_available("a_session_paused_on_the_server_exits_75_as_stele_run") {
        return;
    }
    let srv = Server::start("", "");
    let alice = srv.token("alice");
    // The provider refuses the server's credentials: the run pauses, resumable.
    srv.mock
        .push(stele_tests::mock_model::Reply::unauthorized());
    for json in [false, true] {
        let mut args = vec!["run", "--workspace", "books", "count"];
        if json {
            args.insert(1, "--json");
        }
        let o = output(client(&srv, &srv.base, &alice, &args));
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(75), "{err}");
        if json {
            let end = json_lines(&o.stdout).pop().unwrap();
            assert_eq!(end["outcome"], "paused", "{end}");
            assert_eq!(end["resumable"], true, "{end}");
        } else {
            assert!(err.contains("paused: authentication failed"), "{err}");
            assert!(err.contains("paused and resumable"), "{err}");
        }
        srv.mock
            .push(stele_tests::mock_model::Reply::unauthorized());
    }
}
