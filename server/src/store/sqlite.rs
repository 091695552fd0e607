//! The store in SQLite (`server.db` beside the audit log): WAL, private
//! file (0600) in a private folder, migrations applied at open.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension as _};
use stele_protocol::{ApprovalState, SessionState};

use super::migrations::MIGRATIONS;
use super::{
    AdminAction, AdminChange, ApprovalRecord, Role, SessionRecord, Store, TokenLookup, User,
};
use crate::error::ServerError;

mod credentials;
mod jobs;
mod kept_bundles;
mod remote;
pub(in crate::store) mod schedules;
mod shipped_reads;
mod shipping;
mod webhooks;

/// The SQLite store. One connection, used from blocking tasks.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Open (or create) the store at `path` and bring its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, ServerError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            stele_runtime::paths::ensure_private_dir(dir).map_err(|source| ServerError::Io {
                what: format!("creating {}", dir.display()),
                source,
            })?;
        }
        private_file(path)?;
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The schema version of the store at `path` (0 when there is none yet),
    /// read without changing it.
    pub fn version_at(path: &Path) -> Result<u32, ServerError> {
        if !path.exists() {
            return Ok(0);
        }
        let c = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// The schema version (migrations applied).
    pub fn version(&self) -> Result<u32, ServerError> {
        let c = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    async fn call<R, F>(&self, f: F) -> Result<R, ServerError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let c = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&c)
        })
        .await
        .map_err(|e| ServerError::Task(e.to_string()))?
        .map_err(ServerError::from)
    }
}

/// Create `path` with mode 0600 (or make an existing one 0600) before SQLite opens it;
/// its `-wal` and `-shm` files take the same mode.
fn private_file(path: &Path) -> Result<(), ServerError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let io = |source| ServerError::Io {
        what: format!("creating {}", path.display()),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io)
}

