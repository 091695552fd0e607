#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The model provider configured in the config file (`[provider.NAME]`): base URL, the API
//! key's variable, output tokens; `ANTHROPIC_BASE_URL` as an override that a managed file
//! pins; plain http off this machine refused; bad values named by table and field. And the
//! endpoint under policy: the templates allow Anthropic's API only, so a model served from
//! elsewhere is denied with the rule that would allow it — which, added, works.

mod e2e_common;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::json;
use stele_tests::mock_model::{MockModel, Turn, Wire};
use stele_tests::{leaves_json, sandbox_available, Stele};

struct Case {
    dir: tempfile::TempDir,
    s: Stele,
    ws: PathBuf,
    mock: MockModel,
}

impl Case {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ws = e2e_common::workspace(dir.path());
        let s = e2e_common::setup(dir.path());
        Self {
            s,
            ws,
            mock: MockModel::start().unwrap(),
            dir,
        }
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `stele run` with `policy` (None: the built-in default), `model`, and exactly `env`
    /// (plus a user config file, `config`).
    fn run(
        &self,
        policy: Option<&Path>,
        model: &str,
        config: &str,
        env: &[(&str, &str)],
    ) -> Output {
        let cfg = self.file("user.toml", config);
        let mut args = vec![
            "run",
            "--workspace",
            self.ws.to_str().unwrap(),
            "--user",
            "alice",
            "--model",
            model,
        ];
        if let Some(p) = policy {
            args.extend(["--policy", p.to_str().unwrap()]);
        }
        args.push("Say ok");
        let xdg = self.dir.path().join("xdg");
        let mut all = vec![
            ("STELE_CONFIG", cfg.to_str().unwrap().to_string()),
            ("XDG_CONFIG_HOME", xdg.to_str().unwrap().to_string()),
            ("ANTHROPIC_API_KEY", String::new()),
            ("ANTHROPIC_BASE_URL", String::new()),
            ("OPENAI_BASE_URL", String::new()),
        ];
        all.retain(|(k, _)| !env.iter().any(|(e, _)| e == k));
        let owned: Vec<(&str, String)> = all
            .into_iter()
            .chain(env.iter().map(|(k, v)| (*k, v.to_string())))
            .collect();
        let refs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.s.run_env(&args, &refs).unwrap()
    }

    fn finance(&self) -> PathBuf {
        e2e_common::policy(self.dir.path(), Wire::Anthropic, "")
    }

    fn ok(&self) {
        self.mock.push(
            Turn::new()
                .tool_use("t", "final_answer", json!({"answer": "ok"}))
                .into(),
        );
    }

