//! [`JobStore`] on PostgreSQL. A claim locks the oldest claimable job with
//! `FOR UPDATE SKIP LOCKED` and takes it in the same statement: claimers on
//! several servers pass over each other's rows instead of waiting, and
//! never take the same job.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::PgStore;
use crate::error::ServerError;
use crate::store::jobs::{ClaimedJob, JobRecord, JobState, JobStore, Lease};

fn payload(text: &str) -> Result<serde_json::Value, ServerError> {
    serde_json::from_str(text).map_err(|e| ServerError::Postgres(format!("job payload: {e}")))
}

fn job_row(r: &Row) -> Result<JobRecord, ServerError> {
    let body: String = r.try_get(2)?;
    let state: String = r.try_get(3)?;
    Ok(JobRecord {
        id: r.try_get(0)?,
        kind: r.try_get(1)?,
        payload: payload(&body)?,
        state: JobState::parse(&state),
        worker: r.try_get(4)?,
        attempts: r.try_get(5)?,
        lease_until: r.try_get(6)?,
        error: r.try_get(7)?,
    })
}

#[async_trait]
impl JobStore for PgStore {
    async fn enqueue(
        &self,
        kind: &str,
        payload: &serde_json::Value,
        now: i64,
    ) -> Result<i64, ServerError> {
        let c = self.client().await?;
        Ok(c.query_one(
            "INSERT INTO jobs (kind, payload, state, created, updated) \
             VALUES ($1, $2, 'queued', $3, $3) RETURNING id",
            &[&kind, &payload.to_string(), &now],
        )
        .await?
        .try_get(0)?)
    }

    async fn claim(
        &self,
        worker: &str,
        lease_secs: i64,
        now: i64,
    ) -> Result<Option<ClaimedJob>, ServerError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "UPDATE jobs SET state = 'running', worker = $1, attempts = attempts + 1, \
                 lease_until = $2::BIGINT + $3::BIGINT, updated = $2 \
                 WHERE id = (SELECT id FROM jobs WHERE state = 'queued' \
                   OR (state = 'running' AND lease_until <= $2) \
                   ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) \
                 RETURNING id, kind, payload, attempts, lease_until",
            )
            .await?;
        let Some(r) = c.query_opt(&st, &[&worker, &now, &lease_secs]).await? else {
            return Ok(None);
        };
        let body: String = r.try_get(2)?;
        Ok(Some(ClaimedJob {
            lease: Lease {
                job: r.try_get(0)?,
                worker: worker.to_string(),
                attempt: r.try_get(3)?,
            },
            kind: r.try_get(1)?,
            payload: payload(&body)?,
            lease_until: r.try_get(4)?,
        }))
    }

    async fn heartbeat(
        &self,
        lease: &Lease,
        lease_secs: i64,
        now: i64,
    ) -> Result<Option<i64>, ServerError> {
        let c = self.client().await?;
        Ok(c.query_opt(
            "UPDATE jobs SET lease_until = $4::BIGINT + $5::BIGINT, updated = $4 \
             WHERE id = $1 AND worker = $2 AND attempts = $3 AND state = 'running' \
             RETURNING lease_until",
            &[&lease.job, &lease.worker, &lease.attempt, &now, &lease_secs],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?)
    }

    async fn complete(&self, lease: &Lease, now: i64) -> Result<bool, ServerError> {
        self.finish(lease, JobState::Done, None, now).await
    }

    async fn fail(&self, lease: &Lease, error: &str, now: i64) -> Result<bool, ServerError> {
        self.finish(lease, JobState::Failed, Some(error), now).await
    }

    async fn job(&self, id: i64) -> Result<Option<JobRecord>, ServerError> {
        let c = self.client().await?;
        c.query_opt(
            "SELECT id, kind, payload, state, worker, attempts, lease_until, error \
             FROM jobs WHERE id = $1",
            &[&id],
        )
        .await?
        .map(|r| job_row(&r))
        .transpose()
    }
}

impl PgStore {
    /// End the job `lease` holds as `state`, if the lease is still its claim.
    async fn finish(
        &self,
        lease: &Lease,
        state: JobState,
        error: Option<&str>,
        now: i64,
    ) -> Result<bool, ServerError> {
        let c = self.client().await?;
        Ok(c.execute(
            "UPDATE jobs SET state = $4, error = $5, lease_until = NULL, updated = $6 \
             WHERE id = $1 AND worker = $2 AND attempts = $3 AND state = 'running'",
            &[
                &lease.job,
                &lease.worker,
                &lease.attempt,
                &state.as_str(),
                &error,
                &now,
            ],
        )
        .await?
            == 1)
    }
}
