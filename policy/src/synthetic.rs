//! Synthetic bundles and a decision benchmark (`stele policy bench` and the
//! criterion bench use this). The bundle is shaped like a large real one:
//! an org layer of ceilings, many teams, a project layer, conditions on
//! paths, hosts, programs, argv and models, and some `@ask` rules.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::bundle::Bundle;
use crate::canonical::{canonical_path, CanonicalHost, ProgramRef};
use crate::decision::Effect;
use crate::error::PolicyError;
use crate::request::{Action, Network, Request, Resource, SandboxBackend, SandboxFacts};
use crate::schema::STELE_SCHEMA;

/// Number of teams in a synthetic bundle.
pub const TEAMS: usize = 20;
/// Number of users in a synthetic bundle.
pub const USERS: usize = 200;

/// Small deterministic PRNG (xorshift64*), so runs are repeatable.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    /// Next value in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        usize::try_from(v % (n.max(1) as u64)).unwrap_or(0)
    }
}

fn policy(out: &mut String, id: &str, effect: &str, principal: &str, action: Action, k: usize) {
    let a = action.as_str();
    let (resource, cond) = match action {
        Action::ModelRequest => (
            "resource is Model".to_owned(),
            format!(
                "resource.provider == \"p{}\" && resource.name like \"m{k}-*\"",
                k % 5
            ),
        ),
        Action::ToolCall => (
            "resource is Tool".to_owned(),
            format!("resource.name == \"tool{k}\""),
        ),
        Action::FileRead | Action::FileWrite | Action::FileList | Action::FileDelete => (
            "resource is File".to_owned(),
            format!(
                "resource.path like \"dir{k}/*\" && !(resource.path like \"dir{k}/private/*\")"
            ),
        ),
        Action::Exec => (
            "resource is Program".to_owned(),
            format!(
                "resource.name == \"prog{k}\" && !context.sandbox.network && \
                 !context.argv.contains(\"--unsafe{k}\")"
            ),
        ),
        Action::NetConnect => (
            "resource is Host".to_owned(),
            format!("resource.name == \"h{k}.example\" && resource.port == 443"),
        ),
        Action::McpList => (
            format!("resource == McpServer::\"s{k}\""),
            "true".to_owned(),
        ),
        Action::McpCall => (
            format!("resource in McpServer::\"s{k}\""),
            format!("resource.tool != \"drop{k}\""),
        ),
    };
    let _ = writeln!(
        out,
        "@id(\"{id}\")\n{effect} ({principal}, action == Action::\"{a}\", {resource})\nwhen {{ {cond} }};\n"
    );
}

fn write(root: &Path, rel: &str, text: &str) -> Result<(), PolicyError> {
    let path = root.join(rel);
    let io = |source| PolicyError::Io {
        path: path.clone(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(&path, text).map_err(io)
}

/// Write a bundle of about `policies` policies into `dir` (10% org, 80%
/// spread over [`TEAMS`] teams, 10% project) with [`USERS`] users.
pub fn write_bundle(dir: &Path, policies: usize) -> Result<(), PolicyError> {
    let org_n = (policies / 10).max(Action::ALL.len());
    let project_n = policies / 10;
    let team_n = policies.saturating_sub(org_n + project_n);
    write(dir, "schema.cedarschema", STELE_SCHEMA)?;

    // Org: one broad permit per action (a ceiling), the rest forbids.
    let mut org = String::new();
    for (i, a) in Action::ALL.iter().enumerate() {
        let _ = writeln!(
            org,
            "@id(\"org.ceiling.{a}\")\npermit (principal, action == Action::\"{a}\", resource);\n"
        );
        let _ = i;
    }
    for i in Action::ALL.len()..org_n {
        let action = Action::ALL[i % Action::ALL.len()];
        policy(
            &mut org,
            &format!("org.p{i}"),
            "forbid",
            "principal",
            action,
            1000 + i,
        );
    }
    write(dir, "org/ceilings.cedar", &org)?;

    let mut teams: Vec<String> = vec![String::new(); TEAMS];
    for i in 0..team_n {
        let t = i % TEAMS;
        let action = Action::ALL[(i / TEAMS) % Action::ALL.len()];
        let effect = if i % 7 == 0 { "forbid" } else { "permit" };
        let principal = format!("principal in Team::\"t{t}\"");
        if let Some(buf) = teams.get_mut(t) {
            policy(
                buf,
                &format!("t{t}.p{i}"),
                effect,
                &principal,
                action,
                i % 50,
            );
        }
    }
    for (t, text) in teams.iter().enumerate() {
        write(dir, &format!("teams/t{t}/policies.cedar"), text)?;
    }

    let mut project = String::new();
    for i in 0..project_n {
        let action = Action::ALL[i % Action::ALL.len()];
        let id = format!("project.p{i}");
        if i % 10 == 9 {
            let _ = writeln!(
                project,
                "@id(\"{id}\")\n@ask(\"human\")\nforbid (principal, action == Action::\"mcp.call\", \
                 resource == McpTool::\"s{i}/send\")\nunless {{ context has approval && context.approval.granted }};\n"
            );
        } else {
            policy(&mut project, &id, "forbid", "principal", action, 2000 + i);
        }
    }
    write(dir, "project/project.cedar", &project)?;

    let mut members = String::from("[users]\n");
    let mut rng = Rng::new(7);
    for u in 0..USERS {
        let a = rng.below(TEAMS);
        let b = rng.below(TEAMS);
        let _ = writeln!(members, "u{u} = [\"t{a}\", \"t{b}\"]");
    }
    write(dir, "members.toml", &members)
}

/// A deterministic mix of requests against a synthetic bundle.
pub fn requests(n: usize, seed: u64) -> Result<Vec<Request>, PolicyError> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let action = Action::ALL[rng.below(Action::ALL.len())];
        let k = rng.below(60);
        let resource = match action {
            Action::ModelRequest => Resource::Model {
                provider: format!("p{}", k % 5),
                name: format!("m{k}-large"),
                endpoint: crate::ModelEndpoint::new("https", &format!("p{}.example", k % 5), None)?,
            },
            Action::ToolCall => Resource::Tool {
                name: format!("tool{k}"),
            },
            Action::FileRead | Action::FileWrite | Action::FileList | Action::FileDelete => {
                Resource::File(canonical_path(&format!(
                    "dir{k}/sub/file{}.txt",
                    rng.below(9)
                ))?)
            }
            Action::Exec => Resource::Program(ProgramRef::from_resolved_path(&format!(
                "/usr/bin/prog{k}"
            ))?),
            Action::NetConnect => {
                Resource::Host(CanonicalHost::new("https", &format!("h{k}.example"), None)?)
            }
            Action::McpList => Resource::McpServer {
                name: format!("s{k}"),
            },
            Action::McpCall => Resource::McpTool {
                server: format!("s{k}"),
                tool: "send".to_owned(),
            },
        };
        let user = format!("u{}", rng.below(USERS + 10));
        out.push(
            Request::builder(user, action, resource)
                .session("bench")
                .sandbox(SandboxFacts {
                    backend: SandboxBackend::Process,
                    network: Network::Disabled,
                })
                .argv(["--flag", "input.csv"])
                .build()?,
        );
    }
    Ok(out)
}

