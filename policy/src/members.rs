//! The members file (`members.toml`): which users belong to which teams.
//!
//! ```toml
//! [users]
//! alice = ["finance"]
//! bob = ["finance", "ops"]
//! ```
//!
//! Every team named must have a `teams/<team>/` folder in the bundle, and a
//! user listed with no teams is refused (say so by leaving them out).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use toml::Spanned;

use crate::error::{Location, PolicyError};
use crate::source::line_col;

/// File name of the members file inside a bundle.
pub const MEMBERS_FILE: &str = "members.toml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    users: BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
}

/// Users and their teams, validated against the bundle's team folders.
#[derive(Debug, Clone, Default)]
pub struct Members {
    users: BTreeMap<String, BTreeSet<String>>,
}

/// Whether `name` is usable as a team or user id (also the folder name).
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        && !name.starts_with('.')
}

impl Members {
    /// Parse `text` (the contents of [`MEMBERS_FILE`]); `teams` are the team
    /// folders found in the bundle.
    pub(crate) fn parse(text: &str, teams: &BTreeSet<String>) -> Result<Self, PolicyError> {
        let at = |offset: usize| {
            let (l, c) = line_col(text, offset);
            Location::at(MEMBERS_FILE, l, c)
        };
        crate::depth::check(MEMBERS_FILE, text, crate::depth::Syntax::Toml)?;
        let raw: Raw = toml::from_str(text).map_err(|e| PolicyError::Members {
            location: e
                .span()
                .map_or_else(|| Location::file(MEMBERS_FILE), |s| at(s.start)),
            message: e.message().to_owned(),
        })?;
        let mut users = BTreeMap::new();
        for (user, user_teams) in raw.users {
            let loc = at(user.span().start);
            let user = user.into_inner();
            if !valid_name(&user) {
                return Err(PolicyError::Members {
                    location: loc,
                    message: format!(
                        "invalid user id `{user}` (letters, digits, - _ . @; not starting with .)"
                    ),
                });
            }
            if user_teams.is_empty() {
                return Err(PolicyError::Members {
                    location: loc,
                    message: format!("user `{user}` is listed with no teams"),
                });
            }
            let mut set = BTreeSet::new();
            for team in user_teams {
                let tloc = at(team.span().start);
                let team = team.into_inner();
                if !teams.contains(&team) {
                    return Err(PolicyError::Members {
                        location: tloc,
                        message: format!(
                            "user `{user}` is in unknown team `{team}` (no teams/{team}/ folder; \
                             known teams: {})",
                            teams.iter().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    });
                }
                set.insert(team);
            }
            users.insert(user, set);
        }
        Ok(Self { users })
    }

    /// The teams of `user` (empty for a user not in the file).
    pub fn teams_of(&self, user: &str) -> impl Iterator<Item = &str> {
        self.users
            .get(user)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// All users, sorted.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    /// The users of `team`, sorted.
    pub fn members_of<'a>(&'a self, team: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.users
            .iter()
            .filter(move |(_, teams)| teams.contains(team))
            .map(|(u, _)| u.as_str())
    }
}
