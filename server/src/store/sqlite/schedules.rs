//! Schedules (table `schedules`, the spec as JSON) and their runs
//! (`schedule_runs`) in SQLite.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension as _, Row};
use stele_protocol::RunOutcome;

use super::SqliteStore;
use crate::error::ServerError;
use crate::store::schedules::{Paused, RunRecord, ScheduleRecord, ScheduleStore};

pub(in crate::store) fn outcome_name(o: RunOutcome) -> &'static str {
    match o {
        RunOutcome::Started => "started",
        RunOutcome::Missed => "missed",
        RunOutcome::SkippedBusy => "skipped_busy",
        RunOutcome::Refused => "refused",
        RunOutcome::Failed => "failed",
    }
}

pub(in crate::store) fn outcome(s: &str) -> RunOutcome {
    match s {
        "started" => RunOutcome::Started,
        "missed" => RunOutcome::Missed,
        "skipped_busy" => RunOutcome::SkippedBusy,
        "refused" => RunOutcome::Refused,
        // Anything unknown is shown as a failure, never as started.
        _ => RunOutcome::Failed,
    }
}

fn bad_spec(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

fn schedule_row(r: &Row<'_>) -> rusqlite::Result<ScheduleRecord> {
    let spec: String = r.get(2)?;
    Ok(ScheduleRecord {
        id: r.get(0)?,
        owner: r.get(1)?,
        spec: serde_json::from_str(&spec).map_err(bad_spec)?,
        created: r.get(3)?,
        next_run: r.get(4)?,
        paused: match (r.get::<_, Option<i64>>(5)?, r.get::<_, Option<String>>(6)?) {
            (Some(at), by) => Some(Paused {
                by: by.unwrap_or_default(),
                at,
            }),
            (None, _) => None,
        },
    })
}

fn run_row(r: &Row<'_>) -> rusqlite::Result<RunRecord> {
    let o: String = r.get(3)?;
    let entry: Option<i64> = r.get(6)?;
    Ok(RunRecord {
        schedule: r.get(0)?,
        due: r.get(1)?,
        at: r.get(2)?,
        outcome: outcome(&o),
        session: r.get(4)?,
        detail: r.get(5)?,
        audit_entry: entry.and_then(|e| u64::try_from(e).ok()),
    })
}

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn add_schedule(&self, s: ScheduleRecord) -> Result<(), ServerError> {
        let spec = serde_json::to_string(&s.spec).map_err(|e| ServerError::Task(e.to_string()))?;
        self.call(move |c| {
            c.execute(
                "INSERT INTO schedules (id, owner, workspace, spec, created, next_run) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![s.id, s.owner, s.spec.workspace, spec, s.created, s.next_run],
            )
            .map(|_| ())
        })
        .await
    }

    async fn schedule(&self, id: &str) -> Result<Option<ScheduleRecord>, ServerError> {
        let id = id.to_string();
        self.call(move |c| {
            c.query_row(
                "SELECT id, owner, spec, created, next_run, paused_at, paused_by FROM schedules \
                 WHERE id = ?1",
                params![id],
                schedule_row,
            )
            .optional()
        })
        .await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, ServerError> {
        self.call(|c| {
            let mut st = c.prepare(
                "SELECT id, owner, spec, created, next_run, paused_at, paused_by FROM schedules \
                 ORDER BY created, id",
            )?;
            let rows = st.query_map([], schedule_row)?;
            rows.collect()
        })
        .await
    }

    async fn delete_schedule(&self, id: &str) -> Result<bool, ServerError> {
        let id = id.to_string();
        self.call(move |c| {
            c.execute("DELETE FROM schedules WHERE id = ?1", params![id])
                .map(|n| n == 1)
        })
        .await
    }

    async fn set_next_run(&self, id: &str, next: Option<i64>) -> Result<bool, ServerError> {
        let id = id.to_string();
        self.call(move |c| {
            c.execute(
                "UPDATE schedules SET next_run = ?2 WHERE id = ?1 AND paused_at IS NULL",
                params![id, next],
            )
            .map(|n| n == 1)
        })
        .await
    }

    async fn set_paused(
        &self,
        id: &str,
        paused: Option<Paused>,
        next: Option<i64>,
    ) -> Result<bool, ServerError> {
        let id = id.to_string();
        let (at, by) = match paused {
            Some(p) => (Some(p.at), Some(p.by)),
            None => (None, None),
        };
        self.call(move |c| {
            c.execute(
                "UPDATE schedules SET paused_at = ?2, paused_by = ?3, next_run = ?4 WHERE id = ?1",
                params![id, at, by, if at.is_some() { None } else { next }],
            )
            .map(|n| n == 1)
        })
        .await
    }

    async fn add_run(&self, r: RunRecord) -> Result<(), ServerError> {
        let entry = r.audit_entry.and_then(|e| i64::try_from(e).ok());
        self.call(move |c| {
            c.execute(
                "INSERT INTO schedule_runs (schedule, due, at, outcome, session, detail, \
                 audit_entry) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    r.schedule,
                    r.due,
                    r.at,
                    outcome_name(r.outcome),
                    r.session,
                    r.detail,
                    entry
                ],
            )
            .map(|_| ())
        })
        .await
    }

    async fn runs(&self, schedule: &str) -> Result<Vec<RunRecord>, ServerError> {
        let s = schedule.to_string();
        self.call(move |c| {
            let mut st = c.prepare(
                "SELECT schedule, due, at, outcome, session, detail, audit_entry \
                 FROM schedule_runs WHERE schedule = ?1 ORDER BY id",
            )?;
            let rows = st.query_map(params![s], run_row)?;
            rows.collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::{Role, Store as _, User};
    use stele_protocol::{CatchUp, NewSchedule, UnattendedApprove};

    fn schedule(id: &str) -> ScheduleRecord {
        ScheduleRecord {
            id: id.into(),
            owner: "alice".into(),
            spec: NewSchedule {
                cron: "* * * * *".into(),
                timezone: Some("UTC".into()),
                workspace: "books".into(),
                task: "t".into(),
                model: None,
                max_steps: None,
                approve: UnattendedApprove::Queue,
                catch_up: CatchUp::Skip,
            },
            created: 1,
            next_run: Some(100),
            paused: None,
        }
    }

    /// A paused schedule keeps who paused it, has no next run, and the
    /// scheduler cannot move it on (so a tick that read it before the pause
    /// does not run it); unpausing sets its next run again.
    #[tokio::test]
    async fn a_paused_schedule_has_no_next_run_and_the_scheduler_cannot_move_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("server.db")).unwrap();
        s.add_schedule(schedule("a")).await.unwrap();
        s.add_schedule(schedule("b")).await.unwrap();
        let p = Paused {
            by: "bob".into(),
            at: 50,
        };
        // A next run given with a pause is not kept.
        assert!(s.set_paused("a", Some(p.clone()), Some(7)).await.unwrap());
        let a = s.schedule("a").await.unwrap().unwrap();
        assert_eq!((a.paused, a.next_run), (Some(p), None));
        assert!(!s.set_next_run("a", Some(200)).await.unwrap());
        assert_eq!(s.schedule("a").await.unwrap().unwrap().next_run, None);
        // The other schedule is untouched and still moves on.
        assert!(s.set_next_run("b", Some(200)).await.unwrap());
        let b = s.schedule("b").await.unwrap().unwrap();
        assert_eq!((b.paused, b.next_run), (None, Some(200)));
        assert!(s.set_paused("a", None, Some(300)).await.unwrap());
        let a = s.schedule("a").await.unwrap().unwrap();
        assert_eq!((a.paused, a.next_run), (None, Some(300)));
        assert!(s.set_next_run("a", Some(400)).await.unwrap());
        assert!(!s.set_paused("nope", None, None).await.unwrap());
        assert_eq!(s.schedules().await.unwrap().len(), 2);
    }

    /// The admin list holds only accounts whose creation is recorded.
    #[tokio::test]
    async fn users_lists_recorded_accounts_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("server.db")).unwrap();
        for (name, pw) in [("zoe", None), ("adam", Some("h".to_string()))] {
            let u = User {
                name: name.into(),
                teams: vec!["finance".into()],
                role: Role::Member,
                password_hash: pw,
            };
            assert!(s.add_user(u, None, None).await.unwrap());
        }
        let pending = crate::store::AdminChange {
            by: "root".into(),
            action: crate::store::AdminAction::AccountAdd,
            subject: "eve".into(),
            detail: serde_json::json!({}),
            at: 1,
        };
        let eve = User {
            name: "eve".into(),
            teams: vec!["ops".into()],
            role: Role::Admin,
            password_hash: None,
        };
        assert!(s.add_user(eve, None, Some(pending)).await.unwrap());
        let names: Vec<(String, bool)> = s
            .users()
            .await
            .unwrap()
            .into_iter()
            .map(|u| (u.name, u.password_hash.is_some()))
            .collect();
        assert_eq!(names, [("adam".into(), true), ("zoe".into(), false)]);
    }
}