fn migrate(conn: &mut Connection) -> Result<(), ServerError> {
    let have: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = u32::try_from(MIGRATIONS.len()).unwrap_or(u32::MAX);
    if have > known {
        return Err(ServerError::Start(format!(
            "server.db has schema version {have}, newer than this stele knows ({known}): \
             refusing to use it (run the newer stele)"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(have as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

pub(in crate::store) fn session_state_name(s: SessionState) -> &'static str {
    match s {
        SessionState::Starting => "starting",
        SessionState::Running => "running",
        SessionState::WaitingApproval => "waiting_approval",
        SessionState::Ended => "ended",
        SessionState::Paused => "paused",
        SessionState::Failed => "failed",
    }
}

pub(in crate::store) fn session_state(s: &str) -> SessionState {
    match s {
        "starting" => SessionState::Starting,
        "running" => SessionState::Running,
        "waiting_approval" => SessionState::WaitingApproval,
        "ended" => SessionState::Ended,
        "paused" => SessionState::Paused,
        // Anything unknown is shown as failed, never as running.
        _ => SessionState::Failed,
    }
}

pub(in crate::store) fn approval_state_name(s: ApprovalState) -> &'static str {
    match s {
        ApprovalState::Pending => "pending",
        ApprovalState::Granted => "granted",
        ApprovalState::Refused => "refused",
        ApprovalState::Expired => "expired",
    }
}

pub(in crate::store) fn approval_state(s: &str) -> ApprovalState {
    match s {
        "pending" => ApprovalState::Pending,
        "granted" => ApprovalState::Granted,
        "expired" => ApprovalState::Expired,
        // Anything unknown counts as refused, never as granted.
        _ => ApprovalState::Refused,
    }
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let teams: String = r.get(1)?;
    let role: String = r.get(2)?;
    Ok(User {
        name: r.get(0)?,
        teams: serde_json::from_str(&teams).unwrap_or_default(),
        // An unknown role has the least rights.
        role: Role::parse(&role).unwrap_or(Role::Member),
        password_hash: r.get(3)?,
    })
}

fn session_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRecord> {
    let state: String = r.get(3)?;
    Ok(SessionRecord {
        id: r.get(0)?,
        owner: r.get(1)?,
        workspace: r.get(2)?,
        state: session_state(&state),
        detail: r.get(4)?,
        created: r.get(5)?,
        updated: r.get(6)?,
    })
}

fn approval_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApprovalRecord> {
    let state: String = r.get(6)?;
    Ok(ApprovalRecord {
        id: r.get(0)?,
        session: r.get(1)?,
        shown: r.get(2)?,
        shown_sha256: r.get(3)?,
        requester: r.get(4)?,
        deadline: r.get(5)?,
        state: approval_state(&state),
        approver: r.get(7)?,
    })
}

const USER_COLS: &str = "name, teams, role, password_hash";
const SESSION_COLS: &str = "id, owner, workspace, state, detail, created, updated";
const APPROVAL_COLS: &str =
    "id, session, shown, shown_sha256, requester, deadline, state, approver";

/// Queue `ch`; its id.
fn insert_change(c: &Connection, ch: &AdminChange) -> rusqlite::Result<i64> {
    c.query_row(
        "INSERT INTO admin_changes (at, by, action, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5) \
         RETURNING id",
        params![
            ch.at,
            ch.by,
            ch.action.as_str(),
            ch.subject,
            ch.detail.to_string()
        ],
        |r| r.get(0),
    )
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[async_trait]
impl Store for SqliteStore {
    async fn add_user(
        &self,
        user: User,
        setup: Option<(String, i64)>,
        change: Option<AdminChange>,
    ) -> Result<bool, ServerError> {
        let teams = serde_json::to_string(&user.teams).unwrap_or_else(|_| "[]".into());
        self.call(move |c| {
            let tx = c.unchecked_transaction()?;
            let pending = change.map(|ch| insert_change(&tx, &ch)).transpose()?;
            let (sh, se) = setup.map_or((None, None), |(h, e)| (Some(h), Some(e)));
            let n = tx.execute(
                "INSERT OR IGNORE INTO users (name, teams, role, password_hash, setup_hash, \
                 setup_expires, created, pending_change) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    user.name,
                    teams,
                    user.role.as_str(),
                    user.password_hash,
                    sh,
                    se,
                    now(),
                    pending
                ],
            )?;
            // A taken name changes nothing, not even the queue.
            if n == 1 {
                tx.commit()?;
            }
            Ok(n == 1)
        })
        .await
    }

    async fn user(&self, name: &str) -> Result<Option<User>, ServerError> {
        let name = name.to_string();
        self.call(move |c| {
            c.query_row(
                &format!(
                    "SELECT {USER_COLS} FROM users WHERE name = ?1 AND pending_change IS NULL"
                ),
                params![name],
                user_row,
            )
            .optional()
        })
        .await
    }

    async fn users(&self) -> Result<Vec<User>, ServerError> {
        self.call(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {USER_COLS} FROM users WHERE pending_change IS NULL ORDER BY name"
            ))?;
            let rows = st.query_map([], user_row)?;
            rows.collect()
        })
        .await
    }

    async fn account_exists(&self, name: &str) -> Result<bool, ServerError> {
        let name = name.to_string();
        self.call(move |c| {
            c.query_row("SELECT 1 FROM users WHERE name = ?1", params![name], |_| {
                Ok(())
            })
            .optional()
            .map(|r| r.is_some())
        })
        .await
    }

    async fn pending_admin_changes(&self) -> Result<Vec<(i64, AdminChange)>, ServerError> {
        self.call(|c| {
            let mut st = c.prepare(
                "SELECT id, at, by, action, subject, detail FROM admin_changes ORDER BY id",
            )?;
            let rows = st.query_map([], |r| {
                let action: String = r.get(3)?;
                let detail: String = r.get(5)?;
                Ok((
                    r.get::<_, i64>(0)?,
                    AdminChange {
                        at: r.get(1)?,
                        by: r.get(2)?,
                        // An unknown name cannot come from this code; it is
                        // recorded as an account change rather than lost.
                        action: AdminAction::parse(&action).unwrap_or(AdminAction::AccountAdd),
                        subject: r.get(4)?,
                        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                    },
                ))
            })?;
            rows.collect()
        })
        .await
    }

    async fn admin_change_recorded(&self, id: i64) -> Result<(), ServerError> {
        self.call(move |c| {
            let tx = c.unchecked_transaction()?;
            tx.execute(
                "UPDATE users SET pending_change = NULL WHERE pending_change = ?1",
                params![id],
            )?;
            tx.execute(
                "UPDATE tokens SET pending_change = NULL WHERE pending_change = ?1",
                params![id],
            )?;
            tx.execute("DELETE FROM admin_changes WHERE id = ?1", params![id])?;
            tx.commit()
        })
        .await
    }

    async fn complete_setup(
        &self,
        setup_hash: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<String>, ServerError> {
        let (sh, ph) = (setup_hash.to_string(), password_hash.to_string());
        self.call(move |c| {
            c.query_row(
                "UPDATE users SET password_hash = ?2, setup_hash = NULL, setup_expires = NULL \
                 WHERE setup_hash = ?1 AND setup_expires > ?3 RETURNING name",
                params![sh, ph, now],
                |r| r.get(0),
            )
            .optional()
        })
        .await
    }

    async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, ServerError> {
        let (n, ph) = (name.to_string(), password_hash.to_string());
        self.call(move |c| {
            Ok(c.execute(
                "UPDATE users SET password_hash = ?2, setup_hash = NULL, setup_expires = NULL \
                 WHERE name = ?1",
                params![n, ph],
            )? == 1)
        })
        .await
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
        let (u, h, l) = (user.to_string(), token_hash.to_string(), label.to_string());
        let sc = scopes.to_string();
        let (created, expires) = lifetime;
        self.call(move |c| {
            let tx = c.unchecked_transaction()?;
            let pending = change.map(|ch| insert_change(&tx, &ch)).transpose()?;
            tx.execute(
                "INSERT INTO tokens (hash, user, label, created, expires, pending_change, scopes) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![h, u, l, created, expires, pending, sc],
            )?;
            tx.commit()
        })
        .await
    }

    async fn token(&self, token_hash: &str, now: i64) -> Result<TokenLookup, ServerError> {
        let h = token_hash.to_string();
        self.call(move |c| {
            let row: Option<(String, i64, Option<i64>, String)> = c
                .query_row(
                    "SELECT user, expires, revoked, scopes FROM tokens \
                     WHERE hash = ?1 AND pending_change IS NULL",
                    params![h],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            let Some((user, expires, revoked, scopes)) = row else {
                return Ok(TokenLookup::Unknown);
            };
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
            let u = c
                .query_row(
                    &format!(
                        "SELECT {USER_COLS} FROM users WHERE name = ?1 AND pending_change IS NULL"
                    ),
                    params![user],
                    user_row,
                )
                .optional()?;
            Ok(u.map_or(TokenLookup::Unknown, |u| TokenLookup::Valid(u, scopes)))
        })
        .await
    }

    async fn put_session(&self, s: SessionRecord) -> Result<(), ServerError> {
        self.call(move |c| {
            c.execute(
                &format!(
                    "INSERT INTO sessions ({SESSION_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ),
                params![
                    s.id,
                    s.owner,
                    s.workspace,
                    session_state_name(s.state),
                    s.detail,
                    s.created,
                    s.updated
                ],
            )
            .map(|_| ())
        })
        .await
    }

    async fn set_session_state(
        &self,
        id: &str,
        state: SessionState,
        detail: Option<String>,
        now: i64,
    ) -> Result<(), ServerError> {
        let id = id.to_string();
        self.call(move |c| {
            c.execute(
                "UPDATE sessions SET state = ?2, detail = COALESCE(?3, detail), updated = ?4 \
                 WHERE id = ?1",
                params![id, session_state_name(state), detail, now],
            )
            .map(|_| ())
        })
        .await
    }

    async fn session(&self, id: &str) -> Result<Option<SessionRecord>, ServerError> {
        let id = id.to_string();
        self.call(move |c| {
            c.query_row(
                &format!("SELECT {SESSION_COLS} FROM sessions WHERE id = ?1"),
                params![id],
                session_row,
            )
            .optional()
        })
        .await
    }

    async fn sessions(&self) -> Result<Vec<SessionRecord>, ServerError> {
        self.call(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {SESSION_COLS} FROM sessions ORDER BY created DESC, id"
            ))?;
            let rows = st.query_map([], session_row)?;
            rows.collect()
        })
        .await
    }

    async fn append_event(&self, session: &str, n: u64, json: &str) -> Result<(), ServerError> {
        let (s, j) = (session.to_string(), json.to_string());
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.call(move |c| {
            c.execute(
                "INSERT INTO events (session, n, json) VALUES (?1, ?2, ?3)",
                params![s, n, j],
            )
            .map(|_| ())
        })
        .await
    }

    async fn events_after(
        &self,
        session: &str,
        after: u64,
    ) -> Result<Vec<(u64, String)>, ServerError> {
        let s = session.to_string();
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.call(move |c| {
            let mut st = c.prepare_cached(
                "SELECT n, json FROM events WHERE session = ?1 AND n > ?2 ORDER BY n",
            )?;
            let rows = st.query_map(params![s, after], |r| {
                let n: i64 = r.get(0)?;
                Ok((u64::try_from(n).unwrap_or(0), r.get(1)?))
            })?;
            rows.collect()
        })
        .await
    }

    async fn add_approval(&self, a: ApprovalRecord) -> Result<(), ServerError> {
        self.call(move |c| {
            c.execute(
                &format!(
                    "INSERT INTO approvals ({APPROVAL_COLS}, created) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ),
                params![
                    a.id,
                    a.session,
                    a.shown,
                    a.shown_sha256,
                    a.requester,
                    a.deadline,
                    approval_state_name(a.state),
                    a.approver,
                    now()
                ],
            )
            .map(|_| ())
        })
        .await
    }

    async fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, ServerError> {
        let id = id.to_string();
        self.call(move |c| {
            c.query_row(
                &format!("SELECT {APPROVAL_COLS} FROM approvals WHERE id = ?1"),
                params![id],
                approval_row,
            )
            .optional()
        })
        .await
    }

    async fn pending_approvals(&self) -> Result<Vec<ApprovalRecord>, ServerError> {
        self.call(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {APPROVAL_COLS} FROM approvals WHERE state = 'pending' ORDER BY created, id"
            ))?;
            let rows = st.query_map([], approval_row)?;
            rows.collect()
        })
        .await
    }

    async fn settle_approval(
        &self,
        id: &str,
        state: ApprovalState,
        approver: Option<&str>,
    ) -> Result<bool, ServerError> {
        let (id, who) = (id.to_string(), approver.map(str::to_string));
        self.call(move |c| {
            Ok(c.execute(
                "UPDATE approvals SET state = ?2, approver = ?3 WHERE id = ?1 AND state = 'pending'",
                params![id, approval_state_name(state), who],
            )? == 1)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn private_versioned_and_an_answer_counts_once() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state/server.db");
        let s = SqliteStore::open(&p).unwrap();
        assert_eq!(s.version().unwrap() as usize, MIGRATIONS.len());
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Opening again applies nothing twice.
        drop(s);
        let s = SqliteStore::open(&p).unwrap();
        s.add_approval(ApprovalRecord {
            id: "a1".into(),
            session: "s".into(),
            shown: "x".into(),
            shown_sha256: "h".into(),
            requester: "alice".into(),
            deadline: 10,
            state: ApprovalState::Pending,
            approver: None,
        })
        .await
        .unwrap();
        assert!(s
            .settle_approval("a1", ApprovalState::Granted, Some("bob"))
            .await
            .unwrap());
        assert!(!s
            .settle_approval("a1", ApprovalState::Refused, Some("carol"))
            .await
            .unwrap());
        let a = s.approval("a1").await.unwrap().unwrap();
        assert_eq!(
            (a.state, a.approver.as_deref()),
            (ApprovalState::Granted, Some("bob"))
        );
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("server.db");
        drop(SqliteStore::open(&p).unwrap());
        let c = Connection::open(&p).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        let e = SqliteStore::open(&p).unwrap_err().to_string();
        assert!(e.contains("schema version 99"), "{e}");
    }
}
