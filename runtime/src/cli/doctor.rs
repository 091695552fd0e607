//! `stele doctor`: who I am here, what the policy lets me do, and whether
//! the sandbox, the key, the log and the model are ready — each problem
//! with its fix. Reads only: nothing is written, no session is started.

pub mod grants;
pub mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use stele_policy::{Bundle, SandboxFacts};

use self::report::{
    DoctorReport, KeyState, LayerState, LogState, ModelState, PolicyState, Problem, SandboxState,
    You,
};
use crate::paths;
use crate::terminal_safe;

/// Arguments of `stele doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// The person to check for [default: $USER, else $LOGNAME].
    #[arg(long)]
    pub user: Option<String>,
    /// Policy bundle [default: as `stele run` finds it].
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Model as PROVIDER:NAME [default: `model` in the config].
    #[arg(long)]
    pub model: Option<String>,
    /// Audit database [default: $STATE/audit.db].
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Signing key [default: $STATE/keys/log.key].
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Do not try to connect to the model's endpoint.
    #[arg(long)]
    pub offline: bool,
    /// Print the report as one JSON object (docs/json/doctor.schema.json).
    #[arg(long)]
    pub json: bool,
}

/// Run `stele doctor`: exit 0 when nothing is wrong, 13 when a problem was found.
pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let report = examine(&args)?;
    if args.json {
        crate::outln!(
            "{}",
            terminal_safe::json_pretty(&serde_json::to_value(&report)?)
        );
    } else {
        crate::out!("{}", render(&report));
    }
    Ok(super::exit::status(if report.ok {
        super::exit::OK
    } else {
        super::exit::PROBLEMS
    }))
}

