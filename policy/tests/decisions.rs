#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Layer semantics, Ask, reasons with provenance, digest, fail-closed errors.

mod common;

use common::{bundle, write};
use stele_policy::canonical::{canonical_path, CanonicalHost, ProgramRef};
use stele_policy::{
    Action, Approval, ApprovalOutcome, ArgValue, Bundle, Effect, Layer, LayerKind, Network,
    PolicyEffect, Request, Resource, SandboxBackend, SandboxFacts, ToolArgs, Verdict,
};

fn file(p: &str) -> Resource {
    Resource::File(canonical_path(p).unwrap())
}

fn req(user: &str, action: Action, resource: Resource) -> Request {
    Request::builder(user, action, resource)
        .session("s")
        .build()
        .unwrap()
}

const MEMBERS: &str = "[users]\nalice = [\"finance\"]\ncarol = [\"ops\"]\n";

fn layered() -> tempfile::TempDir {
    bundle(&[
        (
            "org/org.cedar",
            r#"
@id("org.files-bound")
permit (principal, action == Action::"file.read", resource is File)
when { !(resource.path like "secret/*") };

@id("org.no-hr")
forbid (principal, action, resource is File) when { resource.path like "hr/*" };
"#,
        ),
        (
            "teams/finance/f.cedar",
            r#"
@id("finance.read-all")
@severity("low")
permit (principal in Team::"finance", action == Action::"file.read", resource is File);
"#,
        ),
        (
            "teams/ops/o.cedar",
            r#"
@id("ops.everything")
permit (principal, action, resource);
"#,
        ),
        (
            "project/p.cedar",
            r#"
@id("project.hr-ok")
permit (principal, action == Action::"file.read", resource == File::"hr/salaries.csv");
"#,
        ),
        ("members.toml", MEMBERS),
    ])
}

#[test]
fn team_permit_allows_with_provenance() {
    let dir = layered();
    let b = Bundle::load(dir.path()).unwrap();
    let d = b.decide(&req("alice", Action::FileRead, file("docs/a.txt")));
    assert_eq!(d.effect, Effect::Allow);
    let ids: Vec<&str> = d.reasons().collect();
    assert_eq!(ids, vec!["org.files-bound", "finance.read-all"]);
    let f = &d.determining[1];
    assert_eq!(f.layer, Layer::Team("finance".into()));
    assert_eq!(f.effect, PolicyEffect::Permit);
    assert_eq!(f.file, "teams/finance/f.cedar");
    assert_eq!(f.line, 2);
    assert_eq!(
        f.annotations.get("severity").map(String::as_str),
        Some("low")
    );
    assert_eq!(d.layer, Some(LayerKind::Team));
    assert_eq!(&d.bundle_digest, b.digest());
}

#[test]
fn org_permit_bounds_what_teams_grant() {
    let dir = layered();
    let b = Bundle::load(dir.path()).unwrap();
    let d = b.decide(&req("alice", Action::FileRead, file("secret/plan.txt")));
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.reasons().count(), 0);
    assert_eq!(d.layer, Some(LayerKind::Org));
    assert_eq!(d.layers[0].verdict, Verdict::NoPermit);
    assert_eq!(d.layers[1].verdict, Verdict::Allow);
}

#[test]
fn org_forbid_cannot_be_lifted_by_lower_layers() {
    let dir = layered();
    let b = Bundle::load(dir.path()).unwrap();
    // Team and project both permit hr/*; the org forbid still wins.
    let d = b.decide(&req("alice", Action::FileRead, file("hr/salaries.csv")));
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.reasons().collect::<Vec<_>>(), vec!["org.no-hr"]);
    assert_eq!(d.determining[0].layer, Layer::Org);
    assert_eq!(d.layer, Some(LayerKind::Org));
}

