//! [`Store`] on PostgreSQL: accounts, tokens, the admin-change queue,
//! sessions, their events and the approvals queue. Each statement is the
//! SQLite store's, in PostgreSQL's dialect; what must happen together runs
//! in one transaction, and what must happen once is one conditional
//! `UPDATE` (an approval settles once: a second answer finds it no longer
//! pending, even when both arrive at once on two servers).

use async_trait::async_trait;
use stele_protocol::{ApprovalState, SessionState};
use tokio_postgres::Row;

use super::{now, PgStore};
use crate::error::ServerError;
use crate::store::sqlite::{
    approval_state, approval_state_name, session_state, session_state_name,
};
use crate::store::{
    AdminAction, AdminChange, ApprovalRecord, Role, SessionRecord, Store, TokenLookup, User,
};

const USER_COLS: &str = "name, teams, role, password_hash";
const SESSION_COLS: &str = "id, owner, workspace, state, detail, created, updated";
const APPROVAL_COLS: &str =
    "id, session, shown, shown_sha256, requester, deadline, state, approver";

pub(super) fn user_row(r: &Row) -> Result<User, tokio_postgres::Error> {
    let teams: String = r.try_get(1)?;
    let role: String = r.try_get(2)?;
    Ok(User {
        name: r.try_get(0)?,
        teams: serde_json::from_str(&teams).unwrap_or_default(),
        // An unknown role has the least rights.
        role: Role::parse(&role).unwrap_or(Role::Member),
        password_hash: r.try_get(3)?,
    })
}

fn session_row(r: &Row) -> Result<SessionRecord, tokio_postgres::Error> {
    let state: String = r.try_get(3)?;
    Ok(SessionRecord {
        id: r.try_get(0)?,
        owner: r.try_get(1)?,
        workspace: r.try_get(2)?,
        state: session_state(&state),
        detail: r.try_get(4)?,
        created: r.try_get(5)?,
        updated: r.try_get(6)?,
    })
}

fn approval_row(r: &Row) -> Result<ApprovalRecord, tokio_postgres::Error> {
    let state: String = r.try_get(6)?;
    Ok(ApprovalRecord {
        id: r.try_get(0)?,
        session: r.try_get(1)?,
        shown: r.try_get(2)?,
        shown_sha256: r.try_get(3)?,
        requester: r.try_get(4)?,
        deadline: r.try_get(5)?,
        state: approval_state(&state),
        approver: r.try_get(7)?,
    })
}

/// Queue `ch` (in the caller's transaction); its id.
pub(super) async fn insert_change(
    c: &tokio_postgres::Transaction<'_>,
    ch: &AdminChange,
) -> Result<i64, tokio_postgres::Error> {
    c.query_one(
        "INSERT INTO admin_changes (at, made_by, action, subject, detail) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
        &[
            &ch.at,
            &ch.by,
            &ch.action.as_str(),
            &ch.subject,
            &ch.detail.to_string(),
        ],
    )
    .await?
    .try_get(0)
}

