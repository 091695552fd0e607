#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `@ask`: when a denial is an Ask (tickets and approvers included), what
//! the loader refuses, and what `stele policy validate` points out.

mod common;

use common::bundle;
use stele_policy::{
    Action, Approval, ApprovalOutcome, Bundle, Effect, LintId, PolicyError, Request, Resource,
    Severity,
};

const PERMIT_CALLS: &str = r#"
@id("org.calls")
permit (principal, action == Action::"mcp.call", resource);
"#;

fn call(b: &Bundle) -> Request {
    let r = Request::builder(
        "ann",
        Action::McpCall,
        Resource::McpTool {
            server: "deploy".into(),
            tool: "run".into(),
        },
    )
    .build()
    .unwrap();
    b.check_request(&r).unwrap();
    r
}

fn load(ask_rule: &str) -> Bundle {
    let dir = bundle(&[
        ("org/a.cedar", PERMIT_CALLS),
        ("project/ask.cedar", ask_rule),
    ]);
    Bundle::load(dir.path()).unwrap()
}

fn approval(approver: &str, ticket: &str) -> Approval {
    Approval {
        outcome: ApprovalOutcome::Granted,
        approver: approver.into(),
        method: "tty".into(),
        ticket: ticket.into(),
    }
}

/// The reproduction: an `@ask` forbid that requires a change ticket was a
/// plain Deny, because the hypothetical approval had no ticket.
#[test]
fn an_ask_that_needs_a_ticket_is_an_ask() {
    let b = load(
        r#"
@id("project.deploy-needs-change")
@ask("human")
forbid (principal, action == Action::"mcp.call", resource)
unless { context has approval && context.approval.granted && context.approval.ticket like "CHG-*" };
"#,
    );
    let r = call(&b);
    assert_eq!(b.decide(&r).effect, Effect::Ask);
    // After the answer, the real approval decides.
    assert_eq!(
        b.decide_with_approval(&r, approval("carol", "CHG-1234"))
            .effect,
        Effect::Allow
    );
    assert_eq!(
        b.decide_with_approval(&r, approval("carol", "audit:77"))
            .effect,
        Effect::Deny
    );
}

#[test]
fn asks_for_approver_and_exact_ticket_conditions() {
    for cond in [
        r#"context.approval.approver == User::"release-manager""#,
        r#"context.approval.ticket == "INC-42""#,
        r#"context.approval.method == "web" && context.approval.ticket like "*-prod""#,
        r#"context.approval.ticket like "CHG-*" && context.approval.ticket != "CHG-""#,
        r#"[User::"a", User::"b"].contains(context.approval.approver)"#,
        r#"context.approval.approver != principal"#,
    ] {
        let b = load(&format!(
            "@id(\"project.x\")\n@ask(\"human\")\nforbid (principal, action == Action::\"mcp.call\", resource)\nunless {{ context has approval && context.approval.granted && {cond} }};\n"
        ));
        assert_eq!(b.decide(&call(&b)).effect, Effect::Ask, "{cond}");
    }
}

const FOUR_EYES: &str = r#"
@id("project.four-eyes")
@ask("human")
forbid (principal, action == Action::"mcp.call", resource)
unless {
  context has approval && context.approval.granted &&
  context.approval.approver != principal && context.approval.approver in Team::"finance"
};
"#;

fn four_eyes_bundle() -> Bundle {
    let dir = bundle(&[
        ("org/a.cedar", PERMIT_CALLS),
        ("project/ask.cedar", FOUR_EYES),
        (
            "members.toml",
            "[users]\nann = [\"finance\"]\nbob = [\"finance\"]\ncarol = [\"ops\"]\n",
        ),
        (
            "teams/finance/f.cedar",
            "@id(\"finance.calls\")\npermit (principal in Team::\"finance\", action == Action::\"mcp.call\", resource);\n",
        ),
        (
            "teams/ops/o.cedar",
            "@id(\"ops.calls\")\npermit (principal in Team::\"ops\", action == Action::\"mcp.call\", resource);\n",
        ),
    ]);
    Bundle::load(dir.path()).unwrap()
}

