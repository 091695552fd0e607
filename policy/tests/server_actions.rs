#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The team server's own actions as Cedar decisions: every role × every
//! action × every relation to the resource, as the templates' roles say
//! (docs/server.md "Who may do what"); deny by default for a bundle that
//! grants none; an older schema refused naming what to add; a hostile
//! permit-everything cannot lift the gate's rules, nor widen the server's
//! roles past the org layer; a forbid on viewing wins; unknown roles refused.

mod common;

use std::path::PathBuf;

use common::{bundle, write};
use stele_policy::canonical::canonical_path;
use stele_policy::{
    Account, Action, Bundle, Effect, LintId, Network, PolicyError, Request, Resource,
    SandboxBackend, SandboxFacts, ServerAction, ServerRequest, ServerResource, ROLES,
};

fn template(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../policies")
        .join(name)
}

fn account(name: &str, team: &str, role: &str) -> Account {
    Account {
        name: name.into(),
        teams: vec![team.into()],
        role: role.into(),
    }
}

/// How the resource relates to the principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rel {
    /// Their own session (in their team's workspace).
    Own,
    /// A teammate's session, or their team's workspace.
    Team,
    /// Another team's session or workspace.
    Other,
    /// The log or the server.
    Global,
}

fn resources(team: &str, action: ServerAction) -> Vec<(Rel, ServerResource)> {
    let session = |owner: &str, t: &str| ServerResource::Session {
        id: format!("s-{owner}"),
        owner: owner.into(),
        workspace: format!("ws-{t}"),
        teams: vec![t.into()],
    };
    let ws = |t: &str| ServerResource::Workspace {
        name: format!("ws-{t}"),
        teams: vec![t.into()],
    };
    let all = vec![
        (Rel::Own, session("me", team)),
        (Rel::Team, session("mate", team)),
        (Rel::Other, session("stranger", "elsewhere")),
        (Rel::Team, ws(team)),
        (Rel::Other, ws("elsewhere")),
        (Rel::Global, ServerResource::AuditLog),
        (Rel::Global, ServerResource::Server),
    ];
    all.into_iter().filter(|(_, r)| action.accepts(r)).collect()
}

/// What the templates grant (docs/server.md "Who may do what").
fn expected(role: &str, action: ServerAction, rel: Rel) -> bool {
    use ServerAction::*;
    match role {
        "admin" => true,
        "member" | "approver" => match action {
            SessionList => true,
            SessionStart | ScheduleManage | ScheduleView | WorkspaceRead => rel == Rel::Team,
            SessionView | SessionApprove => {
                rel == Rel::Own || (role == "approver" && rel == Rel::Team)
            }
            AuditRead | AuditExport | AuditHold | Admin => false,
        },
        "reviewer" => match action {
            SessionList => true,
            SessionView | AuditRead | AuditExport => matches!(rel, Rel::Own | Rel::Team),
            ScheduleView | WorkspaceRead => rel == Rel::Team,
            SessionStart | SessionApprove | AuditHold | ScheduleManage | Admin => false,
        },
        other => panic!("unknown role {other}"),
    }
}

fn check_matrix(b: &Bundle, team: &str, label: &str) -> usize {
    let mut n = 0;
    for role in ROLES {
        let me = account("me", team, role);
        for action in ServerAction::ALL {
            for (rel, res) in resources(team, action) {
                let req = ServerRequest::new(me.clone(), action, res.clone(), "token").unwrap();
                b.check_server_request(&req)
                    .unwrap_or_else(|e| panic!("{label}: {action} on {res:?}: {e}"));
                let d = b.decide_server(&req);
                let want = expected(role, action, rel);
                assert_eq!(
                    d.effect == Effect::Allow,
                    want,
                    "{label}: {role} {action} on {rel:?} {res:?}: {d:?}"
                );
                assert_ne!(d.effect, Effect::Ask, "server actions never ask");
                if want {
                    assert!(
                        d.reasons().any(|r| r.starts_with("server.")),
                        "{label}: an allow names the role's policy: {d:?}"
                    );
                }
                n += 1;
            }
        }
    }
    n
}

#[test]
fn every_role_and_action_is_decided_as_the_templates_say() {
    for (name, team) in [
        ("finance", "finance"),
        ("minimal", "dev"),
        ("strict-default", "finance"),
        ("desktop", "local"),
    ] {
        let b = Bundle::load(template(name)).unwrap();
        assert!(b.permits_server_actions(), "{name}");
        let n = check_matrix(&b, team, name);
        assert_eq!(n, 96, "{name}: every role, action and resource kind");
    }
}

