//! The SQLite store's schema, as numbered migrations (SQLite's
//! `user_version` counts those applied). Append new ones; never edit an
//! applied one. PostgreSQL has its own list (`postgres/migrations.rs`).

/// Migration `i` brings the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: accounts, tokens, sessions, events, approvals.
    "CREATE TABLE users (
        name TEXT PRIMARY KEY,
        teams TEXT NOT NULL,
        role TEXT NOT NULL,
        password_hash TEXT,
        setup_hash TEXT UNIQUE,
        setup_expires INTEGER,
        created INTEGER NOT NULL
    );
    CREATE TABLE tokens (
        hash TEXT PRIMARY KEY,
        user TEXT NOT NULL REFERENCES users(name),
        label TEXT NOT NULL,
        created INTEGER NOT NULL,
        expires INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        workspace TEXT NOT NULL,
        state TEXT NOT NULL,
        detail TEXT,
        created INTEGER NOT NULL,
        updated INTEGER NOT NULL
    );
    CREATE INDEX sessions_created ON sessions(created);
    CREATE TABLE events (
        session TEXT NOT NULL,
        n INTEGER NOT NULL,
        json TEXT NOT NULL,
        PRIMARY KEY (session, n)
    );
    CREATE TABLE approvals (
        id TEXT PRIMARY KEY,
        session TEXT NOT NULL,
        shown TEXT NOT NULL,
        shown_sha256 TEXT NOT NULL,
        requester TEXT NOT NULL,
        deadline INTEGER NOT NULL,
        state TEXT NOT NULL,
        approver TEXT,
        created INTEGER NOT NULL
    );
    CREATE INDEX approvals_state ON approvals(state);",
    // 2: host-side account and token changes wait here until the server has
    // recorded them in the audit log; what they create works only after.
    "CREATE TABLE admin_changes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        by TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    ALTER TABLE users ADD COLUMN pending_change INTEGER;
    ALTER TABLE tokens ADD COLUMN pending_change INTEGER;",
    // 3: browser sessions (cookie and CSRF token kept as SHA-256), ended by
    // logout (`revoked`) or expiry; tokens can be revoked and carry scopes
    // (those made before scopes keep every scope they had).
    "CREATE TABLE web_sessions (
        hash TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        teams TEXT NOT NULL,
        role TEXT NOT NULL,
        method TEXT NOT NULL,
        csrf_hash TEXT NOT NULL,
        created INTEGER NOT NULL,
        expires INTEGER NOT NULL,
        revoked INTEGER
    );
    ALTER TABLE tokens ADD COLUMN revoked INTEGER;
    ALTER TABLE tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT 'read,run,approve,admin';",
    // 4: scheduled tasks (the spec as the API received it, as JSON) and
    // every due run with what became of it.
    "CREATE TABLE schedules (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        workspace TEXT NOT NULL,
        spec TEXT NOT NULL,
        created INTEGER NOT NULL,
        next_run INTEGER
    );
    CREATE TABLE schedule_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        schedule TEXT NOT NULL,
        due INTEGER NOT NULL,
        at INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        session TEXT,
        detail TEXT,
        audit_entry INTEGER
    );
    CREATE INDEX schedule_runs_schedule ON schedule_runs(schedule);",
    // 5: a schedule paused by a person (from the web app or the API): when
    // and by whom; a paused schedule has no next run until it is unpaused.
    "ALTER TABLE schedules ADD COLUMN paused_at INTEGER;
    ALTER TABLE schedules ADD COLUMN paused_by TEXT;",
    // 6: webhook deliveries not yet made (kept across restarts until
    // delivered or given up on).
    "CREATE TABLE webhook_outbox (
        delivery TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        event TEXT NOT NULL,
        body TEXT NOT NULL,
        notice TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_at INTEGER NOT NULL
    );",
    // 7: the job queue (store/jobs.rs): claimed under a lease, reclaimed
    // when the lease runs out.
    "CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL,
        worker TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        lease_until INTEGER,
        error TEXT,
        created INTEGER NOT NULL,
        updated INTEGER NOT NULL
    );
    CREATE INDEX jobs_state ON jobs(state, id);",
    // 8: remote workers (store/remote.rs): each name bound to the account
    // that registered it; each open claim's owner and progress, shared by
    // every server on the store.
    "CREATE TABLE workers (
        name TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        verifier TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL
    );
    CREATE TABLE remote_runs (
        job INTEGER PRIMARY KEY,
        attempt INTEGER NOT NULL,
        worker TEXT NOT NULL,
        session TEXT NOT NULL,
        account TEXT NOT NULL,
        verifier TEXT NOT NULL,
        next_msg INTEGER NOT NULL,
        events INTEGER NOT NULL,
        effects INTEGER NOT NULL,
        started INTEGER NOT NULL
    );",
    // 9: workers' logs shipped to the servers (store/shipping.rs): per
    // origin, the key and where the accepted copy stands; each entry's exact
    // bytes with the fields reviewers search by.
    "CREATE TABLE shipped_logs (
        origin TEXT PRIMARY KEY,
        verifier TEXT NOT NULL,
        account TEXT NOT NULL,
        worker TEXT NOT NULL,
        size INTEGER NOT NULL,
        root BLOB NOT NULL,
        frontier BLOB NOT NULL,
        last_hash BLOB,
        last_boot TEXT,
        last_ts TEXT,
        checkpoint TEXT NOT NULL,
        updated INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE TABLE shipped_entries (
        origin TEXT NOT NULL,
        seq INTEGER NOT NULL,
        leaf BLOB NOT NULL,
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
    // 10: what a session bundle of a shipped log needs (docs/server.md
    // "Workers: shipping"): each entry's leaf hash (NULL in rows stored
    // before: computed from the leaf when read), the payload bodies the
    // batches carried, and the tree nodes (level >= 1) their leaves
    // completed (none for batches stored before: proofs compute them from
    // the leaf hashes).
    "ALTER TABLE shipped_entries ADD COLUMN leaf_hash BLOB;
    CREATE TABLE shipped_payloads (
        origin TEXT NOT NULL,
        cmt BLOB NOT NULL,
        seq INTEGER NOT NULL,
        media TEXT NOT NULL,
        salt BLOB NOT NULL,
        body BLOB NOT NULL,
        PRIMARY KEY (origin, cmt)
    );
    CREATE TABLE shipped_nodes (
        origin TEXT NOT NULL,
        level INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        hash BLOB NOT NULL,
        PRIMARY KEY (origin, level, idx)
    ) WITHOUT ROWID;",
    // 11: bundles a server handed out to continue a session on another
    // worker (docs/server.md "Workers: failover"), by their digest: later
    // bundles of the session carry them as their earlier slice.
    "CREATE TABLE kept_bundles (
        digest TEXT PRIMARY KEY,
        session TEXT NOT NULL,
        origin TEXT NOT NULL,
        last INTEGER NOT NULL,
        bytes BLOB NOT NULL,
        created INTEGER NOT NULL
    );
    CREATE INDEX kept_bundles_session ON kept_bundles(session, origin);",
];