/// Gather the report.
pub fn examine(args: &DoctorArgs) -> anyhow::Result<DoctorReport> {
    // A configuration that does not load is itself the answer.
    let layers = crate::config::load()?;
    let policy_flag = layers.pick("policy", args.policy.clone(), |c| c.policy.clone())?;
    let model = layers.pick("model", args.model.clone(), |c| c.model.clone())?;
    let db = layers
        .pick("db", args.db.clone(), |c| c.db.clone())?
        .unwrap_or_else(paths::default_db);
    let key = layers
        .pick("key", args.key.clone(), |c| c.key.clone())?
        .unwrap_or_else(paths::default_key);
    let network = layers.pick("network", None, |c| c.network)?;
    let mut problems = Vec::new();
    let mut problem = |area: &str, what: String, fix: &str| {
        problems.push(Problem {
            area: area.into(),
            what,
            fix: fix.into(),
        })
    };

    let principal = match crate::principal::from_flag_or_env(args.user.as_deref(), "") {
        Ok(p) if !p.is_empty() => Some(p),
        Ok(_) => {
            problem(
                "you",
                "no user: neither --user nor $USER nor $LOGNAME is set".into(),
                "give --user NAME (a name in the policy's members.toml)",
            );
            None
        }
        Err(e) => {
            problem("you", e.to_string(), "give --user NAME");
            None
        }
    };

    let (policy, bundle) = match crate::policy_location::resolve(policy_flag.as_deref()) {
        Ok(located) => match Bundle::load(&located.path) {
            Ok(b) => (
                PolicyState {
                    path: Some(located.path.display().to_string()),
                    source: Some(located.origin.as_str().to_string()),
                    digest: Some(b.digest().to_string()),
                    teams: b.teams().map(str::to_string).collect(),
                    error: None,
                },
                Some(b),
            ),
            Err(e) => {
                problem(
                    "policy",
                    format!(
                        "the policy bundle {} does not load: {e}",
                        located.path.display()
                    ),
                    "fix the file it names (`stele policy validate BUNDLE` shows every error)",
                );
                (
                    PolicyState {
                        path: Some(located.path.display().to_string()),
                        source: Some(located.origin.as_str().to_string()),
                        digest: None,
                        teams: Vec::new(),
                        error: Some(e.to_string()),
                    },
                    None,
                )
            }
        },
        Err(e) => {
            problem(
                "policy",
                e.to_string(),
                "give --policy BUNDLE or set `policy` in the config",
            );
            (
                PolicyState {
                    path: None,
                    source: None,
                    digest: None,
                    teams: Vec::new(),
                    error: Some(e.to_string()),
                },
                None,
            )
        }
    };

    let teams: Vec<String> = match (&bundle, &principal) {
        (Some(b), Some(p)) => b.members().teams_of(p).map(str::to_string).collect(),
        _ => Vec::new(),
    };
    if let (Some(b), Some(p)) = (&bundle, &principal) {
        if teams.is_empty() && b.teams().next().is_some() {
            problem(
                "you",
                format!(
                    "you ({p}) are not in this policy's members list ({}), so rules written \
                     for its teams ({}) do not apply to you",
                    b.root().join("members.toml").display(),
                    b.teams().collect::<Vec<_>>().join(", ")
                ),
                "ask whoever maintains the policy to add you to a team, or give --user",
            );
        }
    }

    let facts = SandboxFacts {
        network: match network {
            Some(super::setup::NetworkChoice::Proxy) => stele_policy::Network::ViaProxy,
            _ => stele_policy::Network::Disabled,
        },
        ..SandboxFacts::default()
    };
    // The model first: its endpoint is part of what policy decides about it.
    let (model_state, configured) =
        model_state(&layers, model.as_deref(), args.offline, &mut problem);
    let mut endpoints: Vec<stele_policy::ModelEndpoint> =
        configured.iter().map(|(_, e)| e.clone()).collect();
    endpoints.extend(grants::default_endpoints());
    if let Some(b) = &bundle {
        endpoints.extend(grants::policy_endpoints(b.root()));
    }
    let grants = match (&bundle, &principal) {
        (Some(b), Some(p)) => grants::probe(b, p, facts, &endpoints),
        _ => Vec::new(),
    };
    // (Not said again for someone who is not a member: that is the cause.)
    let member_or_no_teams =
        !teams.is_empty() || bundle.as_ref().is_some_and(|b| b.teams().next().is_none());
    if let (Some(b), Some(p), true) = (&bundle, &principal, member_or_no_teams) {
        if !grants.iter().any(|g| g.action == "model.request") {
            problem(
                "policy",
                "the policy allows you no model it names, so a run stops at its first model \
                 request"
                    .into(),
                "ask for a `model.request` permit (docs/policy-guide.md)",
            );
        } else if let Some((resource, endpoint)) = &configured {
            if let Some(why) = model_refused(b, p, facts, resource) {
                problem(
                    "policy",
                    format!(
                        "the policy does not allow your model {} at {endpoint}: {why}",
                        resource.entity_id()
                    ),
                    "use a model the policy allows you (listed above), or ask for a \
                     `model.request` permit naming this model and endpoint \
                     (docs/policy-guide.md, \"Models and their endpoints\")",
                );
            }
        }
    }

    let sandbox = sandbox_state(&mut problem);
    let key_state = key_state(&key, &mut problem);
    let log_state = log_state(&db, &mut problem);

    Ok(DoctorReport {
        ok: problems.is_empty(),
        you: You { principal, teams },
        policy,
        grants,
        sandbox,
        key: key_state,
        log: log_state,
        model: model_state,
        problems,
    })
}

fn sandbox_state(problem: &mut impl FnMut(&str, String, &str)) -> SandboxState {
    use stele_sandbox::check::{Availability, LayerReport};
    let r = LayerReport::probe();
    let layer = |name: String, a: &Availability| LayerState {
        name,
        available: a.is_available(),
        detail: match a {
            Availability::Available => None,
            Availability::Unavailable(why) => Some(why.clone()),
        },
    };
    let mut layers: Vec<LayerState> = r
        .namespaces
        .iter()
        .map(|(l, a)| layer(l.to_string(), a))
        .collect();
    layers.push(LayerState {
        name: "landlock".into(),
        available: r.landlock_abi > 0,
        detail: r.landlock_detail.clone(),
    });
    layers.push(layer("seccomp".into(), &r.seccomp));
    layers.push(layer("fuse (/dev/fuse)".into(), &r.fuse));
    layers.push(layer("mount_setattr".into(), &r.mount_setattr));
    layers.push(layer("pidfd".into(), &r.pidfd));
    let verdict = r.require(&Default::default());
    if let Err(e) = &verdict {
        problem(
            "sandbox",
            format!("the process sandbox cannot start here: {e}"),
            &format!(
                "stele needs {}; `stele sandbox check` shows each layer",
                super::exit::SANDBOX_NEEDS
            ),
        );
    }
    let vm = super::vm::probe();
    SandboxState {
        process_ready: verdict.is_ok(),
        layers,
        landlock_abi: r.landlock_abi,
        microvm_ready: vm.ready(),
        microvm_detail: (!vm.ready()).then(|| match &vm.image {
            Err(_) => "no guest image yet: it is built the first time a session asks for \
                       `--backend vm` (or now: `stele vm image build`)"
                .to_string(),
            Ok(_) => "see `stele vm check`".to_string(),
        }),
    }
}