#[test]
fn the_org_members_rule_binds_the_servers_actions_too() {
    // finance's org.members-only: an account in no team of the bundle is
    // refused even as an admin.
    let b = Bundle::load(template("finance")).unwrap();
    let req = ServerRequest::new(
        account("eve", "sales", "admin"),
        ServerAction::SessionList,
        ServerResource::Server,
        "token",
    )
    .unwrap();
    let d = b.decide_server(&req);
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.reasons().collect::<Vec<_>>(), ["org.members-only"]);
}

const GATE_ONLY: &str = r#"
@id("org.files")
permit (principal, action in [Action::"file.read", Action::"file.write"], resource is File);
"#;

#[test]
fn a_bundle_without_server_permits_refuses_every_server_action() {
    let dir = bundle(&[("org/a.cedar", GATE_ONLY)]);
    let b = Bundle::load(dir.path()).unwrap();
    assert!(!b.permits_server_actions());
    for role in ROLES {
        for action in ServerAction::ALL {
            for (_, res) in resources("finance", action) {
                let req = ServerRequest::new(account("me", "finance", role), action, res, "token")
                    .unwrap();
                let d = b.decide_server(&req);
                assert_eq!(d.effect, Effect::Deny, "{role} {action}");
                assert!(d.determining.is_empty(), "default deny: {d:?}");
            }
        }
    }
    // A forbid alone still grants nothing.
    let dir = bundle(&[
        ("org/a.cedar", GATE_ONLY),
        (
            "org/b.cedar",
            "@id(\"org.f\") forbid (principal, action == Action::\"admin\", resource);",
        ),
    ]);
    assert!(!Bundle::load(dir.path()).unwrap().permits_server_actions());
}

#[test]
fn an_older_schema_is_refused_naming_what_to_add() {
    let cut = stele_policy::STELE_SCHEMA
        .find("// The team server's own actions")
        .unwrap();
    let older = stele_policy::STELE_SCHEMA[..cut]
        .replace("entity Role;\n", "")
        .replace("User in [Team, Role]", "User in [Team]");
    let dir = bundle(&[("org/a.cedar", GATE_ONLY), ("schema.cedarschema", &older)]);
    match Bundle::load(dir.path()) {
        Err(PolicyError::SchemaFile { message, .. }) => {
            for want in [
                "older stele schema",
                "session.start",
                "audit.export",
                "stele policy schema",
                "deny by default",
            ] {
                assert!(message.contains(want), "{want}: {message}");
            }
        }
        other => panic!("expected a schema file error, got {other:?}"),
    }
}

#[test]
fn unknown_roles_are_refused_at_load_and_in_requests() {
    for bad in ["admins", "Admin", "root", ""] {
        let text = format!(
            "@id(\"r\") permit (principal in Role::\"{bad}\", action == Action::\"admin\", resource);"
        );
        let dir = bundle(&[("org/a.cedar", &text)]);
        match Bundle::load(dir.path()) {
            Err(PolicyError::Schema { message, .. }) => {
                assert!(message.contains("unknown role"), "{bad}: {message}")
            }
            other => panic!("{bad}: expected a schema error, got {other:?}"),
        }
        assert!(ServerRequest::new(
            account("me", "finance", bad),
            ServerAction::Admin,
            ServerResource::Server,
            "token"
        )
        .is_err());
    }
    // A resource that does not fit the action is refused too.
    assert!(ServerRequest::new(
        account("me", "finance", "admin"),
        ServerAction::SessionView,
        ServerResource::AuditLog,
        "token"
    )
    .is_err());
}

/// A gate request by `who` in the finance template.
fn gate(who: &str, action: Action, resource: Resource, network: Network) -> Request {
    Request::builder(who, action, resource)
        .session("s-1")
        .sandbox(SandboxFacts {
            backend: SandboxBackend::Process,
            network,
        })
        .build()
        .unwrap()
}