#[test]
fn canonicalisation_stops_dot_dot_tricks() {
    let dir = layered();
    let b = Bundle::load(dir.path()).unwrap();
    // `docs/../hr/x` is `hr/x` once canonical, so the org forbid applies.
    let d = b.decide(&req("alice", Action::FileRead, file("docs/../hr/x.csv")));
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.reasons().collect::<Vec<_>>(), vec!["org.no-hr"]);
}

#[test]
fn team_policies_apply_to_members_only() {
    let dir = layered();
    let b = Bundle::load(dir.path()).unwrap();
    // ops.everything says `principal` unconstrained, but lives in teams/ops:
    // it must not reach alice (finance) or strangers.
    let d = b.decide(&req("alice", Action::FileWrite, file("docs/a.txt")));
    assert_eq!(d.effect, Effect::Deny);
    let d = b.decide(&req("mallory", Action::FileWrite, file("docs/a.txt")));
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.layer, None, "default deny names no layer");
    // carol is in ops, and org has nothing to say about file.write.
    let d = b.decide(&req("carol", Action::FileWrite, file("docs/a.txt")));
    assert_eq!(d.effect, Effect::Allow);
    assert_eq!(d.reasons().collect::<Vec<_>>(), vec!["ops.everything"]);
}

#[test]
fn project_permits_intersect_with_team() {
    let dir = bundle(&[
        ("org/o.cedar", "@id(\"org.x\")\nforbid (principal, action, resource is Host);\n"),
        (
            "teams/finance/f.cedar",
            "@id(\"finance.read\")\npermit (principal in Team::\"finance\", action == Action::\"file.read\", resource is File);\n",
        ),
        (
            "project/p.cedar",
            "@id(\"project.only-docs\")\npermit (principal, action == Action::\"file.read\", resource is File)\nwhen { resource.path like \"docs/*\" };\n",
        ),
        ("members.toml", "[users]\nalice = [\"finance\"]\n"),
    ]);
    let b = Bundle::load(dir.path()).unwrap();
    let d = b.decide(&req("alice", Action::FileRead, file("docs/a.txt")));
    assert_eq!(d.effect, Effect::Allow);
    assert_eq!(
        d.reasons().collect::<Vec<_>>(),
        vec!["finance.read", "project.only-docs"]
    );
    assert_eq!(d.layer, Some(LayerKind::Project));
    // The project speaks to every file.read and only allows docs/: the team's
    // broader grant is cut down to the intersection.
    let d = b.decide(&req("alice", Action::FileRead, file("src/main.rs")));
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.layers[1].verdict, Verdict::Allow);
    assert_eq!(d.layers[2].verdict, Verdict::NoPermit);
    assert_eq!(d.layer, Some(LayerKind::Project));
    // A layer with nothing to say abstains: for a user in no team, the
    // project's permit alone decides.
    let d = b.decide(&req("mallory", Action::FileRead, file("docs/a.txt")));
    assert_eq!(d.effect, Effect::Allow);
    assert_eq!(d.layers[1].verdict, Verdict::Abstain);
}

const ASK: &str = r#"
@id("org.mcp")
permit (principal, action == Action::"mcp.call", resource in McpServer::"gmail");

@id("org.send-asks")
@ask("human")
forbid (principal, action == Action::"mcp.call", resource == McpTool::"gmail/send")
unless { context has approval && context.approval.granted };

@id("org.delete-asks")
@ask("human")
forbid (principal, action == Action::"file.delete", resource)
unless { context has approval && context.approval.granted };
"#;

fn tool(server: &str, t: &str) -> Resource {
    Resource::McpTool {
        server: server.into(),
        tool: t.into(),
    }
}

