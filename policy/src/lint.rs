//! Lints: things in a bundle that load but are probably not what the author
//! meant. `stele policy validate` prints them (`--deny-warnings` makes
//! warnings fatal); the loader itself refuses what is certainly wrong
//! (`@ask` on a permit, a member of a team with no folder).

use std::fmt;

use serde::Serialize;

use crate::error::Location;

/// Which lint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LintId {
    /// An org forbid that an approval can lift (it carries `@ask` and its
    /// condition reads `context.approval`): the one way an org forbid can be
    /// lifted, by design — but an org "ceiling" that asks is not a ceiling.
    OrgForbidApprovable,
    /// An annotation spelt like `@ask` but not `@ask` (`@Ask`, `@asks`,
    /// `@aks`): the rule never asks.
    AskMisspelt,
    /// An `@ask` forbid whose conditions never read `context.approval`: no
    /// approval can lift it, so it never asks (always a plain Deny).
    AskUnliftable,
    /// A forbid without `@ask` whose condition reads `context.approval`:
    /// stele only asks for `@ask` rules, so no approval ever reaches it and
    /// the approval clause is dead (it always denies).
    ApprovalWithoutAsk,
    /// A team folder no user in `members.toml` belongs to: its policies
    /// never apply, and rules naming the team never match anyone.
    TeamWithoutMembers,
    /// A permit whose scope names no action: it grants the server's own
    /// actions (`session.view`, `audit.export`, `admin`, …) as well as the
    /// gate's, to everyone it covers.
    PermitEveryAction,
    /// An `@ask` forbid on the server's actions only: server actions never
    /// ask, so it always denies.
    ServerActionAsk,
}

impl LintId {
    /// The lint's name, as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            LintId::OrgForbidApprovable => "org-forbid-approvable",
            LintId::AskMisspelt => "ask-misspelt",
            LintId::AskUnliftable => "ask-unliftable",
            LintId::ApprovalWithoutAsk => "approval-without-ask",
            LintId::TeamWithoutMembers => "team-without-members",
            LintId::PermitEveryAction => "permit-every-action",
            LintId::ServerActionAsk => "server-action-ask",
        }
    }

    /// How serious it is.
    pub fn severity(self) -> Severity {
        match self {
            LintId::OrgForbidApprovable => Severity::Note,
            LintId::AskMisspelt
            | LintId::AskUnliftable
            | LintId::ApprovalWithoutAsk
            | LintId::TeamWithoutMembers
            | LintId::PermitEveryAction
            | LintId::ServerActionAsk => Severity::Warning,
        }
    }
}

impl fmt::Display for LintId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How serious a lint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; never fatal.
    Note,
    /// Probably a mistake; fatal with `--deny-warnings`.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
        })
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lint {
    /// Which lint.
    pub id: LintId,
    /// Where.
    #[serde(serialize_with = "display")]
    pub location: Location,
    /// The policy concerned, if any.
    pub policy: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
}

fn display<T: fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl fmt::Display for Lint {
    /// `warning[ask-unliftable]: org/a.cedar:3:1: policy `x`: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}]: {}: ",
            self.id.severity(),
            self.id,
            self.location
        )?;
        if let Some(p) = &self.policy {
            write!(f, "policy `{p}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// What the loader records about a policy for the lints.
#[derive(Debug, Clone)]
pub(crate) struct PolicyFacts {
    pub id: String,
    pub org: bool,
    pub forbid: bool,
    pub location: Location,
    pub ask: bool,
    pub misspelt_ask: Option<String>,
    pub mentions_approval: bool,
    pub actions: ActionScope,
}

/// Which kinds of action a policy's scope covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ActionScope {
    /// No action named: every gate and server action.
    Every,
    /// Only the gate's actions (a session's requests).
    Gate,
    /// Only the server's own actions.
    Server,
    /// Some of each.
    Both,
}

/// The lints of one policy.
pub(crate) fn policy_lints(p: &PolicyFacts) -> Vec<Lint> {
    let mut out = Vec::new();
    let lint = |id, message: String| Lint {
        id,
        location: p.location.clone(),
        policy: Some(p.id.clone()),
        message,
    };
    if let Some(key) = &p.misspelt_ask {
        out.push(lint(
            LintId::AskMisspelt,
            format!("annotation `@{key}` is not `@ask` (annotation names are case sensitive): this rule never asks"),
        ));
    }
    if !p.forbid {
        if p.actions == ActionScope::Every {
            out.push(lint(
                LintId::PermitEveryAction,
                "permit on every action: besides the session's requests it grants the server's \
                 own actions (session.view, session.approve, audit.read, audit.export, admin, …) \
                 to everyone it covers; name the actions (`action in [Action::\"file.read\", …]`)"
                    .into(),
            ));
        }
        return out;
    }
    if p.ask && p.actions == ActionScope::Server {
        out.push(lint(
            LintId::ServerActionAsk,
            "`@ask` on a forbid of the server's actions only: the server's actions never ask \
             (nothing parks them), so this always denies; drop `@ask`"
                .into(),
        ));
    }
    match (p.ask, p.mentions_approval) {
        (true, false) => out.push(lint(
            LintId::AskUnliftable,
            "`@ask` forbid whose conditions never read `context.approval`: no approval can \
             lift it, so it never asks; add `unless { context has approval && \
             context.approval.granted }` or drop `@ask`"
                .into(),
        )),
        (true, true) if p.org => out.push(lint(
            LintId::OrgForbidApprovable,
            "an approval can lift this org forbid (it carries `@ask`): the one exception to \
             \"nothing lifts an org forbid\"; if it is meant as a ceiling, drop `@ask` and the \
             approval clause"
                .into(),
        )),
        (false, true) => out.push(lint(
            LintId::ApprovalWithoutAsk,
            "forbid without `@ask` that reads `context.approval`: stele only asks for `@ask` \
             rules, so no approval reaches it and it always denies; add `@ask` or drop the \
             approval clause"
                .into(),
        )),
        (true, true) | (false, false) => {}
    }
    out
}

/// Teams with a folder that no member belongs to.
pub(crate) fn team_lints<'a>(
    teams: impl Iterator<Item = &'a str>,
    has_members: impl Fn(&str) -> bool,
) -> Vec<Lint> {
    teams
        .filter(|t| !has_members(t))
        .map(|t| Lint {
            id: LintId::TeamWithoutMembers,
            location: Location::file(format!("teams/{t}/")),
            policy: None,
            message: format!(
                "no user in members.toml is in team `{t}`: its policies never apply, and \
                 rules naming Team::\"{t}\" match no one"
            ),
        })
        .collect()
}