fn key_state(key: &std::path::Path, problem: &mut impl FnMut(&str, String, &str)) -> KeyState {
    match super::state::signing_key(key) {
        Ok(s) => KeyState {
            path: key.display().to_string(),
            present: true,
            verifier: Some(s.verifier().to_string()),
            error: None,
        },
        Err(e) => {
            let missing = !key.exists();
            problem(
                "key",
                if missing {
                    format!("no audit signing key at {}", key.display())
                } else {
                    format!("{e:#}")
                },
                if missing {
                    "stele keys init"
                } else {
                    "fix the key file's mode (chmod 600) or give --key FILE"
                },
            );
            KeyState {
                path: key.display().to_string(),
                present: false,
                verifier: None,
                error: Some(format!("{e:#}")),
            }
        }
    }
}

fn log_state(db: &std::path::Path, problem: &mut impl FnMut(&str, String, &str)) -> LogState {
    let mut s = LogState {
        path: db.display().to_string(),
        present: db.exists(),
        entries: None,
        checkpoint_size: None,
        error: None,
    };
    // No log yet is not a problem: the first session creates it.
    if !s.present {
        return s;
    }
    match stele_audit::Store::open(db).and_then(|st| Ok((st.size()?, st.latest_checkpoint()?))) {
        Ok((size, cp)) => {
            s.entries = Some(size);
            s.checkpoint_size = cp.map(|(n, _)| n);
        }
        Err(e) => {
            problem(
                "log",
                format!("the audit log {} cannot be read: {e}", db.display()),
                "`stele audit verify` says what is wrong; keep the file for review, start a \
                 new log with --db",
            );
            s.error = Some(e.to_string());
        }
    }
    s
}

/// Why policy denies `principal` a request to `model`, in one line (`None`: allowed or asks).
fn model_refused(
    bundle: &Bundle,
    principal: &str,
    facts: SandboxFacts,
    model: &stele_policy::Resource,
) -> Option<String> {
    let request = stele_policy::Request::builder(
        principal,
        stele_policy::Action::ModelRequest,
        model.clone(),
    )
    .session("doctor")
    .sandbox(facts)
    .build()
    .ok()?;
    let d = bundle.decide(&request);
    (d.effect == stele_policy::Effect::Deny).then(|| stele_policy::explain::summary(&d))
}

/// The configured model as policy sees it: the `Model` resource and its endpoint.
type Configured = Option<(stele_policy::Resource, stele_policy::ModelEndpoint)>;

