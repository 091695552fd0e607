//! Browser sessions (table `web_sessions`) and token revocation in SQLite.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension as _};

use super::SqliteStore;
use crate::error::ServerError;
use crate::store::credentials::{CredentialStore, TokenInfo, WebSession, WebSessionLookup};
use crate::store::{AdminChange, Role, User};

#[async_trait]
impl CredentialStore for SqliteStore {
    async fn add_web_session(&self, s: WebSession) -> Result<(), ServerError> {
        let teams = serde_json::to_string(&s.user.teams).unwrap_or_else(|_| "[]".into());
        self.call(move |c| {
            c.execute(
                "INSERT INTO web_sessions (hash, user, teams, role, method, csrf_hash, created, \
                 expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    s.hash,
                    s.user.name,
                    teams,
                    s.user.role.as_str(),
                    s.method,
                    s.csrf_hash,
                    s.created,
                    s.expires
                ],
            )
            .map(|_| ())
        })
        .await
    }

    async fn web_session(&self, hash: &str, now: i64) -> Result<WebSessionLookup, ServerError> {
        let h = hash.to_string();
        self.call(move |c| {
            let row = c
                .query_row(
                    "SELECT user, teams, role, method, csrf_hash, created, expires, revoked \
                     FROM web_sessions WHERE hash = ?1",
                    params![h],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, i64>(5)?,
                            r.get::<_, i64>(6)?,
                            r.get::<_, Option<i64>>(7)?,
                        ))
                    },
                )
                .optional()?;
            let Some((name, teams, role, method, csrf_hash, created, expires, revoked)) = row
            else {
                return Ok(WebSessionLookup::Unknown);
            };
            if revoked.is_some() {
                return Ok(WebSessionLookup::Revoked(name));
            }
            if expires <= now {
                return Ok(WebSessionLookup::Expired(name));
            }
            // A row naming no known role is not a session (fail closed).
            let Some(role) = Role::parse(&role) else {
                return Ok(WebSessionLookup::Unknown);
            };
            Ok(WebSessionLookup::Live(WebSession {
                hash: h,
                user: User {
                    name,
                    teams: serde_json::from_str(&teams).unwrap_or_default(),
                    role,
                    password_hash: None,
                },
                method,
                csrf_hash,
                created,
                expires,
            }))
        })
        .await
    }

    async fn revoke_web_session(&self, hash: &str, now: i64) -> Result<bool, ServerError> {
        let h = hash.to_string();
        self.call(move |c| {
            Ok(c.execute(
                "UPDATE web_sessions SET revoked = ?2 WHERE hash = ?1 AND revoked IS NULL",
                params![h, now],
            )? == 1)
        })
        .await
    }

    async fn revoke_token(&self, hash: &str, now: i64) -> Result<bool, ServerError> {
        let h = hash.to_string();
        self.call(move |c| {
            Ok(c.execute(
                "UPDATE tokens SET revoked = ?2 WHERE hash = ?1 AND revoked IS NULL",
                params![h, now],
            )? == 1)
        })
        .await
    }

    async fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenInfo>, ServerError> {
        let user = user.map(str::to_string);
        self.call(move |c| {
            let mut q = c.prepare(
                "SELECT hash, user, label, scopes, created, expires, revoked, pending_change \
                 FROM tokens WHERE ?1 IS NULL OR user = ?1 ORDER BY created, rowid",
            )?;
            let rows = q.query_map(params![user], |r| {
                let hash: String = r.get(0)?;
                Ok(TokenInfo {
                    // Only the id leaves the store: the hash is what authenticates.
                    id: hash.chars().take(12).collect(),
                    user: r.get(1)?,
                    label: r.get(2)?,
                    scopes: r.get(3)?,
                    created: r.get(4)?,
                    expires: r.get(5)?,
                    revoked: r.get(6)?,
                    recorded: r.get::<_, Option<i64>>(7)?.is_none(),
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn revoke_token_by_id(
        &self,
        id: &str,
        now: i64,
        change: AdminChange,
    ) -> Result<Option<String>, ServerError> {
        let pattern = format!("{id}%");
        self.call(move |c| {
            let tx = c.unchecked_transaction()?;
            let found: Vec<(String, String)> = {
                let mut q = tx.prepare(
                    "SELECT hash, user FROM tokens WHERE hash LIKE ?1 AND revoked IS NULL",
                )?;
                let rows = q.query_map(params![pattern], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let [(hash, user)] = found.as_slice() else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE tokens SET revoked = ?2 WHERE hash = ?1",
                params![hash, now],
            )?;
            super::insert_change(
                &tx,
                &AdminChange {
                    subject: user.clone(),
                    ..change
                },
            )?;
            tx.commit()?;
            Ok(Some(user.clone()))
        })
        .await
    }
}
