#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Resume pairs every result with its own call, whatever ids the server sends: none at all
//! (OpenAI-compatible servers), or the same one in every call and turn. A "model" that reads
//! its tool results (a responder on the mock) appends steps 1..N to a file, one `exec` per
//! turn, beside a parallel `file_list`; `stele` is killed during a tool call, or at random
//! points again and again, and resumed each time. Every request the model receives must pair
//! each call with its own result (a killed call is never reported as having succeeded with
//! another call's output), and no step may run twice.

mod e2e_common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stele_tests::mock_model::{MockModel, RecordedRequest, Reply, Turn, Wire};
use stele_tests::{intents_closed_once, leaves_json, sandbox_available, Stele};

const APPEND: &str = "import sys, time\nn = sys.argv[1]\nopen('reports/started-' + n, 'w').close()\ntime.sleep(float(sys.argv[2]))\nwith open('reports/steps.log', 'a') as f:\n    f.write(n + '\\n')\nprint('appended ' + n)\n";

const READ_TOOLS: &str = r#"
@id("test.read-tools")
permit (principal in Team::"finance", action in [Action::"file.read", Action::"file.list"], resource is File)
when { resource.path == "tools" || resource.path like "tools/*" || resource.path like "reports/*" };
"#;

/// How the server names calls.
#[derive(Clone, Copy, Debug)]
enum Ids {
    /// No ids at all.
    Omitted,
    /// The same id for every call, in every turn.
    Repeated,
}

/// One call and what it was told, in one request.
#[derive(Debug)]
struct Pair {
    name: String,
    input: Value,
    result: Option<String>,
}

/// Calls and results of a request, paired by the ids on the wire. Ambiguous or dangling
/// ids are problems.
fn pairs(wire: Wire, body: &Value) -> (Vec<Pair>, Vec<String>) {
    let mut calls: Vec<(String, Pair)> = Vec::new();
    let mut problems = Vec::new();
    let mut results: Vec<(String, String)> = Vec::new();
    for m in body["messages"].as_array().into_iter().flatten() {
        match wire {
            Wire::Anthropic => {
                for c in m["content"].as_array().into_iter().flatten() {
                    match c["type"].as_str() {
                        Some("tool_use") => calls.push((
                            c["id"].as_str().unwrap_or("").into(),
                            Pair {
                                name: c["name"].as_str().unwrap_or("").into(),
                                input: c["input"].clone(),
                                result: None,
                            },
                        )),
                        Some("tool_result") => results.push((
                            c["tool_use_id"].as_str().unwrap_or("").into(),
                            c["content"].as_str().unwrap_or("").into(),
                        )),
                        _ => {}
                    }
                }
            }
            Wire::OpenAi => {
                for c in m["tool_calls"].as_array().into_iter().flatten() {
                    let args = c["function"]["arguments"].as_str().unwrap_or("");
                    calls.push((
                        c["id"].as_str().unwrap_or("").into(),
                        Pair {
                            name: c["function"]["name"].as_str().unwrap_or("").into(),
                            input: serde_json::from_str(args).unwrap_or(Value::Null),
                            result: None,
                        },
                    ));
                }
                if m["role"] == "tool" {
                    results.push((
                        m["tool_call_id"].as_str().unwrap_or("").into(),
                        m["content"].as_str().unwrap_or("").into(),
                    ));
                }
            }
        }
    }
    for (id, text) in results {
        let matching: Vec<usize> = (0..calls.len()).filter(|&i| calls[i].0 == id).collect();
        match matching.as_slice() {
            [i] if calls[*i].1.result.is_none() => calls[*i].1.result = Some(text),
            [_] => problems.push(format!("two results for call {id}")),
            [] => problems.push(format!("a result names no call: {id}")),
            _ => problems.push(format!("{} calls share the id {id}", matching.len())),
        }
    }
    (calls.into_iter().map(|(_, p)| p).collect(), problems)
}