#[test]
fn ask_then_approval() {
    let dir = bundle(&[("org/a.cedar", ASK)]);
    let b = Bundle::load(dir.path()).unwrap();
    let r = req("alice", Action::McpCall, tool("gmail", "send"));
    let d = b.decide(&r);
    assert_eq!(d.effect, Effect::Ask);
    assert_eq!(d.reasons().collect::<Vec<_>>(), vec!["org.send-asks"]);
    let approval = |outcome| Approval {
        outcome,
        approver: "boss".into(),
        method: "tty".into(),
        ticket: "T-1".into(),
    };
    let d = b.decide_with_approval(&r, approval(ApprovalOutcome::Granted));
    assert_eq!(d.effect, Effect::Allow);
    assert_eq!(d.reasons().collect::<Vec<_>>(), vec!["org.mcp"]);
    let d = b.decide_with_approval(&r, approval(ApprovalOutcome::Refused));
    assert_eq!(
        d.effect,
        Effect::Deny,
        "a refusal is final, never asked again"
    );
    // Other gmail tools need no approval.
    assert_eq!(
        b.decide(&req("alice", Action::McpCall, tool("gmail", "read")))
            .effect,
        Effect::Allow
    );
}

#[test]
fn no_ask_when_approval_would_not_help() {
    let dir = bundle(&[("org/a.cedar", ASK)]);
    let b = Bundle::load(dir.path()).unwrap();
    // The @ask forbid determines the denial, but nothing permits a delete:
    // asking a human would be pointless, so it is a plain Deny.
    let d = b.decide(&req("alice", Action::FileDelete, file("x")));
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.reasons().collect::<Vec<_>>(), vec!["org.delete-asks"]);
}

#[test]
fn evaluation_errors_fail_closed() {
    let dir = bundle(&[(
        "org/a.cedar",
        r#"
@id("org.write")
permit (principal, action == Action::"file.write", resource is File);

@id("org.size-limit")
forbid (principal, action == Action::"file.write", resource is File)
when { context.args has size_bytes && context.args.size_bytes * 1000 > 1000000000 };
"#,
    )]);
    let b = Bundle::load(dir.path()).unwrap();
    let with_size = |n: u64| {
        Request::builder("alice", Action::FileWrite, file("out.bin"))
            .args(ToolArgs {
                size_bytes: Some(n),
                ..ToolArgs::default()
            })
            .build()
            .unwrap()
    };
    assert_eq!(b.decide(&with_size(10)).effect, Effect::Allow);
    assert_eq!(b.decide(&with_size(2_000_000)).effect, Effect::Deny);
    // Overflow makes the forbid error; Cedar alone would skip it and allow.
    let d = b.decide(&with_size(u64::MAX));
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.errors.len(), 1);
    assert_eq!(d.errors[0].policy, "org.size-limit");
    assert_eq!(d.layers[0].verdict, Verdict::Error);
}

#[test]
fn mcp_arguments_by_name_are_tags() {
    let dir = bundle(&[(
        "org/a.cedar",
        r#"
@id("org.mcp")
permit (principal, action == Action::"mcp.call", resource);

@id("org.mail-inside")
forbid (principal, action == Action::"mcp.call", resource)
unless { context.args.text.hasTag("to") && context.args.text.getTag("to") like "*@example.com" };

@id("org.small")
forbid (principal, action == Action::"mcp.call", resource)
when { context.args.number.hasTag("count") && context.args.number.getTag("count") > 10 };

@id("org.abs")
forbid (principal, action == Action::"mcp.call", resource)
when { context.args.abs_path.hasTag("path") && context.args.abs_path.getTag("path") like "/etc/*" };
"#,
    )]);
    let b = Bundle::load(dir.path()).unwrap();
    let call = |values: &[(&str, ArgValue)], abs: &[(&str, &str)]| {
        let req = Request::builder(
            "alice",
            Action::McpCall,
            Resource::McpTool {
                server: "mail".into(),
                tool: "send".into(),
            },
        )
        .args(ToolArgs {
            values: values
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            abs_paths: abs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..ToolArgs::default()
        })
        .build()
        .unwrap();
        b.decide(&req)
    };
    let to = |a: &str| ("to", ArgValue::Text(a.into()));
    let d = call(&[to("cfo@example.com")], &[]);
    assert_eq!(d.effect, Effect::Allow, "{d:?}");
    let d = call(&[to("x@elsewhere.org")], &[]);
    assert_eq!(d.effect, Effect::Deny);
    assert!(d.errors.is_empty(), "a plain deny: {d:?}");
    // No such argument: hasTag is false (no evaluation error), so denied.
    let d = call(&[], &[]);
    assert_eq!(d.effect, Effect::Deny);
    assert!(d.errors.is_empty(), "{d:?}");
    // A flag named `to` is not a text `to`.
    let d = call(&[("to", ArgValue::Flag(true))], &[]);
    assert_eq!(d.effect, Effect::Deny);
    let d = call(
        &[to("cfo@example.com"), ("count", ArgValue::Number(11))],
        &[],
    );
    assert_eq!(d.effect, Effect::Deny);
    let d = call(
        &[to("cfo@example.com"), ("count", ArgValue::Number(3))],
        &[],
    );
    assert_eq!(d.effect, Effect::Allow);
    let d = call(&[to("cfo@example.com")], &[("path", "/etc/shadow")]);
    assert_eq!(d.effect, Effect::Deny);
    let d = call(&[to("cfo@example.com")], &[("path", "/srv/a.txt")]);
    assert_eq!(d.effect, Effect::Allow);
}

