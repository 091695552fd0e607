//! [`RemoteStore`] on SQLite: the `workers` and `remote_runs` tables.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension as _, Row};

use super::SqliteStore;
use crate::error::ServerError;
use crate::store::jobs::Lease;
use crate::store::remote::{Progress, Registered, RemoteRun, RemoteStore, Standing, WorkerRecord};

const RUN_COLUMNS: &str =
    "job, worker, attempt, session, account, verifier, next_msg, events, effects, started";

fn run_row(r: &Row<'_>) -> rusqlite::Result<RemoteRun> {
    Ok(RemoteRun {
        lease: Lease {
            job: r.get(0)?,
            worker: r.get(1)?,
            attempt: r.get(2)?,
        },
        session: r.get(3)?,
        account: r.get(4)?,
        verifier: r.get(5)?,
        progress: Progress {
            next_msg: r.get(6)?,
            events: r.get(7)?,
            effects: r.get(8)?,
            started: r.get(9)?,
        },
    })
}

fn worker_row(r: &Row<'_>) -> rusqlite::Result<WorkerRecord> {
    Ok(WorkerRecord {
        name: r.get(0)?,
        account: r.get(1)?,
        verifier: r.get(2)?,
        first_seen: r.get(3)?,
        last_seen: r.get(4)?,
    })
}

#[async_trait]
impl RemoteStore for SqliteStore {
    async fn register_worker(
        &self,
        name: &str,
        account: &str,
        verifier: Option<&str>,
        now: i64,
    ) -> Result<Registered, ServerError> {
        let (name, account) = (name.to_string(), account.to_string());
        let verifier = verifier.map(str::to_string);
        self.call(move |c| {
            // The update applies only when the name is this account's.
            let mine = c
                .query_row(
                    "INSERT INTO workers (name, account, verifier, first_seen, last_seen) \
                     VALUES (?1, ?2, COALESCE(?3, ''), ?4, ?4) \
                     ON CONFLICT(name) DO UPDATE SET last_seen = excluded.last_seen, \
                       verifier = COALESCE(?3, workers.verifier) \
                     WHERE workers.account = excluded.account \
                     RETURNING name, account, verifier, first_seen, last_seen",
                    params![name, account, verifier, now],
                    worker_row,
                )
                .optional()?;
            match mine {
                Some(w) => Ok(Registered::Yes(w)),
                None => c
                    .query_row(
                        "SELECT account FROM workers WHERE name = ?1",
                        params![name],
                        |r| r.get(0),
                    )
                    .map(Registered::OtherAccount),
            }
        })
        .await
    }

    async fn workers(&self) -> Result<Vec<WorkerRecord>, ServerError> {
        self.call(|c| {
            let mut st = c.prepare(
                "SELECT name, account, verifier, first_seen, last_seen FROM workers ORDER BY name",
            )?;
            let rows = st.query_map([], worker_row)?;
            rows.collect()
        })
        .await
    }

    async fn open_run(&self, run: &RemoteRun) -> Result<(), ServerError> {
        let r = run.clone();
        self.call(move |c| {
            c.execute(
                &format!(
                    "INSERT OR REPLACE INTO remote_runs ({RUN_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                ),
                params![
                    r.lease.job,
                    r.lease.worker,
                    r.lease.attempt,
                    r.session,
                    r.account,
                    r.verifier,
                    r.progress.next_msg,
                    r.progress.events,
                    r.progress.effects,
                    r.progress.started
                ],
            )
            .map(|_| ())
        })
        .await
    }

    async fn remote_run(&self, job: i64) -> Result<Option<RemoteRun>, ServerError> {
        self.call(move |c| {
            c.query_row(
                &format!("SELECT {RUN_COLUMNS} FROM remote_runs WHERE job = ?1"),
                params![job],
                run_row,
            )
            .optional()
        })
        .await
    }

    async fn remote_runs(&self) -> Result<Vec<RemoteRun>, ServerError> {
        self.call(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM remote_runs ORDER BY job"
            ))?;
            let rows = st.query_map([], run_row)?;
            rows.collect()
        })
        .await
    }

    async fn stale_runs(&self, now: i64) -> Result<Vec<(RemoteRun, Standing)>, ServerError> {
        self.call(move |c| {
            let mut st = c.prepare(
                "SELECT r.job, r.worker, r.attempt, r.session, r.account, r.verifier, \
                   r.next_msg, r.events, r.effects, r.started, \
                   (j.id IS NOT NULL AND j.state = 'running' AND j.attempts = r.attempt) \
                 FROM remote_runs r LEFT JOIN jobs j ON j.id = r.job \
                 WHERE j.id IS NULL OR j.state <> 'running' OR j.attempts <> r.attempt \
                   OR j.lease_until <= ?1 \
                 ORDER BY r.job",
            )?;
            let rows = st.query_map(params![now], |r| {
                let current: bool = r.get(10)?;
                Ok((
                    run_row(r)?,
                    if current {
                        Standing::Expired
                    } else {
                        Standing::Superseded
                    },
                ))
            })?;
            rows.collect()
        })
        .await
    }

    async fn advance_run(
        &self,
        lease: &Lease,
        from: i64,
        to: Progress,
    ) -> Result<bool, ServerError> {
        let l = lease.clone();
        self.call(move |c| {
            c.execute(
                "UPDATE remote_runs SET next_msg = ?5, events = ?6, effects = ?7, started = ?8 \
                 WHERE job = ?1 AND worker = ?2 AND attempt = ?3 AND next_msg = ?4",
                params![
                    l.job,
                    l.worker,
                    l.attempt,
                    from,
                    to.next_msg,
                    to.events,
                    to.effects,
                    to.started
                ],
            )
            .map(|n| n == 1)
        })
        .await
    }

    async fn close_run(&self, lease: &Lease) -> Result<bool, ServerError> {
        let l = lease.clone();
        self.call(move |c| {
            c.execute(
                "DELETE FROM remote_runs WHERE job = ?1 AND worker = ?2 AND attempt = ?3",
                params![l.job, l.worker, l.attempt],
            )
            .map(|n| n == 1)
        })
        .await
    }
}