fn model_state(
    layers: &crate::config::Layers,
    spec: Option<&str>,
    offline: bool,
    problem: &mut impl FnMut(&str, String, &str),
) -> (ModelState, Configured) {
    let mut s = ModelState {
        spec: spec.map(str::to_string),
        endpoint: None,
        api_key_variable: None,
        api_key_set: false,
        reachable: None,
        detail: None,
    };
    let Some(spec) = spec else {
        problem(
            "model",
            "no model configured".into(),
            "give --model PROVIDER:NAME (e.g. anthropic:claude-sonnet-4-5) or set `model` in \
             the config; `stele demo` needs none",
        );
        return (s, None);
    };
    // As `stele run` configures it: [provider.NAME] (managed over user), then
    // the base-URL variable, which a managed base_url pins.
    let name = spec.split_once(':').map(|(p, _)| p).unwrap_or(spec);
    let (managed, user) = layers.provider_settings(name);
    let cfg = match crate::provider::ProviderConfig::configure(spec, managed, user) {
        Ok((c, _)) => c,
        Err(e) => {
            problem(
                "model",
                e.to_string(),
                "give --model PROVIDER:NAME, and check [provider.NAME] in the config and \
                 ANTHROPIC_BASE_URL / OPENAI_BASE_URL (docs/providers.md)",
            );
            return (s, None);
        }
    };
    s.endpoint = Some(cfg.base_url.clone());
    let info = crate::provider::ProviderInfo {
        kind: cfg.kind,
        base_url: cfg.base_url.clone(),
        model: cfg.model.clone(),
    };
    let configured = crate::provider::config::model_endpoint(&info)
        .ok()
        .map(|e| {
            let r = stele_policy::Resource::Model {
                provider: crate::agent::provider_name(info.kind).into(),
                name: info.model.clone(),
                endpoint: e.clone(),
            };
            (r, e)
        });
    s.api_key_variable = cfg.api_key_env.clone();
    s.api_key_set = cfg.resolve_key().ok().flatten().is_some();
    if let Err(e) = cfg.resolve_key() {
        problem(
            "model",
            e.to_string(),
            "export the variable (its value never enters the sandbox or the log), or name \
             another with `api_key_env` under [provider.NAME] in the config",
        );
    }
    if cfg.kind == crate::provider::ProviderKind::Scripted || offline {
        return (s, configured);
    }
    let (reachable, detail) = reach(&cfg.base_url, Duration::from_secs(3));
    s.reachable = Some(reachable);
    if !reachable {
        problem(
            "model",
            format!(
                "the model's endpoint {} is not reachable: {detail}",
                cfg.base_url
            ),
            "check the network or the base URL (`base_url` under [provider.NAME], or \
             ANTHROPIC_BASE_URL / OPENAI_BASE_URL)",
        );
    }
    s.detail = Some(detail);
    (s, configured)
}