/// Figures from [`run`].
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Policies in the bundle.
    pub policies: usize,
    /// Time of the first load (read, parse, validate, index, digest) of the
    /// bundle in this process.
    pub load: Duration,
    /// Median of five further loads.
    pub load_median: Duration,
    /// Median decision time.
    pub p50: Duration,
    /// 99th percentile decision time.
    pub p99: Duration,
    /// Slowest decision.
    pub max: Duration,
    /// Decisions timed.
    pub decisions: usize,
    /// Allow / Deny / Ask counts (to show the mix is not trivial).
    pub effects: [usize; 3],
}

/// Write a synthetic bundle of `policies` policies into `dir`, load it
/// (timed), then time `decisions` decisions one by one.
pub fn run(dir: &Path, policies: usize, decisions: usize) -> Result<BenchReport, PolicyError> {
    write_bundle(dir, policies)?;
    let start = Instant::now();
    let bundle = Bundle::load(dir)?;
    let load = start.elapsed();
    let mut loads = Vec::with_capacity(5);
    for _ in 0..5 {
        let t = Instant::now();
        std::hint::black_box(Bundle::load(dir)?);
        loads.push(t.elapsed());
    }
    loads.sort();
    let reqs = requests(decisions.max(1), 42)?;
    // Warm up caches and the allocator before timing.
    for r in reqs.iter().take(1000) {
        std::hint::black_box(bundle.decide(r));
    }
    let mut times = Vec::with_capacity(reqs.len());
    let mut effects = [0usize; 3];
    for r in &reqs {
        let t = Instant::now();
        let d = bundle.decide(r);
        times.push(t.elapsed());
        let slot = match d.effect {
            Effect::Allow => 0,
            Effect::Deny => 1,
            Effect::Ask => 2,
        };
        if let Some(c) = effects.get_mut(slot) {
            *c += 1;
        }
    }
    times.sort();
    let pct = |p: usize| {
        let i = (times.len() * p / 100).min(times.len().saturating_sub(1));
        times.get(i).copied().unwrap_or_default()
    };
    Ok(BenchReport {
        policies: bundle.policy_count(),
        load,
        load_median: loads.get(2).copied().unwrap_or_default(),
        p50: pct(50),
        p99: pct(99),
        max: times.last().copied().unwrap_or_default(),
        decisions: times.len(),
        effects,
    })
}

/// [`run`] in a fresh temporary directory, removed afterwards.
pub fn run_in_temp_dir(policies: usize, decisions: usize) -> Result<BenchReport, PolicyError> {
    let dir = tempfile::tempdir().map_err(|source| PolicyError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    run(dir.path(), policies, decisions)
}
