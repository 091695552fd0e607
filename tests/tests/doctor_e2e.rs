//! `stele doctor` on a machine with and without each problem: the report
//! says who you are, what the policy lets you do, and each problem with its
//! fix (exit 13), or none (exit 0); `--json` is the same report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod e2e_common;

use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;
use stele_tests::mock_model::Wire;
use stele_tests::Stele;

struct Machine {
    _dir: tempfile::TempDir,
    root: PathBuf,
    s: Stele,
    policy: PathBuf,
    /// A listener standing in for the model's endpoint (reachable).
    endpoint: std::net::TcpListener,
}

impl Machine {
    /// Everything in order: a key, a log, alice in finance, a model with
    /// its key set and its endpoint listening.
    fn healthy() -> Machine {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let s = e2e_common::setup(&root);
        let o = s.run(&["audit", "init"]).unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let policy = e2e_common::policy(&root, Wire::Anthropic, "");
        let endpoint = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        Machine {
            _dir: dir,
            root,
            s,
            policy,
            endpoint,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.endpoint.local_addr().unwrap())
    }

    fn doctor(&self, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let url = self.url();
        let mut args = vec![
            "doctor",
            "--policy",
            self.policy.to_str().unwrap(),
            "--model",
            "anthropic:claude-sonnet-4-5",
        ];
        args.extend_from_slice(extra);
        let mut all = vec![
            ("ANTHROPIC_API_KEY", "sk-test"),
            ("ANTHROPIC_BASE_URL", url.as_str()),
        ];
        all.extend_from_slice(env);
        self.s.run_env(&args, &all).unwrap()
    }

    fn json(&self, extra: &[&str], env: &[(&str, &str)]) -> (Option<i32>, Value) {
        let mut a = extra.to_vec();
        a.push("--json");
        let o = self.doctor(&a, env);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        });
        (o.status.code(), v)
    }
}

fn areas(v: &Value) -> Vec<String> {
    v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["area"].as_str().unwrap().to_string())
        .collect()
}

fn grant(v: &Value, action: &str, resource: &str) -> Option<String> {
    v["grants"].as_array().unwrap().iter().find_map(|g| {
        (g["action"] == action && g["resource"] == resource)
            .then(|| g["effect"].as_str().unwrap().to_string())
    })
}

#[test]
fn a_healthy_machine_has_no_problem_and_says_what_alice_may_do() {
    let m = Machine::healthy();
    let o = m.doctor(&[], &[]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(text.contains("No problems found."), "{text}");
    assert!(text.contains("alice, teams: finance"), "{text}");
    let (code, v) = m.json(&[], &[]);
    assert_eq!(code, Some(0));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["you"]["principal"], "alice");
    assert_eq!(v["you"]["teams"], serde_json::json!(["finance"]));
    // What the finance policy lets alice do, as its rules name it.
    assert_eq!(
        grant(&v, "file.read", "receipts/*").as_deref(),
        Some("allow"),
        "{v}"
    );
    assert_eq!(
        grant(&v, "file.write", "reports/*").as_deref(),
        Some("allow")
    );
    assert_eq!(grant(&v, "exec", "python3").as_deref(), Some("allow"));
    // Models with the endpoint they are served from: the configured one
    // (the policy allows this machine's), not Anthropic's API here.
    assert_eq!(
        grant(
            &v,
            "model.request",
            &format!("anthropic/claude-sonnet-4-5 at {}", m.url())
        )
        .as_deref(),
        Some("allow"),
        "{v}"
    );
    assert_eq!(
        grant(
            &v,
            "model.request",
            "anthropic/claude-sonnet-4-5 at https://api.anthropic.com:443"
        ),
        None,
        "{v}"
    );
    assert_eq!(
        grant(&v, "mcp.call", "gmail/send_email").as_deref(),
        Some("ask")
    );
    // Not what it forbids, nor "anything".
    assert_eq!(grant(&v, "file.read", "*"), None, "{v}");
    assert_eq!(grant(&v, "net.connect", "*"), None);
    assert_eq!(grant(&v, "file.read", "hr/*"), None);
    assert_eq!(v["sandbox"]["process_ready"], true);
    assert_eq!(v["key"]["present"], true);
    let vkey = String::from_utf8_lossy(&m.s.run(&["keys", "show"]).unwrap().stdout)
        .trim()
        .to_string();
    assert_eq!(v["key"]["verifier"], vkey.as_str());
    assert_eq!(v["log"]["present"], true);
    assert!(v["log"]["entries"].as_u64().unwrap() > 0);
    assert_eq!(v["model"]["api_key_variable"], "ANTHROPIC_API_KEY");
    assert_eq!(v["model"]["api_key_set"], true);
    assert_eq!(v["model"]["reachable"], true, "{v}");
    assert!(
        !v.to_string().contains("sk-test"),
        "the key's value is never shown"
    );
}

