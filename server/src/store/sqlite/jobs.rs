//! [`JobStore`] on SQLite: the `jobs` table. A claim is one `UPDATE … WHERE
//! id = (SELECT …) RETURNING` statement: SQLite runs it under its write
//! lock, so two claimers (threads, or processes sharing the file) never
//! take the same job.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension as _};

use super::SqliteStore;
use crate::error::ServerError;
use crate::store::jobs::{ClaimedJob, JobRecord, JobState, JobStore, Lease};

fn payload(text: &str) -> rusqlite::Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn enqueue(
        &self,
        kind: &str,
        payload: &serde_json::Value,
        now: i64,
    ) -> Result<i64, ServerError> {
        let (kind, body) = (kind.to_string(), payload.to_string());
        self.call(move |c| {
            c.query_row(
                "INSERT INTO jobs (kind, payload, state, created, updated) \
                 VALUES (?1, ?2, 'queued', ?3, ?3) RETURNING id",
                params![kind, body, now],
                |r| r.get(0),
            )
        })
        .await
    }

    async fn claim(
        &self,
        worker: &str,
        lease_secs: i64,
        now: i64,
    ) -> Result<Option<ClaimedJob>, ServerError> {
        let worker = worker.to_string();
        self.call(move |c| {
            let row = c
                .query_row(
                    "UPDATE jobs SET state = 'running', worker = ?1, attempts = attempts + 1, \
                     lease_until = ?2 + ?3, updated = ?2 \
                     WHERE id = (SELECT id FROM jobs WHERE state = 'queued' \
                       OR (state = 'running' AND lease_until <= ?2) ORDER BY id LIMIT 1) \
                     RETURNING id, kind, payload, attempts, lease_until",
                    params![worker, now, lease_secs],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, i64>(4)?,
                        ))
                    },
                )
                .optional()?;
            row.map(|(job, kind, body, attempt, lease_until)| {
                Ok(ClaimedJob {
                    lease: Lease {
                        job,
                        worker: worker.clone(),
                        attempt,
                    },
                    kind,
                    payload: payload(&body)?,
                    lease_until,
                })
            })
            .transpose()
        })
        .await
    }

    async fn heartbeat(
        &self,
        lease: &Lease,
        lease_secs: i64,
        now: i64,
    ) -> Result<Option<i64>, ServerError> {
        let l = lease.clone();
        self.call(move |c| {
            c.query_row(
                "UPDATE jobs SET lease_until = ?4 + ?5, updated = ?4 \
                 WHERE id = ?1 AND worker = ?2 AND attempts = ?3 AND state = 'running' \
                 RETURNING lease_until",
                params![l.job, l.worker, l.attempt, now, lease_secs],
                |r| r.get(0),
            )
            .optional()
        })
        .await
    }

    async fn complete(&self, lease: &Lease, now: i64) -> Result<bool, ServerError> {
        self.finish(lease, JobState::Done, None, now).await
    }

    async fn fail(&self, lease: &Lease, error: &str, now: i64) -> Result<bool, ServerError> {
        self.finish(lease, JobState::Failed, Some(error.to_string()), now)
            .await
    }

    async fn job(&self, id: i64) -> Result<Option<JobRecord>, ServerError> {
        self.call(move |c| {
            c.query_row(
                "SELECT id, kind, payload, state, worker, attempts, lease_until, error \
                 FROM jobs WHERE id = ?1",
                params![id],
                |r| {
                    let body: String = r.get(2)?;
                    let state: String = r.get(3)?;
                    Ok(JobRecord {
                        id: r.get(0)?,
                        kind: r.get(1)?,
                        payload: payload(&body)?,
                        state: JobState::parse(&state),
                        worker: r.get(4)?,
                        attempts: r.get(5)?,
                        lease_until: r.get(6)?,
                        error: r.get(7)?,
                    })
                },
            )
            .optional()
        })
        .await
    }
}

impl SqliteStore {
    /// End the job `lease` holds as `state`, if the lease is still its claim.
    async fn finish(
        &self,
        lease: &Lease,
        state: JobState,
        error: Option<String>,
        now: i64,
    ) -> Result<bool, ServerError> {
        let l = lease.clone();
        self.call(move |c| {
            c.execute(
                "UPDATE jobs SET state = ?4, error = ?5, lease_until = NULL, updated = ?6 \
                 WHERE id = ?1 AND worker = ?2 AND attempts = ?3 AND state = 'running'",
                params![l.job, l.worker, l.attempt, state.as_str(), error, now],
            )
            .map(|n| n == 1)
        })
        .await
    }
}