/// Open (and close) a TCP connection to the URL's host and port.
fn reach(url: &str, timeout: Duration) -> (bool, String) {
    use std::net::ToSocketAddrs as _;
    let Some((scheme, rest)) = url.split_once("://") else {
        return (false, format!("not a URL: {url}"));
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let default_port = if scheme == "https" { 443 } else { 80 };
    let hostport = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:{default_port}")
    };
    let started = std::time::Instant::now();
    let addrs = match hostport.to_socket_addrs() {
        Ok(a) => a.collect::<Vec<_>>(),
        Err(e) => return (false, format!("{hostport}: {e}")),
    };
    let mut last = String::from("no address");
    for a in addrs {
        match std::net::TcpStream::connect_timeout(&a, timeout) {
            Ok(_) => {
                return (
                    true,
                    format!(
                        "TCP connection to {a} in {} ms",
                        started.elapsed().as_millis()
                    ),
                )
            }
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    (false, last)
}

/// The report for a person.
pub fn render(r: &DoctorReport) -> String {
    use std::fmt::Write as _;
    let f = |s: &str| terminal_safe::line(s);
    let mark = |ok: bool| if ok { "✓" } else { "✗" };
    let mut o = String::from("stele doctor\n\nYou\n");
    match &r.you.principal {
        Some(p) if r.you.teams.is_empty() => {
            let _ = writeln!(
                o,
                "  {} {} (no team)",
                mark(r.policy.teams.is_empty()),
                f(p)
            );
        }
        Some(p) => {
            let _ = writeln!(o, "  ✓ {}, teams: {}", f(p), f(&r.you.teams.join(", ")));
        }
        None => o.push_str("  ✗ unknown\n"),
    }
    o.push_str("\nPolicy\n");
    match (&r.policy.path, &r.policy.digest) {
        (Some(p), Some(d)) => {
            let _ = writeln!(
                o,
                "  ✓ {} ({}), {}",
                f(p),
                f(r.policy.source.as_deref().unwrap_or("")),
                f(d)
            );
        }
        _ => {
            let _ = writeln!(
                o,
                "  ✗ {}",
                f(r.policy.error.as_deref().unwrap_or("not found"))
            );
        }
    }
    o.push_str("\nWhat the policy lets you do (the names its rules mention, probed)\n");
    if r.grants.is_empty() {
        o.push_str("  nothing\n");
    }
    let mut actions: Vec<&str> = r.grants.iter().map(|g| g.action.as_str()).collect();
    actions.dedup();
    for a in actions {
        let list = |e: grants::GrantEffect| {
            r.grants
                .iter()
                .filter(|g| g.action == a && g.effect == e)
                .map(|g| {
                    if g.resource == "*" {
                        "anything".to_string()
                    } else {
                        f(&g.resource)
                    }
                })
                .collect::<Vec<_>>()
        };
        let allowed = list(grants::GrantEffect::Allow);
        let asks = list(grants::GrantEffect::Ask);
        if !allowed.is_empty() {
            let _ = writeln!(o, "  {a:<13} {}", allowed.join(", "));
        }
        if !asks.is_empty() {
            let _ = writeln!(o, "  {a:<13} asks a person first: {}", asks.join(", "));
        }
    }
    o.push_str("\nSandbox\n");
    let missing: Vec<String> = r
        .sandbox
        .layers
        .iter()
        .filter(|l| !l.available)
        .map(|l| f(&l.name))
        .collect();
    if r.sandbox.process_ready {
        let _ = writeln!(
            o,
            "  ✓ process sandbox ready (namespaces, Landlock ABI {}, seccomp, FUSE)",
            r.sandbox.landlock_abi
        );
    } else {
        let _ = writeln!(o, "  ✗ process sandbox: missing {}", missing.join(", "));
    }
    let _ = writeln!(
        o,
        "  {} micro-VM backend{}",
        if r.sandbox.microvm_ready { "✓" } else { "·" },
        r.sandbox
            .microvm_detail
            .as_deref()
            .map(|d| format!(": {}", f(d)))
            .unwrap_or_else(|| " ready".into())
    );
    o.push_str("\nAudit log\n");
    let _ = writeln!(
        o,
        "  {} key {}{}",
        mark(r.key.present),
        f(&r.key.path),
        r.key
            .verifier
            .as_deref()
            .map(|v| format!(" (verifier key {})", f(v)))
            .unwrap_or_default()
    );
    match (r.log.present, r.log.entries) {
        (true, Some(n)) => {
            let _ = writeln!(
                o,
                "  ✓ log {}: {n} entries, newest checkpoint covers {}",
                f(&r.log.path),
                r.log.checkpoint_size.unwrap_or(0)
            );
        }
        (true, None) => {
            let _ = writeln!(o, "  ✗ log {}: unreadable", f(&r.log.path));
        }
        (false, _) => {
            let _ = writeln!(
                o,
                "  · log {}: not created yet (the first session creates it)",
                f(&r.log.path)
            );
        }
    }
    o.push_str("\nModel\n");
    match &r.model.spec {
        None => o.push_str("  ✗ none configured\n"),
        Some(s) => {
            let _ = writeln!(
                o,
                "  {} {} at {}{}{}",
                mark(r.model.api_key_set || r.model.api_key_variable.is_none()),
                f(s),
                f(r.model.endpoint.as_deref().unwrap_or("?")),
                r.model
                    .api_key_variable
                    .as_deref()
                    .map(|v| format!(
                        ", key in ${v}{}",
                        if r.model.api_key_set {
                            ""
                        } else {
                            " (not set)"
                        }
                    ))
                    .unwrap_or_default(),
                match r.model.reachable {
                    Some(true) => ", reachable".to_string(),
                    Some(false) => ", NOT reachable".to_string(),
                    None => String::new(),
                }
            );
        }
    }
    if r.problems.is_empty() {
        o.push_str("\nNo problems found.\n");
    } else {
        let _ = writeln!(o, "\nProblems ({})", r.problems.len());
        for p in &r.problems {
            let _ = writeln!(o, "  ✗ {}: {}\n    fix: {}", p.area, f(&p.what), f(&p.fix));
        }
    }
    o
}