fn step_of(p: &Pair) -> Option<String> {
    (p.name == "exec").then(|| p.input["argv"][2].as_str().unwrap_or("").to_string())
}

fn interrupted(text: &str) -> bool {
    text.contains("NOT re-run") || text.contains("not run: the session stopped")
}

/// Every call in `body` has exactly one result, and it is its own: an `exec` of step k is
/// told "appended k" or that it was interrupted / not run, never another step's output.
fn check(wire: Wire, body: &Value) -> Vec<String> {
    let (pairs, mut problems) = pairs(wire, body);
    for p in &pairs {
        let Some(text) = &p.result else {
            problems.push(format!("call {} {} has no result", p.name, p.input));
            continue;
        };
        match step_of(p) {
            Some(k) => {
                let own = text.contains(&format!("appended {k}\n"));
                let other = text.contains("appended ") && !own;
                if other || (!own && !interrupted(text)) {
                    problems.push(format!("exec of step {k} was told: {text:?}"));
                }
            }
            None if text.contains("appended ") => problems.push(format!(
                "{} {} was told an exec's output: {text:?}",
                p.name, p.input
            )),
            None => {}
        }
    }
    problems
}

/// The model: appends steps 1..n in order, one per turn (with a `file_list` beside it);
/// after an interrupted step it reads the file to learn what happened.
fn respond(wire: Wire, ids: Ids, n: u32, delay: &str, req: &RecordedRequest) -> Reply {
    let (pairs, _) = pairs(wire, &req.json());
    let mut done = 0u32;
    let mut unsure = false;
    for p in &pairs {
        let text = p.result.clone().unwrap_or_default();
        match (step_of(p), p.name.as_str()) {
            (Some(k), _) => {
                let k: u32 = k.parse().unwrap_or(0);
                if text.contains(&format!("appended {k}\n")) {
                    done = done.max(k);
                    unsure = false;
                } else {
                    unsure = true;
                }
            }
            (None, "file_read") => {
                unsure = false;
                for line in text.lines() {
                    if let Ok(k) = line.trim().parse::<u32>() {
                        done = done.max(k);
                    }
                }
            }
            _ => {}
        }
    }
    let id = |i: u32| match ids {
        Ids::Omitted => format!("unused-{i}"),
        Ids::Repeated => "toolu_same".to_string(),
    };
    let mut turn = if unsure {
        Turn::new().tool_use(&id(0), "file_read", json!({"path": "reports/steps.log"}))
    } else if done >= n {
        Turn::new().tool_use(
            &id(0),
            "final_answer",
            json!({"answer": format!("{n} steps")}),
        )
    } else {
        let k = (done + 1).to_string();
        Turn::new()
            .tool_use(
                &id(0),
                "exec",
                json!({"argv": ["python3", "tools/append.py", k, delay]}),
            )
            .tool_use(&id(1), "file_list", json!({"path": "reports"}))
    };
    if matches!(ids, Ids::Omitted) {
        turn = turn.without_ids();
    }
    turn.into()
}

struct Case {
    _dir: tempfile::TempDir,
    s: Stele,
    ws: PathBuf,
    policy: PathBuf,
    mock: MockModel,
    wire: Wire,
}

impl Case {
    fn new(wire: Wire, ids: Ids, n: u32, delay: &'static str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ws = e2e_common::workspace(dir.path());
        std::fs::create_dir_all(ws.join("tools")).unwrap();
        std::fs::write(ws.join("tools/append.py"), APPEND).unwrap();
        std::fs::write(ws.join("reports/steps.log"), "").unwrap();
        stele_tests::share(&ws).unwrap();
        let s = e2e_common::setup(dir.path());
        let policy = e2e_common::policy(dir.path(), wire, READ_TOOLS);
        let mock = MockModel::start().unwrap();
        mock.respond_with(move |r| respond(wire, ids, n, delay, r));
        Self {
            _dir: dir,
            s,
            ws,
            policy,
            mock,
            wire,
        }
    }