#[test]
fn a_permit_everything_cannot_lift_the_gates_rules_nor_widen_the_roles() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("b");
    copy_dir(&template("finance"), &root);
    let hostile = "\n@id(\"team.everything\")\npermit (principal, action, resource);\n";
    for at in ["teams/finance/finance.cedar", "project/project.cedar"] {
        let mut text = std::fs::read_to_string(root.join(at)).unwrap();
        text.push_str(&hostile.replace("team.everything", &format!("hostile.{}", at.len())));
        write(&root, at, &text);
    }
    let b = Bundle::load(&root).unwrap();
    assert!(b.lints().iter().any(|l| l.id == LintId::PermitEveryAction));
    let clean = Bundle::load(template("finance")).unwrap();
    // Gate: the four-eyes rule on outbox/ still asks, exec with network still denied.
    let out = gate(
        "alice",
        Action::FileWrite,
        Resource::File(canonical_path("outbox/pay.csv").unwrap()),
        Network::Disabled,
    );
    let exec = gate(
        "alice",
        Action::Exec,
        Resource::Program(
            stele_policy::ProgramRef::from_resolved_path("/usr/bin/python3").unwrap(),
        ),
        Network::ViaProxy,
    );
    let secret = gate(
        "alice",
        Action::FileRead,
        Resource::File(canonical_path(".stele/key").unwrap()),
        Network::Disabled,
    );
    for r in [&out, &exec, &secret] {
        let (h, c) = (b.decide(r), clean.decide(r));
        assert_eq!(h.effect, c.effect, "{r:?}: {h:?}");
        assert_ne!(h.effect, Effect::Allow, "{r:?}");
    }
    // Server: the org layer's roles still bound what a member may do.
    for role in ROLES {
        check_matrix(&b, "finance", &format!("hostile finance, {role}"));
    }
}

#[test]
fn a_forbid_on_viewing_a_teams_sessions_wins_over_every_role() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("b");
    copy_dir(&template("finance"), &root);
    let mut text = std::fs::read_to_string(root.join("org/server.cedar")).unwrap();
    text.push_str(
        "\n@id(\"org.hide-finance\")\nforbid (principal, action == Action::\"session.view\", \
         resource is Session) when { Team::\"finance\" in resource.teams };\n",
    );
    write(&root, "org/server.cedar", &text);
    let b = Bundle::load(&root).unwrap();
    for role in ROLES {
        let req = ServerRequest::new(
            account("me", "finance", role),
            ServerAction::SessionView,
            ServerResource::Session {
                id: "s".into(),
                owner: "me".into(),
                workspace: "books".into(),
                teams: vec!["finance".into()],
            },
            "token",
        )
        .unwrap();
        let d = b.decide_server(&req);
        assert_eq!(d.effect, Effect::Deny, "{role}");
        assert_eq!(d.reasons().collect::<Vec<_>>(), ["org.hide-finance"]);
    }
}

