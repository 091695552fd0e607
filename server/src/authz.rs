//! Who may do what on the server. Until the server's actions are Cedar
//! actions in the bundle (issue 18, later part), the templates' roles are
//! applied here: a member starts sessions in their teams' workspaces and
//! sees their own; an approver also sees and answers their teams'
//! sessions; a reviewer sees their teams' sessions and answers nothing; an
//! admin may do everything. Whether an approver's *grant* lifts a rule is
//! still the bundle's decision (segregation of duties), made by the gate.
//! Every decision is recorded (see [`crate::record`]).

use crate::store::{Role, User};

/// A server action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerAction {
    /// Start a session in a workspace.
    SessionStart,
    /// See a session: its summary and its events.
    SessionView,
    /// Answer a session's approval.
    SessionApprove,
}

impl ServerAction {
    /// The recorded name.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerAction::SessionStart => "session.start",
            ServerAction::SessionView => "session.view",
            ServerAction::SessionApprove => "session.approve",
        }
    }
}

/// What an action is about: whose session, in which teams' workspace.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The session's owner (for a start: the principal).
    pub owner: &'a str,
    /// The teams the workspace belongs to.
    pub teams: &'a [String],
}

/// Allowed, or refused with a reason.
pub fn decide(who: &User, action: ServerAction, on: Subject<'_>) -> Result<(), String> {
    let shares_team = who.teams.iter().any(|t| on.teams.contains(t));
    let own = who.name == on.owner;
    let allowed = match (action, who.role) {
        (_, Role::Admin) => true,
        (ServerAction::SessionStart, Role::Member | Role::Approver) => shares_team,
        (ServerAction::SessionStart, Role::Reviewer) => false,
        (ServerAction::SessionView, Role::Member) => own,
        (ServerAction::SessionView, Role::Approver | Role::Reviewer) => own || shares_team,
        // The owner answers their own asks as at a terminal; policy decides
        // whether their grant lifts the rule.
        (ServerAction::SessionApprove, Role::Member) => own,
        (ServerAction::SessionApprove, Role::Approver) => own || shares_team,
        (ServerAction::SessionApprove, Role::Reviewer) => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "{} ({}, teams {:?}) may not {} for {}'s session in a workspace of teams {:?}",
            who.name,
            who.role.as_str(),
            who.teams,
            action.as_str(),
            on.owner,
            on.teams
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, team: &str, role: Role) -> User {
        User {
            name: name.into(),
            teams: vec![team.into()],
            role,
            password_hash: None,
        }
    }

    #[test]
    fn roles_as_the_templates_describe_them() {
        let fin = vec!["finance".to_string()];
        let on = Subject {
            owner: "alice",
            teams: &fin,
        };
        let alice = user("alice", "finance", Role::Member);
        let bob = user("bob", "finance", Role::Approver);
        let rita = user("rita", "finance", Role::Reviewer);
        let carol = user("carol", "ops", Role::Approver);
        let dave = user("dave", "finance", Role::Member);
        use ServerAction::*;
        for (u, a, ok) in [
            (&alice, SessionStart, true),
            (&alice, SessionView, true),
            (&alice, SessionApprove, true),
            (&dave, SessionView, false),
            (&dave, SessionApprove, false),
            (&bob, SessionView, true),
            (&bob, SessionApprove, true),
            (&rita, SessionView, true),
            (&rita, SessionApprove, false),
            (&rita, SessionStart, false),
            (&carol, SessionView, false),
            (&carol, SessionApprove, false),
        ] {
            assert_eq!(decide(u, a, on).is_ok(), ok, "{} {a:?}", u.name);
        }
        let ops = vec!["ops".to_string()];
        let ops_ws = Subject {
            owner: "alice",
            teams: &ops,
        };
        assert!(decide(&alice, SessionStart, ops_ws).is_err());
    }
}