    fn start(&self) -> serde_json::Value {
        let leaves = leaves_json(&self.s, &self.s.state.join("audit.db")).unwrap();
        leaves
            .into_iter()
            .rev()
            .find(|l| l["kind"] == "session.start")
            .unwrap()
    }
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const MODEL: &str = "anthropic:claude-sonnet-4-5";

#[test]
fn base_url_key_variable_and_max_tokens_from_the_config_file() {
    if !sandbox_available("base_url_key_variable_and_max_tokens_from_the_config_file") {
        return;
    }
    let c = Case::new();
    c.ok();
    let config = format!(
        "[provider.anthropic]\nbase_url = \"{}\"\napi_key_env = \"MY_CLAUDE_KEY\"\nmax_tokens = 1234\n",
        c.mock.base_url()
    );
    let o = c.run(
        Some(&c.finance()),
        MODEL,
        &config,
        &[("MY_CLAUDE_KEY", "sk-ant-from-my-var")],
    );
    assert!(o.status.success(), "{}", err(&o));
    let r = &c.mock.requests()[0];
    assert_eq!(r.json()["max_tokens"], 1234);
    assert_eq!(r.header("x-api-key"), Some("sk-ant-from-my-var"));
    let start = c.start();
    assert_eq!(start["data"]["model_base_url"], c.mock.base_url());
    assert_eq!(start["data"]["model_base_url_source"], "user");

    // The variable named but not set: the error names it and the setting.
    let o = c.run(Some(&c.finance()), MODEL, &config, &[]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("MY_CLAUDE_KEY") && err(&o).contains("api_key_env"),
        "{}",
        err(&o)
    );
}

#[test]
fn the_environment_overrides_the_user_but_not_a_managed_pin() {
    if !sandbox_available("the_environment_overrides_the_user_but_not_a_managed_pin") {
        return;
    }
    let c = Case::new();
    let key = ("ANTHROPIC_API_KEY", "sk-ant-test");
    // The user's base URL is closed; ANTHROPIC_BASE_URL points at the mock and wins.
    c.ok();
    let user = "[provider.anthropic]\nbase_url = \"http://127.0.0.1:9\"\n";
    let url = c.mock.base_url();
    let o = c.run(
        Some(&c.finance()),
        MODEL,
        user,
        &[key, ("ANTHROPIC_BASE_URL", &url)],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        c.start()["data"]["model_base_url_source"],
        "ANTHROPIC_BASE_URL"
    );

    // A managed file pins the base URL: a different ANTHROPIC_BASE_URL is refused, naming both.
    let managed = c.file(
        "managed.toml",
        &format!("[provider.anthropic]\nbase_url = \"{url}\"\n"),
    );
    let m = managed.to_str().unwrap();
    let o = c.run(
        Some(&c.finance()),
        MODEL,
        "",
        &[
            key,
            ("STELE_MANAGED_CONFIG", m),
            ("ANTHROPIC_BASE_URL", "https://evil.example"),
        ],
    );
    assert!(!o.status.success());
    let e = err(&o);
    assert!(
        e.contains("pinned") && e.contains("managed.toml") && e.contains("evil.example"),
        "{e}"
    );
    // The same value is fine, as is none.
    c.ok();
    let o = c.run(
        Some(&c.finance()),
        MODEL,
        user,
        &[key, ("STELE_MANAGED_CONFIG", m)],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert!(c.start()["data"]["model_base_url_source"]
        .as_str()
        .unwrap()
        .starts_with("managed"));
}

#[test]
fn plain_http_to_another_machine_is_refused_unless_allowed() {
    if !sandbox_available("plain_http_to_another_machine_is_refused_unless_allowed") {
        return;
    }
    let c = Case::new();
    let key = ("ANTHROPIC_API_KEY", "sk-ant-test");
    let config = "[provider.anthropic]\nbase_url = \"http://192.0.2.10:8000\"\n";
    let o = c.run(None, MODEL, config, &[key]);
    assert_eq!(o.status.code(), Some(1));
    let e = err(&o);
    assert!(
        e.contains("http://192.0.2.10:8000") && e.contains("allow_plain_http = true"),
        "{e}"
    );
    assert!(
        !c.s.state.join("audit.db").exists()
            || leaves_json(&c.s, &c.s.state.join("audit.db"))
                .unwrap()
                .iter()
                .all(|l| l["kind"] != "session.start"),
        "refused before any session"
    );
    // From the environment too.
    let o = c.run(
        None,
        MODEL,
        "",
        &[key, ("ANTHROPIC_BASE_URL", "http://192.0.2.10:8000")],
    );
    assert!(err(&o).contains("allow_plain_http"), "{}", err(&o));
    // https to another machine, http on this one, and plain http where the configuration
    // allows it, are not refused for it (the session starts; policy decides the endpoint).
    for (url, allow) in [
        ("https://192.0.2.10:8443", ""),
        ("http://localhost:9", ""),
        ("http://[::1]:9", ""),
        ("http://192.0.2.10:8000", "allow_plain_http = true\n"),
    ] {
        let cfg = format!("[provider.anthropic]\nbase_url = \"{url}\"\n{allow}connect_timeout_secs = 0.2\npatience_secs = 0.5\n");
        let o = c.run(None, MODEL, &cfg, &[key]);
        assert!(!err(&o).contains("allow_plain_http"), "{url}: {}", err(&o));
        assert_eq!(o.status.code(), Some(2), "{url}: {}", err(&o));
    }
}

#[test]
fn bad_provider_settings_name_the_table_and_field() {
    let c = Case::new();
    let key = ("ANTHROPIC_API_KEY", "sk-ant-test");
    for (cfg, want) in [
        (
            "[provider.anthropic]\nstall_timeout_secs = 0\n",
            "[provider.anthropic] stall_timeout_secs",
        ),
        (
            "[provider.anthropic]\nmax_tokens = 0\n",
            "[provider.anthropic] max_tokens",
        ),
        (
            "[provider.anthropic]\napi_key_env = \"not a name\"\n",
            "[provider.anthropic] api_key_env",
        ),
        (
            "[provider.anthropic]\nbase_url = \"ftp://x\"\n",
            "[provider.anthropic] base_url",
        ),
        (
            "[provider.anthropic]\npatience = 5\n",
            "unknown field `patience`",
        ),
    ] {
        let o = c.run(None, MODEL, cfg, &[key]);
        assert_eq!(o.status.code(), Some(1), "{cfg}");
        assert!(err(&o).contains(want), "{cfg}: {}", err(&o));
    }
}

#[test]
fn run_help_documents_the_provider_settings() {
    let c = Case::new();
    let o = c.s.run(&["run", "--help"]).unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    for word in [
        "[provider.PROVIDER]",
        "api_key_env",
        "max_tokens",
        "stall_timeout_secs",
        "patience_secs",
        "ANTHROPIC_BASE_URL",
        "allow_plain_http",
    ] {
        assert!(
            help.contains(word),
            "{word} missing from `stele run --help`:\n{help}"
        );
    }
}

/// The templates allow Anthropic models from Anthropic's API only: a base URL elsewhere (the
/// mock on this machine) is denied before any byte reaches it, and the message gives the rule
/// that would allow it.
#[test]
fn a_model_served_elsewhere_is_denied_by_the_templates() {
    if !sandbox_available("a_model_served_elsewhere_is_denied_by_the_templates") {
        return;
    }
    let c = Case::new();
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/finance");
    let url = c.mock.base_url();
    let o = c.run(
        Some(&template),
        MODEL,
        "",
        &[
            ("ANTHROPIC_API_KEY", "sk-ant-test"),
            ("ANTHROPIC_BASE_URL", &url),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains(r#"resource == Model::"anthropic/claude-sonnet-4-5""#),
        "{}",
        err(&o)
    );
    assert!(
        err(&o).contains(r#"resource.host == "127.0.0.1""#),
        "{}",
        err(&o)
    );
    assert!(c.mock.requests().is_empty(), "nothing was sent");
    let leaves = leaves_json(&c.s, &c.s.state.join("audit.db")).unwrap();
    let d = leaves
        .iter()
        .find(|l| l["kind"] == "policy.decision" && l["target"]["model"].is_string())
        .unwrap();
    assert_eq!(d["decision"]["effect"], "deny");
    assert_eq!(
        (d["target"]["host"].as_str(), d["target"]["scheme"].as_str()),
        (Some("127.0.0.1"), Some("http"))
    );
}

/// An `openai-compat:` model with the default policy (no bundle configured): denied with the
/// rule to add; the bundle plus that very rule runs the session.
#[test]
fn openai_compat_with_the_default_policy_says_what_to_allow() {
    if !sandbox_available("openai_compat_with_the_default_policy_says_what_to_allow") {
        return;
    }
    let c = Case::new();
    let url = c.mock.base_url();
    let env = [("OPENAI_BASE_URL", url.as_str())];
    let o = c.run(None, "openai-compat:llama3.1", "", &env);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let e = err(&o);
    let start = e
        .find("permit (")
        .unwrap_or_else(|| panic!("no rule in: {e}"));
    let rule = &e[start..=start + e[start..].find("};").unwrap() + 1];
    assert!(
        rule.contains(r#"Model::"openai/llama3.1""#) && rule.contains("127.0.0.1"),
        "{rule}"
    );
    // The built-in bundle plus the rule the message gave.
    let bundle = c.dir.path().join("xdg/stele/policy");
    for f in ["schema.cedarschema", "members.toml", "org/strict.cedar"] {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../policies/strict-default")
            .join(f);
        std::fs::create_dir_all(bundle.join(f).parent().unwrap()).unwrap();
        std::fs::copy(src, bundle.join(f)).unwrap();
    }
    std::fs::write(
        bundle.join("org/local-model.cedar"),
        format!("@id(\"local-model\")\n{rule}\n"),
    )
    .unwrap();
    c.ok();
    let o = c.run(None, "openai-compat:llama3.1", "", &env);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(c.start()["data"]["policy_source"], "user-config");
}
