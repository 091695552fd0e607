//! Browser sessions (table `web_sessions`) and token revocation on PostgreSQL.

use async_trait::async_trait;

use super::core::insert_change;
use super::PgStore;
use crate::error::ServerError;
use crate::store::credentials::{CredentialStore, TokenInfo, WebSession, WebSessionLookup};
use crate::store::{AdminChange, Role, User};

#[async_trait]
impl CredentialStore for PgStore {
    async fn add_web_session(&self, s: WebSession) -> Result<(), ServerError> {
        let teams = serde_json::to_string(&s.user.teams).unwrap_or_else(|_| "[]".into());
        let c = self.client().await?;
        c.execute(
            "INSERT INTO web_sessions (hash, account, teams, role, method, csrf_hash, created, \
             expires) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &s.hash,
                &s.user.name,
                &teams,
                &s.user.role.as_str(),
                &s.method,
                &s.csrf_hash,
                &s.created,
                &s.expires,
            ],
        )
        .await?;
        Ok(())
    }

    async fn web_session(&self, hash: &str, now: i64) -> Result<WebSessionLookup, ServerError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT account, teams, role, method, csrf_hash, created, expires, revoked \
                 FROM web_sessions WHERE hash = $1",
            )
            .await?;
        let Some(r) = c.query_opt(&st, &[&hash]).await? else {
            return Ok(WebSessionLookup::Unknown);
        };
        let name: String = r.try_get(0)?;
        let expires: i64 = r.try_get(6)?;
        if r.try_get::<_, Option<i64>>(7)?.is_some() {
            return Ok(WebSessionLookup::Revoked(name));
        }
        if expires <= now {
            return Ok(WebSessionLookup::Expired(name));
        }
        // A row naming no known role is not a session (fail closed).
        let role: String = r.try_get(2)?;
        let Some(role) = Role::parse(&role) else {
            return Ok(WebSessionLookup::Unknown);
        };
        let teams: String = r.try_get(1)?;
        Ok(WebSessionLookup::Live(WebSession {
            hash: hash.to_string(),
            user: User {
                name,
                teams: serde_json::from_str(&teams).unwrap_or_default(),
                role,
                password_hash: None,
            },
            method: r.try_get(3)?,
            csrf_hash: r.try_get(4)?,
            created: r.try_get(5)?,
            expires,
        }))
    }

    async fn revoke_web_session(&self, hash: &str, now: i64) -> Result<bool, ServerError> {
        let c = self.client().await?;
        Ok(c.execute(
            "UPDATE web_sessions SET revoked = $2 WHERE hash = $1 AND revoked IS NULL",
            &[&hash, &now],
        )
        .await?
            == 1)
    }

    async fn revoke_token(&self, hash: &str, now: i64) -> Result<bool, ServerError> {
        let c = self.client().await?;
        Ok(c.execute(
            "UPDATE tokens SET revoked = $2 WHERE hash = $1 AND revoked IS NULL",
            &[&hash, &now],
        )
        .await?
            == 1)
    }

    async fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenInfo>, ServerError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT hash, account, label, scopes, created, expires, revoked, pending_change \
                 FROM tokens WHERE $1::TEXT IS NULL OR account = $1 ORDER BY created, seq",
                &[&user],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let hash: String = r.try_get(0)?;
            out.push(TokenInfo {
                // Only the id leaves the store: the hash is what authenticates.
                id: hash.chars().take(12).collect(),
                user: r.try_get(1)?,
                label: r.try_get(2)?,
                scopes: r.try_get(3)?,
                created: r.try_get(4)?,
                expires: r.try_get(5)?,
                revoked: r.try_get(6)?,
                recorded: r.try_get::<_, Option<i64>>(7)?.is_none(),
            });
        }
        Ok(out)
    }

    async fn revoke_token_by_id(
        &self,
        id: &str,
        now: i64,
        change: AdminChange,
    ) -> Result<Option<String>, ServerError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // Locked, so two revocations at once queue one change.
        let found = tx
            .query(
                "SELECT hash, account FROM tokens \
                 WHERE starts_with(hash, $1) AND revoked IS NULL FOR UPDATE",
                &[&id],
            )
            .await?;
        let [row] = found.as_slice() else {
            return Ok(None);
        };
        let (hash, user): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        tx.execute(
            "UPDATE tokens SET revoked = $2 WHERE hash = $1",
            &[&hash, &now],
        )
        .await?;
        insert_change(
            &tx,
            &AdminChange {
                subject: user.clone(),
                ..change
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Some(user))
    }
}