#[test]
fn digest_is_stable_and_covers_every_file_read() {
    let dir = layered();
    let a = *Bundle::load(dir.path()).unwrap().digest();
    assert_eq!(a, *Bundle::load(dir.path()).unwrap().digest());
    // A README at the root is not read, so it is not covered.
    write(dir.path(), "README.md", "notes");
    assert_eq!(a, *Bundle::load(dir.path()).unwrap().digest());
    let mut seen = vec![a];
    let mut changed = |what: &str| {
        let d = *Bundle::load(dir.path()).unwrap().digest();
        assert!(!seen.contains(&d), "{what} did not change the digest");
        seen.push(d);
    };
    write(dir.path(), "tests/t.json", "[]");
    changed("a test file");
    write(dir.path(), "tests/t.json", "[ ]");
    changed("a test file's content");
    write(
        dir.path(),
        "members.toml",
        "[users]\nalice = [\"finance\"]\n",
    );
    changed("members.toml");
    let org = std::fs::read_to_string(dir.path().join("org/org.cedar")).unwrap();
    write(
        dir.path(),
        "org/org.cedar",
        &format!("// a comment is content too\n{org}"),
    );
    changed("a comment in a policy file");
    write(
        dir.path(),
        "teams/ops/extra.cedar",
        "@id(\"ops.extra\")\nforbid (principal, action, resource is Host);\n",
    );
    changed("a new policy file");
    let schema = std::fs::read_to_string(dir.path().join("schema.cedarschema")).unwrap();
    write(dir.path(), "schema.cedarschema", &format!("{schema}\n\n"));
    changed("trailing lines in the schema");
    assert!(a.to_string().starts_with("sha256:") && a.to_string().len() == 7 + 64);
}