/// Segregation of duties: the approver is a user, compared with the
/// principal; only another member of the team lifts the rule, and the
/// runtime can tell beforehand that the requester cannot.
#[test]
fn segregation_of_duties_needs_another_member() {
    let b = four_eyes_bundle();
    let r = call(&b);
    let d = b.decide(&r);
    assert_eq!(d.effect, Effect::Ask, "{d:?}");
    // The requester cannot lift it, whatever the method or ticket.
    for method in ["tty", "flag", "web"] {
        assert!(!b.could_grant(&r, &d, "ann", method), "{method}");
    }
    // Another member can; someone outside the team cannot.
    assert!(b.could_grant(&r, &d, "bob", "tty"));
    assert!(!b.could_grant(&r, &d, "carol", "tty"));
    assert!(!b.could_grant(&r, &d, "zed", "tty"));
    // The real answers decide the same way.
    for (who, want) in [
        ("ann", Effect::Deny),
        ("bob", Effect::Allow),
        ("carol", Effect::Deny),
        ("zed", Effect::Deny),
    ] {
        let again = b.decide_with_approval(&r, approval(who, "audit:9"));
        assert_eq!(again.effect, want, "{who}: {again:?}");
        if want == Effect::Deny {
            assert_eq!(
                again.reasons().collect::<Vec<_>>(),
                vec!["project.four-eyes"],
                "{who}"
            );
        }
    }
    // could_grant speaks of Ask decisions only.
    let allowed = b.decide_with_approval(&r, approval("bob", ""));
    assert!(!b.could_grant(&r, &allowed, "bob", "tty"));
}

/// A rule that only reads `granted` can be lifted by the requester.
#[test]
fn a_plain_ask_can_be_granted_by_the_requester() {
    let b = load(
        "@id(\"project.x\")\n@ask(\"human\")\nforbid (principal, action == Action::\"mcp.call\", resource)\nunless { context has approval && context.approval.granted };\n",
    );
    let r = call(&b);
    let d = b.decide(&r);
    assert_eq!(d.effect, Effect::Ask);
    assert!(b.could_grant(&r, &d, "ann", "tty"));
    assert!(b.could_grant(&r, &d, "ann", "flag"));
}

/// A method requirement: only the named method lifts it.
#[test]
fn a_method_requirement_is_asked_and_checked() {
    let b = load(
        "@id(\"project.x\")\n@ask(\"human\")\nforbid (principal, action == Action::\"mcp.call\", resource)\nunless { context has approval && context.approval.granted && context.approval.method != \"flag\" };\n",
    );
    let r = call(&b);
    let d = b.decide(&r);
    assert_eq!(d.effect, Effect::Ask);
    assert!(b.could_grant(&r, &d, "ann", "tty"));
    assert!(!b.could_grant(&r, &d, "ann", "flag"));
}

#[test]
fn an_ask_no_approval_can_lift_is_a_deny() {
    for cond in [
        // Contradictory ticket requirements.
        r#"context.approval.ticket == "A" && context.approval.ticket == "B""#,
        // Lifted only by a refused approval.
        r#"!context.approval.granted"#,
    ] {
        let b = load(&format!(
            "@id(\"project.x\")\n@ask(\"human\")\nforbid (principal, action == Action::\"mcp.call\", resource)\nunless {{ context has approval && {cond} }};\n"
        ));
        assert_eq!(b.decide(&call(&b)).effect, Effect::Deny, "{cond}");
    }
    // No approval clause at all.
    let b = load(
        "@id(\"project.x\")\n@ask(\"human\")\nforbid (principal, action == Action::\"mcp.call\", resource);\n",
    );
    assert_eq!(b.decide(&call(&b)).effect, Effect::Deny);
    assert!(b.lints().iter().any(|l| l.id == LintId::AskUnliftable));
}