/// Makes one problem on a healthy machine: the extra arguments and environment.
type MakeProblem = Box<dyn Fn(&Machine) -> (Vec<String>, Vec<(String, String)>)>;

/// Each problem alone: exit 13, that problem (and only it) with its fix.
#[test]
fn each_problem_is_reported_alone_with_its_fix() {
    let cases: Vec<(&str, MakeProblem, &str, &str)> = vec![
        (
            "key",
            Box::new(|m: &Machine| {
                std::fs::remove_file(m.s.state.join("keys/log.key")).unwrap();
                (vec![], vec![])
            }),
            "no audit signing key at",
            "stele keys init",
        ),
        (
            "you",
            Box::new(|_| (vec!["--user".into(), "dave".into()], vec![])),
            "you (dave) are not in this policy's members list",
            "ask whoever maintains the policy to add you to a team",
        ),
        (
            "policy",
            Box::new(|m: &Machine| {
                std::fs::write(m.policy.join("org/broken.cedar"), "permit (").unwrap();
                (vec![], vec![])
            }),
            "does not load",
            "stele policy validate",
        ),
        (
            "policy",
            Box::new(|_| {
                (
                    vec!["--offline".into()],
                    vec![("ANTHROPIC_BASE_URL".into(), "https://api.anthropic.com".into())],
                )
            }),
            "the policy does not allow your model anthropic/claude-sonnet-4-5 at https://api.anthropic.com:443",
            "ask for a `model.request` permit naming this model and endpoint",
        ),
        (
            "log",
            Box::new(|m: &Machine| {
                std::fs::write(m.s.state.join("audit.db"), b"not a database, not at all").unwrap();
                (vec![], vec![])
            }),
            "cannot be read",
            "stele audit verify",
        ),
        (
            "model",
            Box::new(|_| (vec![], vec![("ANTHROPIC_API_KEY".into(), String::new())])),
            "ANTHROPIC_API_KEY",
            "api_key_env",
        ),
        (
            "model",
            Box::new(|_| {
                let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let url = format!("http://{}", closed.local_addr().unwrap());
                drop(closed);
                (vec![], vec![("ANTHROPIC_BASE_URL".into(), url)])
            }),
            "is not reachable",
            "ANTHROPIC_BASE_URL",
        ),
    ];
    for (area, make, what, fix) in cases {
        let m = Machine::healthy();
        let (args, env) = make(&m);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let (code, v) = m.json(&args, &env);
        assert_eq!(code, Some(13), "{area}: {v}");
        assert_eq!(v["ok"], false);
        assert_eq!(areas(&v), vec![area.to_string()], "{area} alone: {v}");
        let p = &v["problems"][0];
        assert!(p["what"].as_str().unwrap().contains(what), "{area}: {p}");
        assert!(p["fix"].as_str().unwrap().contains(fix), "{area}: {p}");
        // The same problem in the text report.
        let o = m.doctor(&args, &env);
        let text = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(13));
        assert!(
            text.contains("Problems (1)") && text.contains(fix),
            "{area}: {text}"
        );
    }
}

#[test]
fn no_model_configured_is_a_problem_and_the_demo_needs_none() {
    let m = Machine::healthy();
    let o =
        m.s.run(&["doctor", "--policy", m.policy.to_str().unwrap(), "--json"])
            .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(13));
    assert_eq!(areas(&v), vec!["model".to_string()], "{v}");
    assert!(v["problems"][0]["fix"]
        .as_str()
        .unwrap()
        .contains("stele demo"));
}

#[test]
fn a_host_that_cannot_sandbox_is_a_problem() {
    let m = Machine::healthy();
    stele_tests::share(&m.root).unwrap();
    let url = m.url();
    let o = std::process::Command::new("setpriv")
        .args(["--reuid=2013265925", "--regid=2013265925", "--clear-groups"])
        .arg(stele_tests::stele_bin())
        .args(["doctor", "--json", "--offline", "--policy"])
        .arg(&m.policy)
        .args(["--model", "anthropic:claude-sonnet-4-5"])
        .env("STELE_STATE_DIR", &m.s.state)
        .env("HOME", &m.root)
        .env("USER", "alice")
        .env("ANTHROPIC_API_KEY", "k")
        .env("ANTHROPIC_BASE_URL", url)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    if v["sandbox"]["process_ready"] == true {
        eprintln!("SKIPPED: this host sandboxes unprivileged users too");
        return;
    }
    assert!(areas(&v).contains(&"sandbox".to_string()), "{v}");
    let p = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["area"] == "sandbox")
        .unwrap();
    assert!(
        p["fix"].as_str().unwrap().contains("stele sandbox check"),
        "{p}"
    );
    let missing: Vec<&Value> = v["sandbox"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["available"] == false)
        .collect();
    assert!(!missing.is_empty(), "the missing layer is named: {v}");
}
