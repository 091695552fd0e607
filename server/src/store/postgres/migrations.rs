//! The PostgreSQL store's schema, as numbered migrations recorded in
//! `schema_migrations` (one row per version applied). Append new ones;
//! never edit an applied one. They run only when asked (`stele serve
//! --migrate`): a server whose database is behind refuses to start, one
//! whose database is ahead (a newer stele migrated it) too.
//!
//! The tables are SQLite's (`store/migrations.rs`) in PostgreSQL's types:
//! BIGINT for every integer, BIGSERIAL for generated ids, a `seq` column
//! where SQLite's order came from its `rowid`, and `account` for SQLite's
//! `user` column (a reserved word here).

use deadpool_postgres::Client;

use crate::error::ServerError;

/// Migration `i` brings the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: everything the SQLite store had at its version 6.
    "CREATE TABLE admin_changes (
        id BIGSERIAL PRIMARY KEY,
        at BIGINT NOT NULL,
        made_by TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        teams TEXT NOT NULL,
        role TEXT NOT NULL,
        password_hash TEXT,
        setup_hash TEXT UNIQUE,
        setup_expires BIGINT,
        created BIGINT NOT NULL,
        pending_change BIGINT
    );
    CREATE TABLE tokens (
        hash TEXT PRIMARY KEY,
        seq BIGSERIAL NOT NULL,
        account TEXT NOT NULL REFERENCES users(name),
        label TEXT NOT NULL,
        created BIGINT NOT NULL,
        expires BIGINT NOT NULL,
        pending_change BIGINT,
        revoked BIGINT,
        scopes TEXT NOT NULL DEFAULT 'read,run,approve,admin'
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        workspace TEXT NOT NULL,
        state TEXT NOT NULL,
        detail TEXT,
        created BIGINT NOT NULL,
        updated BIGINT NOT NULL
    );
    CREATE INDEX sessions_created ON sessions(created);
    CREATE TABLE events (
        session TEXT NOT NULL,
        n BIGINT NOT NULL,
        json TEXT NOT NULL,
        PRIMARY KEY (session, n)
    );
    CREATE TABLE approvals (
        id TEXT PRIMARY KEY,
        session TEXT NOT NULL,
        shown TEXT NOT NULL,
        shown_sha256 TEXT NOT NULL,
        requester TEXT NOT NULL,
        deadline BIGINT NOT NULL,
        state TEXT NOT NULL,
        approver TEXT,
        created BIGINT NOT NULL
    );
    CREATE INDEX approvals_state ON approvals(state);
    CREATE TABLE web_sessions (
        hash TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        teams TEXT NOT NULL,
        role TEXT NOT NULL,
        method TEXT NOT NULL,
        csrf_hash TEXT NOT NULL,
        created BIGINT NOT NULL,
        expires BIGINT NOT NULL,
        revoked BIGINT
    );
    CREATE TABLE schedules (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        workspace TEXT NOT NULL,
        spec TEXT NOT NULL,
        created BIGINT NOT NULL,
        next_run BIGINT,
        paused_at BIGINT,
        paused_by TEXT
    );
    CREATE TABLE schedule_runs (
        id BIGSERIAL PRIMARY KEY,
        schedule TEXT NOT NULL,
        due BIGINT NOT NULL,
        at BIGINT NOT NULL,
        outcome TEXT NOT NULL,
        session TEXT,
        detail TEXT,
        audit_entry BIGINT
    );
    CREATE INDEX schedule_runs_schedule ON schedule_runs(schedule);
    CREATE TABLE webhook_outbox (
        delivery TEXT PRIMARY KEY,
        seq BIGSERIAL NOT NULL,
        url TEXT NOT NULL,
        event TEXT NOT NULL,
        body TEXT NOT NULL,
        notice TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        next_at BIGINT NOT NULL
    );",
    // 2: the job queue (store/jobs.rs); claims find the claimable jobs by
    // a partial index.
    "CREATE TABLE jobs (
        id BIGSERIAL PRIMARY KEY,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL,
        worker TEXT,
        attempts BIGINT NOT NULL DEFAULT 0,
        lease_until BIGINT,
        error TEXT,
        created BIGINT NOT NULL,
        updated BIGINT NOT NULL
    );
    CREATE INDEX jobs_claimable ON jobs(id) WHERE state IN ('queued', 'running');",
    // 3: remote workers (store/remote.rs): each name bound to the account
    // that registered it; each open claim's owner and progress, shared by
    // every server on the database.
    "CREATE TABLE workers (
        name TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        verifier TEXT NOT NULL,
        first_seen BIGINT NOT NULL,
        last_seen BIGINT NOT NULL
    );
    CREATE TABLE remote_runs (
        job BIGINT PRIMARY KEY,
        attempt BIGINT NOT NULL,
        worker TEXT NOT NULL,
        session TEXT NOT NULL,
        account TEXT NOT NULL,
        verifier TEXT NOT NULL,
        next_msg BIGINT NOT NULL,
        events BIGINT NOT NULL,
        effects BOOLEAN NOT NULL,
        started BOOLEAN NOT NULL
    );",
    // 4: workers' logs shipped to the servers (store/shipping.rs), as in
    // SQLite's migration 9.
    "CREATE TABLE shipped_logs (
        origin TEXT PRIMARY KEY,
        verifier TEXT NOT NULL,
        account TEXT NOT NULL,
        worker TEXT NOT NULL,
        size BIGINT NOT NULL,
        root BYTEA NOT NULL,
        frontier BYTEA NOT NULL,
        last_hash BYTEA,
        last_boot TEXT,
        last_ts TEXT,
        checkpoint TEXT NOT NULL,
        updated BIGINT NOT NULL,
        revoked_at BIGINT
    );
    CREATE TABLE shipped_entries (
        origin TEXT NOT NULL,
        seq BIGINT NOT NULL,
        leaf BYTEA NOT NULL,
        ts TEXT NOT NULL,
        session TEXT,
        principal TEXT NOT NULL,
        teams TEXT NOT NULL,
        kind TEXT NOT NULL,
        effect TEXT,
        path TEXT,
        PRIMARY KEY (origin, seq)
    );
    CREATE INDEX shipped_entries_session ON shipped_entries(session, ts) WHERE session IS NOT NULL;
    CREATE INDEX shipped_entries_decision ON shipped_entries(effect, principal, ts) WHERE effect IS NOT NULL;
    CREATE INDEX shipped_entries_time ON shipped_entries(ts);",
    // 5: what a session bundle of a shipped log needs, as in SQLite's
    // migration 10 (leaf hashes of rows stored before stay NULL: computed
    // from the leaf when read, rather than rewriting every row here).
    "ALTER TABLE shipped_entries ADD COLUMN leaf_hash BYTEA;
    CREATE TABLE shipped_payloads (
        origin TEXT NOT NULL,
        cmt BYTEA NOT NULL,
        seq BIGINT NOT NULL,
        media TEXT NOT NULL,
        salt BYTEA NOT NULL,
        body BYTEA NOT NULL,
        PRIMARY KEY (origin, cmt)
    );
    CREATE TABLE shipped_nodes (
        origin TEXT NOT NULL,
        level SMALLINT NOT NULL,
        idx BIGINT NOT NULL,
        hash BYTEA NOT NULL,
        PRIMARY KEY (origin, level, idx)
    );",
    // 6: bundles handed out to continue a session, as in SQLite's migration 11.
    "CREATE TABLE kept_bundles (
        digest TEXT PRIMARY KEY,
        session TEXT NOT NULL,
        origin TEXT NOT NULL,
        last BIGINT NOT NULL,
        bytes BYTEA NOT NULL,
        created BIGINT NOT NULL
    );
    CREATE INDEX kept_bundles_session ON kept_bundles(session, origin);",
];