#[test]
fn typed_requests_match_the_schema() {
    let dir = bundle(&[("org/a.cedar", common::ORG_ALLOW_ALL_FILES)]);
    let b = Bundle::load(dir.path()).unwrap();
    let facts = SandboxFacts {
        backend: SandboxBackend::Microvm,
        network: Network::ViaProxy,
    };
    let full_args = ToolArgs {
        path: Some(canonical_path("a/b").unwrap()),
        host: Some("example.com".into()),
        port: Some(443),
        size_bytes: Some(5),
        recursive: Some(true),
        overwrite: Some(false),
        values: [
            ("to".to_owned(), ArgValue::Text("cfo@example.com".into())),
            ("count".to_owned(), ArgValue::Number(3)),
            ("dryRun".to_owned(), ArgValue::Flag(true)),
        ]
        .into_iter()
        .collect(),
        abs_paths: [("path".to_owned(), "/srv/shared/a.txt".to_owned())]
            .into_iter()
            .collect(),
    };
    let resources = vec![
        (Action::FileRead, file("a")),
        (
            Action::Exec,
            Resource::Program(ProgramRef::from_resolved_path("/bin/sh").unwrap()),
        ),
        (
            Action::NetConnect,
            Resource::Host(CanonicalHost::parse("https://example.com").unwrap()),
        ),
        (
            Action::ModelRequest,
            Resource::Model {
                provider: "anthropic".into(),
                name: "claude".into(),
                endpoint: stele_policy::ModelEndpoint::parse("https://api.anthropic.com").unwrap(),
            },
        ),
        (
            Action::McpList,
            Resource::McpServer {
                name: "gmail".into(),
            },
        ),
        (Action::McpCall, tool("gmail", "send")),
        (
            Action::ToolCall,
            Resource::Tool {
                name: "exec".into(),
            },
        ),
    ];
    for (action, resource) in resources {
        let r = Request::builder("alice", action, resource)
            .session("s-1")
            .sandbox(facts)
            .argv(["-c", "echo hi"])
            .args(full_args.clone())
            .approval(Approval {
                outcome: ApprovalOutcome::Granted,
                approver: "x".into(),
                method: "flag".into(),
                ticket: String::new(),
            })
            .build()
            .unwrap();
        b.check_request(&r)
            .unwrap_or_else(|e| panic!("{action}: {e}"));
    }
    // The builder refuses a resource the action does not apply to.
    assert!(Request::builder("alice", Action::Exec, file("a"))
        .build()
        .is_err());
}

#[test]
fn exec_rules_can_use_argv_and_command() {
    let dir = bundle(&[(
        "org/a.cedar",
        r#"
@id("org.git-read-only")
permit (principal, action == Action::"exec", resource is Program)
when { resource.name == "git" && (context.command like "git status*" || context.command like "git log*") };

@id("org.no-force")
forbid (principal, action == Action::"exec", resource) when { context.argv.contains("--force") };
"#,
    )]);
    let b = Bundle::load(dir.path()).unwrap();
    let git = || Resource::Program(ProgramRef::from_resolved_path("/usr/bin/git").unwrap());
    let run = |argv: &[&str]| {
        b.decide(
            &Request::builder("alice", Action::Exec, git())
                .argv(argv.iter().copied())
                .build()
                .unwrap(),
        )
        .effect
    };
    assert_eq!(run(&["status", "--short"]), Effect::Allow);
    assert_eq!(run(&["push"]), Effect::Deny);
    assert_eq!(run(&["log", "--force"]), Effect::Deny);
}

#[test]
fn bundle_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Bundle>();
    let dir = layered();
    let b = std::sync::Arc::new(Bundle::load(dir.path()).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let b = std::sync::Arc::clone(&b);
            std::thread::spawn(move || {
                b.decide(&req("alice", Action::FileRead, file("docs/a.txt")))
                    .effect
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), Effect::Allow);
    }
}

#[test]
fn explanations_name_rule_layer_file_and_line() {
    let dir = bundle(&[("org/a.cedar", ASK)]);
    let b = Bundle::load(dir.path()).unwrap();
    let r = req("alice", Action::McpCall, tool("gmail", "send"));
    let d = b.decide(&r);
    let text = stele_policy::explain::render(&r, &d);
    assert!(text.contains("decision: ask"), "{text}");
    assert!(text.contains("org.send-asks"), "{text}");
    assert!(text.contains("org/a.cedar:5"), "{text}");
    assert!(text.contains("@ask(\"human\")"), "{text}");
    assert!(text.contains(&b.digest().to_string()), "{text}");
    let deny = b.decide(&req("alice", Action::FileRead, file("x")));
    assert_eq!(
        stele_policy::explain::summary(&deny),
        "denied: no policy permits this (deny by default)"
    );
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["effect"], "ask");
    assert_eq!(json["determining"][0]["layer"], "org");
    assert_eq!(json["determining"][0]["line"], 5);
}
