//! Schedules (table `schedules`, the spec as JSON) and their runs
//! (`schedule_runs`) on PostgreSQL. Moving a schedule on
//! ([`ScheduleStore::set_next_run`]) is refused for a paused schedule in the
//! same statement that would move it, so a tick that read the schedule
//! before a pause (on this server or another) cannot run it.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::PgStore;
use crate::error::ServerError;
use crate::store::schedules::{Paused, RunRecord, ScheduleRecord, ScheduleStore};
use crate::store::sqlite::schedules::{outcome, outcome_name};

const SCHEDULE_COLS: &str = "id, owner, spec, created, next_run, paused_at, paused_by";

fn schedule_row(r: &Row) -> Result<ScheduleRecord, ServerError> {
    let spec: String = r.try_get(2)?;
    Ok(ScheduleRecord {
        id: r.try_get(0)?,
        owner: r.try_get(1)?,
        spec: serde_json::from_str(&spec)
            .map_err(|e| ServerError::Postgres(format!("schedule spec: {e}")))?,
        created: r.try_get(3)?,
        next_run: r.try_get(4)?,
        paused: match (
            r.try_get::<_, Option<i64>>(5)?,
            r.try_get::<_, Option<String>>(6)?,
        ) {
            (Some(at), by) => Some(Paused {
                by: by.unwrap_or_default(),
                at,
            }),
            (None, _) => None,
        },
    })
}

fn run_row(r: &Row) -> Result<RunRecord, ServerError> {
    let o: String = r.try_get(3)?;
    let entry: Option<i64> = r.try_get(6)?;
    Ok(RunRecord {
        schedule: r.try_get(0)?,
        due: r.try_get(1)?,
        at: r.try_get(2)?,
        outcome: outcome(&o),
        session: r.try_get(4)?,
        detail: r.try_get(5)?,
        audit_entry: entry.and_then(|e| u64::try_from(e).ok()),
    })
}

#[async_trait]
impl ScheduleStore for PgStore {
    async fn add_schedule(&self, s: ScheduleRecord) -> Result<(), ServerError> {
        let spec = serde_json::to_string(&s.spec).map_err(|e| ServerError::Task(e.to_string()))?;
        let c = self.client().await?;
        c.execute(
            "INSERT INTO schedules (id, owner, workspace, spec, created, next_run) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &s.id,
                &s.owner,
                &s.spec.workspace,
                &spec,
                &s.created,
                &s.next_run,
            ],
        )
        .await?;
        Ok(())
    }

    async fn schedule(&self, id: &str) -> Result<Option<ScheduleRecord>, ServerError> {
        let c = self.client().await?;
        c.query_opt(
            &format!("SELECT {SCHEDULE_COLS} FROM schedules WHERE id = $1"),
            &[&id],
        )
        .await?
        .map(|r| schedule_row(&r))
        .transpose()
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, ServerError> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!("SELECT {SCHEDULE_COLS} FROM schedules ORDER BY created, id"),
                &[],
            )
            .await?;
        rows.iter().map(schedule_row).collect()
    }

    async fn delete_schedule(&self, id: &str) -> Result<bool, ServerError> {
        let c = self.client().await?;
        Ok(c.execute("DELETE FROM schedules WHERE id = $1", &[&id])
            .await?
            == 1)
    }

    async fn set_next_run(&self, id: &str, next: Option<i64>) -> Result<bool, ServerError> {
        let c = self.client().await?;
        Ok(c.execute(
            "UPDATE schedules SET next_run = $2 WHERE id = $1 AND paused_at IS NULL",
            &[&id, &next],
        )
        .await?
            == 1)
    }

    async fn set_paused(
        &self,
        id: &str,
        paused: Option<Paused>,
        next: Option<i64>,
    ) -> Result<bool, ServerError> {
        let (at, by) = match paused {
            Some(p) => (Some(p.at), Some(p.by)),
            None => (None, None),
        };
        let next = if at.is_some() { None } else { next };
        let c = self.client().await?;
        Ok(c.execute(
            "UPDATE schedules SET paused_at = $2, paused_by = $3, next_run = $4 WHERE id = $1",
            &[&id, &at, &by, &next],
        )
        .await?
            == 1)
    }

    async fn add_run(&self, r: RunRecord) -> Result<(), ServerError> {
        let entry = r.audit_entry.and_then(|e| i64::try_from(e).ok());
        let c = self.client().await?;
        c.execute(
            "INSERT INTO schedule_runs (schedule, due, at, outcome, session, detail, \
             audit_entry) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &r.schedule,
                &r.due,
                &r.at,
                &outcome_name(r.outcome),
                &r.session,
                &r.detail,
                &entry,
            ],
        )
        .await?;
        Ok(())
    }

    async fn runs(&self, schedule: &str) -> Result<Vec<RunRecord>, ServerError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT schedule, due, at, outcome, session, detail, audit_entry \
                 FROM schedule_runs WHERE schedule = $1 ORDER BY id",
                &[&schedule],
            )
            .await?;
        rows.iter().map(run_row).collect()
    }
}