/// Serializes `--migrate` runs of several servers on one database (an
/// arbitrary key of stele's own, held for each migration's transaction).
const MIGRATION_LOCK: i64 = 0x5737_454c_4501;

/// The versions this binary knows.
pub fn known() -> i64 {
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}

/// The database's schema version (0: no stele schema yet).
pub async fn version(c: &Client) -> Result<i64, ServerError> {
    let exists: bool = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = 'schema_migrations')",
            &[],
        )
        .await?
        .try_get(0)?;
    if !exists {
        return Ok(0);
    }
    Ok(c.query_one(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        &[],
    )
    .await?
    .try_get(0)?)
}

/// Refused: a schema ahead of this binary.
fn ahead(have: i64) -> ServerError {
    ServerError::Start(format!(
        "the PostgreSQL store has schema version {have}, newer than this stele knows ({}): \
         refusing to use it (run the newer stele)",
        known()
    ))
}

/// Start only on a schema exactly as this binary knows it.
pub async fn require_current(store: &super::PgStore) -> Result<(), ServerError> {
    let have = store.version().await?;
    if have > known() {
        return Err(ahead(have));
    }
    if have < known() {
        return Err(ServerError::Start(format!(
            "the PostgreSQL store has schema version {have}, this stele needs {}: run \
             `stele serve --migrate` (with the same --config) to migrate it, then start again",
            known()
        )));
    }
    Ok(())
}

/// Apply every pending migration, each in its own transaction, holding a
/// session-level advisory lock from the creation of the version table on:
/// servers migrating at once queue there, and the later ones find nothing
/// left to do (each migration is applied once). The versions before and after.
pub async fn migrate(c: &mut Client) -> Result<(i64, i64), ServerError> {
    c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let done = migrate_locked(c).await;
    // Released on every path; a connection that cannot release it is broken,
    // and its end releases the lock too.
    let unlocked = c
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let done = done?;
    unlocked?;
    Ok(done)
}

async fn migrate_locked(c: &mut Client) -> Result<(i64, i64), ServerError> {
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY,
            applied BIGINT NOT NULL
        )",
    )
    .await?;
    let from = version(c).await?;
    if from > known() {
        return Err(ahead(from));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let v = i64::try_from(i + 1).unwrap_or(i64::MAX);
        let tx = c.transaction().await?;
        let applied: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)",
                &[&v],
            )
            .await?
            .try_get(0)?;
        if applied {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied) VALUES ($1, $2)",
            &[&v, &super::now()],
        )
        .await?;
        tx.commit().await?;
    }
    Ok((from, version(c).await?))
}