/// A count of rows or a sequence number as the store's `u64`.
fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A `u64` as PostgreSQL's BIGINT.
pub(super) fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for PgStore {
    async fn add_user(
        &self,
        user: User,
        setup: Option<(String, i64)>,
        change: Option<AdminChange>,
    ) -> Result<bool, ServerError> {
        let teams = serde_json::to_string(&user.teams).unwrap_or_else(|_| "[]".into());
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let pending = match &change {
            Some(ch) => Some(insert_change(&tx, ch).await?),
            None => None,
        };
        let (sh, se) = setup.map_or((None, None), |(h, e)| (Some(h), Some(e)));
        let n = tx
            .execute(
                "INSERT INTO users (name, teams, role, password_hash, setup_hash, \
                 setup_expires, created, pending_change) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT DO NOTHING",
                &[
                    &user.name,
                    &teams,
                    &user.role.as_str(),
                    &user.password_hash,
                    &sh,
                    &se,
                    &now(),
                    &pending,
                ],
            )
            .await?;
        // A taken name changes nothing, not even the queue (the transaction
        // is rolled back when dropped).
        if n == 1 {
            tx.commit().await?;
        }
        Ok(n == 1)
    }

    async fn user(&self, name: &str) -> Result<Option<User>, ServerError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {USER_COLS} FROM users WHERE name = $1 AND pending_change IS NULL"
            ))
            .await?;
        Ok(c.query_opt(&st, &[&name])
            .await?
            .map(|r| user_row(&r))
            .transpose()?)
    }

    async fn users(&self) -> Result<Vec<User>, ServerError> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {USER_COLS} FROM users WHERE pending_change IS NULL ORDER BY name"
                ),
                &[],
            )
            .await?;
        Ok(rows.iter().map(user_row).collect::<Result<_, _>>()?)
    }

    async fn account_exists(&self, name: &str) -> Result<bool, ServerError> {
        let c = self.client().await?;
        Ok(c.query_opt("SELECT 1 FROM users WHERE name = $1", &[&name])
            .await?
            .is_some())
    }

    async fn pending_admin_changes(&self) -> Result<Vec<(i64, AdminChange)>, ServerError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT id, at, made_by, action, subject, detail FROM admin_changes ORDER BY id",
                &[],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let action: String = r.try_get(3)?;
            let detail: String = r.try_get(5)?;
            out.push((
                r.try_get(0)?,
                AdminChange {
                    at: r.try_get(1)?,
                    by: r.try_get(2)?,
                    // An unknown name cannot come from this code; it is
                    // recorded as an account change rather than lost.
                    action: AdminAction::parse(&action).unwrap_or(AdminAction::AccountAdd),
                    subject: r.try_get(4)?,
                    detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                },
            ));
        }
        Ok(out)
    }

    async fn admin_change_recorded(&self, id: i64) -> Result<(), ServerError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute(
            "UPDATE users SET pending_change = NULL WHERE pending_change = $1",
            &[&id],
        )
        .await?;
        tx.execute(
            "UPDATE tokens SET pending_change = NULL WHERE pending_change = $1",
            &[&id],
        )
        .await?;
        tx.execute("DELETE FROM admin_changes WHERE id = $1", &[&id])
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn complete_setup(
        &self,
        setup_hash: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<String>, ServerError> {
        let c = self.client().await?;
        Ok(c.query_opt(
            "UPDATE users SET password_hash = $2, setup_hash = NULL, setup_expires = NULL \
             WHERE setup_hash = $1 AND setup_expires > $3 RETURNING name",
            &[&setup_hash, &password_hash, &now],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?)
    }

    async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, ServerError> {
        let c = self.client().await?;
        Ok(c.execute(
            "UPDATE users SET password_hash = $2, setup_hash = NULL, setup_expires = NULL \
             WHERE name = $1",
            &[&name, &password_hash],
        )
        .await?
            == 1)
    }

    async fn add_token(
        &self,
        user: &str,
        token_hash: &str,
        label: &str,
        scopes: crate::auth::scopes::Scopes,
        lifetime: (i64, i64),
        change: Option<AdminChange>,
    ) -> Result<(), ServerError> {
        let sc = scopes.to_string();
        let (created, expires) = lifetime;
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let pending = match &change {
            Some(ch) => Some(insert_change(&tx, ch).await?),
            None => None,
        };
        tx.execute(
            "INSERT INTO tokens (hash, account, label, created, expires, pending_change, scopes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &token_hash,
                &user,
                &label,
                &created,
                &expires,
                &pending,
                &sc,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn token(&self, token_hash: &str, now: i64) -> Result<TokenLookup, ServerError> {
        let c = self.client().await?;
        // One round trip: the token and its (recorded) account together.
        let st = c
            .prepare_cached(
                "SELECT t.account, t.expires, t.revoked, t.scopes, \
                 u.name, u.teams, u.role, u.password_hash \
                 FROM tokens t LEFT JOIN users u \
                   ON u.name = t.account AND u.pending_change IS NULL \
                 WHERE t.hash = $1 AND t.pending_change IS NULL",
            )
            .await?;
        let Some(r) = c.query_opt(&st, &[&token_hash]).await? else {
            return Ok(TokenLookup::Unknown);
        };
        let user: String = r.try_get(0)?;
        let expires: i64 = r.try_get(1)?;
        let revoked: Option<i64> = r.try_get(2)?;
        let scopes: String = r.try_get(3)?;
        if revoked.is_some() {
            return Ok(TokenLookup::Revoked(user));
        }
        if expires <= now {
            return Ok(TokenLookup::Expired(user));
        }
        // Scopes that do not parse are no token (fail closed).
        let Ok(scopes) = crate::auth::scopes::Scopes::parse(&scopes) else {
            return Ok(TokenLookup::Unknown);
        };
        let name: Option<String> = r.try_get(4)?;
        if name.is_none() {
            return Ok(TokenLookup::Unknown);
        }
        let teams: String = r.try_get(5)?;
        let role: String = r.try_get(6)?;
        Ok(TokenLookup::Valid(
            User {
                name: user,
                teams: serde_json::from_str(&teams).unwrap_or_default(),
                role: Role::parse(&role).unwrap_or(Role::Member),
                password_hash: r.try_get(7)?,
            },
            scopes,
        ))
    }

    async fn put_session(&self, s: SessionRecord) -> Result<(), ServerError> {
        let c = self.client().await?;
        c.execute(
            &format!("INSERT INTO sessions ({SESSION_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
            &[
                &s.id,
                &s.owner,
                &s.workspace,
                &session_state_name(s.state),
                &s.detail,
                &s.created,
                &s.updated,
            ],
        )
        .await?;
        Ok(())
    }

    async fn set_session_state(
        &self,
        id: &str,
        state: SessionState,
        detail: Option<String>,
        now: i64,
    ) -> Result<(), ServerError> {
        let c = self.client().await?;
        c.execute(
            "UPDATE sessions SET state = $2, detail = COALESCE($3, detail), updated = $4 \
             WHERE id = $1",
            &[&id, &session_state_name(state), &detail, &now],
        )
        .await?;
        Ok(())
    }

    async fn session(&self, id: &str) -> Result<Option<SessionRecord>, ServerError> {
        let c = self.client().await?;
        Ok(c.query_opt(
            &format!("SELECT {SESSION_COLS} FROM sessions WHERE id = $1"),
            &[&id],
        )
        .await?
        .map(|r| session_row(&r))
        .transpose()?)
    }

    async fn sessions(&self) -> Result<Vec<SessionRecord>, ServerError> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!("SELECT {SESSION_COLS} FROM sessions ORDER BY created DESC, id"),
                &[],
            )
            .await?;
        Ok(rows.iter().map(session_row).collect::<Result<_, _>>()?)
    }

    async fn append_event(&self, session: &str, n: u64, json: &str) -> Result<(), ServerError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached("INSERT INTO events (session, n, json) VALUES ($1, $2, $3)")
            .await?;
        c.execute(&st, &[&session, &signed(n), &json]).await?;
        Ok(())
    }

    async fn events_after(
        &self,
        session: &str,
        after: u64,
    ) -> Result<Vec<(u64, String)>, ServerError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached("SELECT n, json FROM events WHERE session = $1 AND n > $2 ORDER BY n")
            .await?;
        let rows = c.query(&st, &[&session, &signed(after)]).await?;
        rows.iter()
            .map(|r| Ok((unsigned(r.try_get(0)?), r.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(ServerError::from)
    }

    async fn add_approval(&self, a: ApprovalRecord) -> Result<(), ServerError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!(
                "INSERT INTO approvals ({APPROVAL_COLS}, created) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ))
            .await?;
        c.execute(
            &st,
            &[
                &a.id,
                &a.session,
                &a.shown,
                &a.shown_sha256,
                &a.requester,
                &a.deadline,
                &approval_state_name(a.state),
                &a.approver,
                &now(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, ServerError> {
        let c = self.client().await?;
        Ok(c.query_opt(
            &format!("SELECT {APPROVAL_COLS} FROM approvals WHERE id = $1"),
            &[&id],
        )
        .await?
        .map(|r| approval_row(&r))
        .transpose()?)
    }

    async fn pending_approvals(&self) -> Result<Vec<ApprovalRecord>, ServerError> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {APPROVAL_COLS} FROM approvals WHERE state = 'pending' \
                     ORDER BY created, id"
                ),
                &[],
            )
            .await?;
        Ok(rows.iter().map(approval_row).collect::<Result<_, _>>()?)
    }

    async fn settle_approval(
        &self,
        id: &str,
        state: ApprovalState,
        approver: Option<&str>,
    ) -> Result<bool, ServerError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "UPDATE approvals SET state = $2, approver = $3 \
                 WHERE id = $1 AND state = 'pending'",
            )
            .await?;
        Ok(
            c.execute(&st, &[&id, &approval_state_name(state), &approver])
                .await?
                == 1,
        )
    }
}