    fn spawn(&self, resume: Option<&str>) -> Child {
        let mut c = match resume {
            None => e2e_common::run_command(
                &self.s,
                &self.ws,
                &self.policy,
                self.wire,
                &self.mock,
                &["--max-steps", "60"],
                "Append the steps",
            ),
            Some(id) => {
                let mut c = Command::new(stele_tests::stele_bin());
                c.args(["session", "resume", id, "--max-steps", "60"])
                    .env("STELE_STATE_DIR", &self.s.state)
                    .env("USER", "alice")
                    .envs(e2e_common::env(self.wire, &self.mock));
                c
            }
        };
        // stderr to a file: a pipe nobody reads could fill and block stele.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.s.state.with_file_name("stele-stderr.log"))
            .unwrap();
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap()
    }

    fn session(&self) -> Option<String> {
        let leaves = leaves_json(&self.s, &self.s.state.join("audit.db")).ok()?;
        leaves
            .iter()
            .find(|l| l["kind"] == "session.start")
            .and_then(|l| l["session"]["id"].as_str().map(str::to_string))
    }

    /// Whether the session has ended, successfully.
    fn ended_ok(&self) -> bool {
        leaves_json(&self.s, &self.s.state.join("audit.db"))
            .unwrap()
            .iter()
            .any(|l| l["kind"] == "session.end" && l["outcome"]["status"] == "ok")
    }

    /// Every request the model received pairs each call with its own result.
    fn check_requests(&self) {
        let mut problems = Vec::new();
        let reqs = self.mock.requests();
        for (i, r) in reqs.iter().enumerate() {
            for p in check(self.wire, &r.json()) {
                problems.push(format!("request {i}: {p}"));
            }
        }
        assert!(
            problems.is_empty(),
            "{} requests; {problems:#?}",
            reqs.len()
        );
    }

    /// Each step ran exactly once, in order.
    fn check_steps(&self, n: u32) {
        let text = std::fs::read_to_string(self.ws.join("reports/steps.log")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let want: Vec<String> = (1..=n).map(|k| k.to_string()).collect();
        assert_eq!(lines, want, "steps ran once each, in order");
    }
}

impl Drop for Case {
    /// On failure, what stele said.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.s.state.with_file_name("stele-stderr.log"))
                .unwrap_or_default();
            let tail: String = log
                .chars()
                .rev()
                .take(6000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            eprintln!("--- stele stderr (tail) ---\n{tail}");
        }
    }
}