#[test]
fn ask_on_a_permit_is_refused() {
    for key in ["ask", "Ask", "ASK", "asks"] {
        let dir = bundle(&[(
            "org/a.cedar",
            &format!("// c\n@id(\"org.p\")\n@{key}(\"human\")\npermit (principal, action, resource is File);\n"),
        )]);
        match Bundle::load(dir.path()) {
            Err(PolicyError::Annotation {
                location,
                policy,
                message,
            }) => {
                assert_eq!(location.file, "org/a.cedar");
                assert_eq!(location.line, Some(2));
                assert_eq!(policy, "org.p");
                assert!(message.contains("permit"), "{message}");
            }
            other => panic!("@{key} on a permit: {other:?}"),
        }
    }
}

fn lints_of(files: &[(&str, &str)]) -> Vec<(LintId, String)> {
    let dir = bundle(files);
    let b = Bundle::load(dir.path()).unwrap();
    b.lints()
        .iter()
        .map(|l| {
            (
                l.id,
                l.policy.clone().unwrap_or_else(|| l.location.to_string()),
            )
        })
        .collect()
}

#[test]
fn lints() {
    // A misspelt @ask on a forbid: it never asks.
    for key in ["Ask", "asks", "aks", "ask_human"] {
        let l = lints_of(&[(
            "org/a.cedar",
            &format!("@id(\"org.f\")\n@{key}(\"human\")\nforbid (principal, action, resource is File)\nunless {{ context has approval && context.approval.granted }};\n"),
        )]);
        assert!(
            l.contains(&(LintId::AskMisspelt, "org.f".into())),
            "@{key}: {l:?}"
        );
    }
    // An org forbid an approval can lift: the one exception, pointed out.
    let l = lints_of(&[(
        "org/a.cedar",
        "@id(\"org.net\")\n@ask(\"human\")\nforbid (principal, action == Action::\"net.connect\", resource)\nunless { context has approval && context.approval.granted };\n",
    )]);
    assert_eq!(l, vec![(LintId::OrgForbidApprovable, "org.net".into())]);
    assert_eq!(LintId::OrgForbidApprovable.severity(), Severity::Note);
    // The same rule in a team is not an org ceiling: no note.
    let l = lints_of(&[
        ("org/a.cedar", PERMIT_CALLS),
        ("teams/t/a.cedar", "@id(\"t.net\")\n@ask(\"human\")\nforbid (principal, action == Action::\"net.connect\", resource)\nunless { context has approval && context.approval.granted };\n"),
        ("members.toml", "[users]\nann = [\"t\"]\n"),
    ]);
    assert!(l.is_empty(), "{l:?}");
    // An approval clause without @ask is dead.
    let l = lints_of(&[(
        "org/a.cedar",
        "@id(\"org.f\")\nforbid (principal, action, resource is File)\nunless { context has approval && context.approval.granted };\n",
    )]);
    assert_eq!(l, vec![(LintId::ApprovalWithoutAsk, "org.f".into())]);
    // A team nobody is in.
    let l = lints_of(&[
        ("org/a.cedar", PERMIT_CALLS),
        (
            "teams/ghost/a.cedar",
            "@id(\"g.x\")\npermit (principal, action == Action::\"mcp.call\", resource);\n",
        ),
        (
            "teams/real/a.cedar",
            "@id(\"r.x\")\npermit (principal, action == Action::\"mcp.call\", resource);\n",
        ),
        ("members.toml", "[users]\nann = [\"real\"]\n"),
    ]);
    assert_eq!(l, vec![(LintId::TeamWithoutMembers, "teams/ghost/".into())]);
    // A clean bundle has none.
    assert!(lints_of(&[("org/a.cedar", PERMIT_CALLS)]).is_empty());
}

#[test]
fn members_naming_a_team_without_a_folder_is_an_error() {
    let dir = bundle(&[
        ("org/a.cedar", PERMIT_CALLS),
        ("members.toml", "[users]\nann = [\"ghost\"]\n"),
    ]);
    let e = Bundle::load(dir.path()).err().unwrap();
    assert!(matches!(e, PolicyError::Members { .. }), "{e}");
    assert!(e.to_string().starts_with("members.toml:2:"), "{e}");
}