#[test]
fn an_ask_on_a_server_action_is_linted_and_denies() {
    let dir = bundle(&[(
        "org/a.cedar",
        r#"
@id("org.admin") permit (principal in Role::"admin", action == Action::"admin", resource);
@id("org.ask-admin") @ask
forbid (principal, action == Action::"admin", resource)
unless { context has approval };
"#,
    )]);
    // `context has approval` does not type for ServerCtx? It does (`has` is
    // always boolean); the rule simply always denies.
    let b = Bundle::load(dir.path()).unwrap();
    assert!(b.lints().iter().any(|l| l.id == LintId::ServerActionAsk));
    let req = ServerRequest::new(
        account("me", "finance", "admin"),
        ServerAction::Admin,
        ServerResource::Server,
        "token",
    )
    .unwrap();
    assert_eq!(b.decide_server(&req).effect, Effect::Deny);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// The policy test format and `explain` build server requests from JSON:
/// for every role × action × relation, the request built from a test
/// case's JSON is decided exactly as the server's own request is, and a
/// case expecting the other effect fails.
#[test]
fn test_cases_of_server_actions_decide_as_the_server_does() {
    use stele_policy::server_request_json::server_request_from_parts;
    let b = Bundle::load(template("finance")).unwrap();
    let mut cases = Vec::new();
    let mut checked = 0;
    for role in ROLES {
        for action in ServerAction::ALL {
            for (rel, resource) in resources("finance", action) {
                let who = if rel == Rel::Own { "me" } else { "alice" };
                let direct = ServerRequest::new(
                    account(who, "finance", role),
                    action,
                    resource.clone(),
                    "token",
                )
                .unwrap();
                let want = b.decide_server(&direct);
                let attrs = match &resource {
                    ServerResource::Session {
                        owner,
                        workspace,
                        teams,
                        ..
                    } => {
                        serde_json::json!({"owner": owner, "workspace": workspace, "teams": teams})
                    }
                    ServerResource::Workspace { teams, .. } => serde_json::json!({"teams": teams}),
                    ServerResource::AuditLog | ServerResource::Server => serde_json::Value::Null,
                };
                let mut context =
                    serde_json::json!({"account": {"teams": ["finance"], "role": role}});
                if !attrs.is_null() {
                    context["resource"] = attrs;
                }
                let uid = format!("{}::\"{}\"", resource.type_name(), resource.entity_id());
                let principal = format!("User::\"{who}\"");
                let action_uid = format!("Action::\"{action}\"");
                let built =
                    server_request_from_parts(&b, &principal, &action_uid, &uid, Some(&context))
                        .unwrap();
                assert_eq!(built, direct, "{role} {action} {rel:?}");
                let got = b.decide_server(&built);
                assert_eq!(got.effect, want.effect);
                checked += 1;
                // The same as a test case, once expecting the right effect and
                // once the wrong one.
                let reasons: Vec<&str> = want.reasons().collect();
                for (expect, name) in [
                    (want.effect, format!("right {role} {action} {rel:?}")),
                    (
                        if want.effect == Effect::Allow {
                            Effect::Deny
                        } else {
                            Effect::Allow
                        },
                        format!("wrong {role} {action} {rel:?}"),
                    ),
                ] {
                    cases.push(serde_json::json!({
                        "name": name,
                        "request": {"principal": principal, "action": action_uid,
                                    "resource": uid, "context": context},
                        "decision": expect.to_string(),
                        "reason": if expect == want.effect { reasons.clone() } else { vec![] },
                    }));
                }
            }
        }
    }
    assert!(
        checked >= ROLES.len() * ServerAction::ALL.len(),
        "{checked}"
    );
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&template("finance"), dir.path());
    std::fs::write(
        dir.path().join("tests/server-matrix.json"),
        serde_json::to_string_pretty(&cases).unwrap(),
    )
    .unwrap();
    let b = Bundle::load(dir.path()).unwrap();
    let report = stele_policy::tests_format::run_tests(&b).unwrap();
    for c in &report.cases {
        let pass = c.outcome == stele_policy::tests_format::CaseOutcome::Pass;
        if c.name.starts_with("right ") {
            assert!(pass, "{}: {:?}", c.name, c.outcome);
        } else if c.name.starts_with("wrong ") {
            assert!(!pass, "{} passed", c.name);
        }
    }
}

/// A server case whose context is malformed cannot run, and says why.
#[test]
fn malformed_server_cases_fail_naming_what_is_wrong() {
    let cases = r#"[
      {"name": "no owner", "request": {"principal": "User::\"a\"", "action": "Action::\"session.view\"",
        "resource": "Session::\"s\"", "context": {"resource": {"workspace": "w", "teams": []}}},
        "decision": "deny", "reason": []},
      {"name": "unknown field", "request": {"principal": "User::\"a\"", "action": "Action::\"admin\"",
        "resource": "Server::\"stele\"", "context": {"acount": {}}}, "decision": "deny", "reason": []},
      {"name": "wrong type", "request": {"principal": "User::\"a\"", "action": "Action::\"admin\"",
        "resource": "File::\"x\""}, "decision": "deny", "reason": []},
      {"name": "another log", "request": {"principal": "User::\"a\"", "action": "Action::\"audit.hold\"",
        "resource": "AuditLog::\"other\""}, "decision": "deny", "reason": []},
      {"name": "unknown role", "request": {"principal": "User::\"a\"", "action": "Action::\"admin\"",
        "resource": "Server::\"stele\"", "context": {"account": {"role": "root"}}},
        "decision": "deny", "reason": []},
      {"name": "address", "request": {"principal": "User::\"a\"", "action": "Action::\"admin\"",
        "resource": "Server::\"stele\"", "address": "10.0.0.1"}, "decision": "deny", "reason": []}
    ]"#;
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&template("finance"), dir.path());
    std::fs::write(dir.path().join("tests/bad.json"), cases).unwrap();
    let b = Bundle::load(dir.path()).unwrap();
    let report = stele_policy::tests_format::run_tests(&b).unwrap();
    for (name, needle) in [
        ("no owner", "context.resource.owner"),
        ("unknown field", "acount"),
        ("wrong type", "File"),
        ("another log", "AuditLog::\"log\""),
        ("unknown role", "root"),
        ("address", "net.connect"),
    ] {
        let c = report.cases.iter().find(|c| c.name == name).unwrap();
        match &c.outcome {
            stele_policy::tests_format::CaseOutcome::Fail(why) => {
                assert!(
                    why.starts_with("cannot run") && why.contains(needle),
                    "{name}: {why}"
                )
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}