fn wait(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            panic!("stele still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for(p: &Path, limit: Duration) {
    let t = Instant::now();
    while !p.exists() {
        assert!(t.elapsed() < limit, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A kill during the second step, on a server that sends no ids (or one id for all): the
/// resumed request tells the model step 1 succeeded and step 2 was interrupted — not that
/// step 2 succeeded with step 1's output — and the model finishes without repeating a step.
fn kill_during_a_tool_call_then_resume(wire: Wire, ids: Ids) {
    let c = Case::new(wire, ids, 3, "1.5");
    let mut child = c.spawn(None);
    wait_for(&c.ws.join("reports/started-2"), Duration::from_secs(60));
    child.kill().unwrap();
    child.wait().unwrap();
    let id = c.session().unwrap();
    let before = c.mock.requests().len();
    let mut child = c.spawn(Some(&id));
    let st = wait(&mut child, Duration::from_secs(120));
    assert!(st.success(), "resume failed");
    c.check_requests();
    // The first request after the resume: step 1 appended, step 2 interrupted.
    let (pairs, _) = pairs(wire, &c.mock.requests()[before].json());
    let step = |k: &str| {
        pairs
            .iter()
            .find(|p| step_of(p).as_deref() == Some(k))
            .and_then(|p| p.result.clone())
            .unwrap()
    };
    assert!(step("1").contains("appended 1"), "{}", step("1"));
    assert!(step("2").contains("NOT re-run"), "{}", step("2"));
    c.check_steps(3);
    let leaves = leaves_json(&c.s, &c.s.state.join("audit.db")).unwrap();
    intents_closed_once(&leaves, &id).unwrap();
    // stele's ids are unique in the log; the provider's (when sent) are kept beside them.
    let mut call_ids: Vec<&str> = leaves
        .iter()
        .filter(|l| l["kind"] == "tool.intent")
        .map(|l| l["data"]["call_id"].as_str().unwrap())
        .collect();
    let n = call_ids.len();
    call_ids.sort_unstable();
    call_ids.dedup();
    assert_eq!(call_ids.len(), n, "call ids are unique");
    if let Ids::Repeated = ids {
        assert!(leaves
            .iter()
            .filter(|l| l["kind"] == "tool.intent")
            .all(|l| l["data"]["tool_use_id"] == "toolu_same"));
    }
}

/// A tiny xorshift, seeded from the clock and printed, for kill times.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Kill at random points, resume, repeat; then let it finish.
fn random_crash_loop(wire: Wire, ids: Ids) {
    let seed = std::env::var("STELE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("random_crash_loop {wire:?} {ids:?}: STELE_TEST_SEED={seed}");
    let mut rng = Rng(seed);
    let n = 10;
    let c = Case::new(wire, ids, n, "0.5");
    let mut session: Option<String> = None;
    let mut kills = 0;
    let mut finished = false;
    for _ in 0..40 {
        let mut child = c.spawn(session.as_deref());
        if kills < 12 {
            let ms = 150 + rng.next() % 1400;
            std::thread::sleep(Duration::from_millis(ms));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
                session = session.or_else(|| c.session());
                eprintln!("killed after {ms} ms (session {session:?})");
                // Killed after the session ended (while closing the log): done.
                if c.ended_ok() {
                    finished = true;
                    break;
                }
                continue;
            }
        }
        let st = wait(&mut child, Duration::from_secs(120));
        session = session.or_else(|| c.session());
        eprintln!("exited: {st} (session {session:?})");
        if st.success() {
            finished = true;
            break;
        }
    }
    if !finished {
        let leaves = leaves_json(&c.s, &c.s.state.join("audit.db")).unwrap();
        let ends: Vec<&Value> = leaves
            .iter()
            .filter(|l| l["kind"] == "session.end" || l["kind"] == "interrupted")
            .collect();
        panic!("never finished: {ends:#?}");
    }
    assert!(kills >= 5, "only {kills} kills");
    c.check_requests();
    c.check_steps(n);
    let leaves = leaves_json(&c.s, &c.s.state.join("audit.db")).unwrap();
    intents_closed_once(&leaves, session.as_deref().unwrap()).unwrap();
}

#[test]
fn openai_without_ids_kill_during_a_tool_call_then_resume() {
    if sandbox_available("openai_without_ids_kill_during_a_tool_call_then_resume") {
        kill_during_a_tool_call_then_resume(Wire::OpenAi, Ids::Omitted);
    }
}

#[test]
fn anthropic_without_ids_kill_during_a_tool_call_then_resume() {
    if sandbox_available("anthropic_without_ids_kill_during_a_tool_call_then_resume") {
        kill_during_a_tool_call_then_resume(Wire::Anthropic, Ids::Omitted);
    }
}

#[test]
fn repeated_ids_kill_during_a_tool_call_then_resume() {
    if sandbox_available("repeated_ids_kill_during_a_tool_call_then_resume") {
        kill_during_a_tool_call_then_resume(Wire::OpenAi, Ids::Repeated);
    }
}

#[test]
fn random_crash_loop_without_ids() {
    if sandbox_available("random_crash_loop_without_ids") {
        random_crash_loop(Wire::OpenAi, Ids::Omitted);
    }
}

#[test]
fn random_crash_loop_with_one_id_for_all() {
    if sandbox_available("random_crash_loop_with_one_id_for_all") {
        random_crash_loop(Wire::Anthropic, Ids::Repeated);
    }
}
