//! [`RemoteStore`] on PostgreSQL: the `workers` and `remote_runs` tables,
//! shared by every server on the database. A claim's progress moves by a
//! compare-and-set on its expected message number, so two servers taking
//! the same batch at once keep it once.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::PgStore;
use crate::error::ServerError;
use crate::store::jobs::Lease;
use crate::store::remote::{Progress, Registered, RemoteRun, RemoteStore, Standing, WorkerRecord};

const RUN_COLUMNS: &str =
    "job, worker, attempt, session, account, verifier, next_msg, events, effects, started";

fn run_row(r: &Row) -> Result<RemoteRun, ServerError> {
    Ok(RemoteRun {
        lease: Lease {
            job: r.try_get(0)?,
            worker: r.try_get(1)?,
            attempt: r.try_get(2)?,
        },
        session: r.try_get(3)?,
        account: r.try_get(4)?,
        verifier: r.try_get(5)?,
        progress: Progress {
            next_msg: r.try_get(6)?,
            events: r.try_get(7)?,
            effects: r.try_get(8)?,
            started: r.try_get(9)?,
        },
    })
}

fn worker_row(r: &Row) -> Result<WorkerRecord, ServerError> {
    Ok(WorkerRecord {
        name: r.try_get(0)?,
        account: r.try_get(1)?,
        verifier: r.try_get(2)?,
        first_seen: r.try_get(3)?,
        last_seen: r.try_get(4)?,
    })
}

#[async_trait]
impl RemoteStore for PgStore {
    async fn register_worker(
        &self,
        name: &str,
        account: &str,
        verifier: Option<&str>,
        now: i64,
    ) -> Result<Registered, ServerError> {
        let c = self.client().await?;
        // The update applies only when the name is this account's.
        let mine = c
            .query_opt(
                "INSERT INTO workers (name, account, verifier, first_seen, last_seen) \
                 VALUES ($1, $2, COALESCE($3, ''), $4, $4) \
                 ON CONFLICT (name) DO UPDATE SET last_seen = EXCLUDED.last_seen, \
                   verifier = COALESCE($3, workers.verifier) \
                 WHERE workers.account = EXCLUDED.account \
                 RETURNING name, account, verifier, first_seen, last_seen",
                &[&name, &account, &verifier, &now],
            )
            .await?;
        match mine {
            Some(r) => Ok(Registered::Yes(worker_row(&r)?)),
            None => {
                let r = c
                    .query_one("SELECT account FROM workers WHERE name = $1", &[&name])
                    .await?;
                Ok(Registered::OtherAccount(r.try_get(0)?))
            }
        }
    }

    async fn workers(&self) -> Result<Vec<WorkerRecord>, ServerError> {
        let c = self.client().await?;
        c.query(
            "SELECT name, account, verifier, first_seen, last_seen FROM workers ORDER BY name",
            &[],
        )
        .await?
        .iter()
        .map(worker_row)
        .collect()
    }

    async fn open_run(&self, run: &RemoteRun) -> Result<(), ServerError> {
        let c = self.client().await?;
        let p = &run.progress;
        c.execute(
            &format!(
                "INSERT INTO remote_runs ({RUN_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (job) DO UPDATE SET worker = EXCLUDED.worker, \
                   attempt = EXCLUDED.attempt, session = EXCLUDED.session, \
                   account = EXCLUDED.account, verifier = EXCLUDED.verifier, \
                   next_msg = EXCLUDED.next_msg, events = EXCLUDED.events, \
                   effects = EXCLUDED.effects, started = EXCLUDED.started"
            ),
            &[
                &run.lease.job,
                &run.lease.worker,
                &run.lease.attempt,
                &run.session,
                &run.account,
                &run.verifier,
                &p.next_msg,
                &p.events,
                &p.effects,
                &p.started,
            ],
        )
        .await?;
        Ok(())
    }

    async fn remote_run(&self, job: i64) -> Result<Option<RemoteRun>, ServerError> {
        let c = self.client().await?;
        c.query_opt(
            &format!("SELECT {RUN_COLUMNS} FROM remote_runs WHERE job = $1"),
            &[&job],
        )
        .await?
        .map(|r| run_row(&r))
        .transpose()
    }

    async fn remote_runs(&self) -> Result<Vec<RemoteRun>, ServerError> {
        let c = self.client().await?;
        c.query(
            &format!("SELECT {RUN_COLUMNS} FROM remote_runs ORDER BY job"),
            &[],
        )
        .await?
        .iter()
        .map(run_row)
        .collect()
    }

    async fn stale_runs(&self, now: i64) -> Result<Vec<(RemoteRun, Standing)>, ServerError> {
        let c = self.client().await?;
        c.query(
            "SELECT r.job, r.worker, r.attempt, r.session, r.account, r.verifier, \
               r.next_msg, r.events, r.effects, r.started, \
               (j.id IS NOT NULL AND j.state = 'running' AND j.attempts = r.attempt) \
             FROM remote_runs r LEFT JOIN jobs j ON j.id = r.job \
             WHERE j.id IS NULL OR j.state <> 'running' OR j.attempts <> r.attempt \
               OR j.lease_until <= $1 \
             ORDER BY r.job",
            &[&now],
        )
        .await?
        .iter()
        .map(|r| {
            let current: Option<bool> = r.try_get(10)?;
            Ok((
                run_row(r)?,
                if current == Some(true) {
                    Standing::Expired
                } else {
                    Standing::Superseded
                },
            ))
        })
        .collect()
    }

    async fn advance_run(
        &self,
        lease: &Lease,
        from: i64,
        to: Progress,
    ) -> Result<bool, ServerError> {
        let c = self.client().await?;
        Ok(c.execute(
            "UPDATE remote_runs SET next_msg = $5, events = $6, effects = $7, started = $8 \
             WHERE job = $1 AND worker = $2 AND attempt = $3 AND next_msg = $4",
            &[
                &lease.job,
                &lease.worker,
                &lease.attempt,
                &from,
                &to.next_msg,
                &to.events,
                &to.effects,
                &to.started,
            ],
        )
        .await?
            == 1)
    }

    async fn close_run(&self, lease: &Lease) -> Result<bool, ServerError> {
        let c = self.client().await?;
        Ok(c.execute(
            "DELETE FROM remote_runs WHERE job = $1 AND worker = $2 AND attempt = $3",
            &[&lease.job, &lease.worker, &lease.attempt],
        )
        .await?
            == 1)
    }
}
