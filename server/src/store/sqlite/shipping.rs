//! [`ShippingStore`] on SQLite: the `shipped_logs` and `shipped_entries` tables.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension as _, Row};

use super::SqliteStore;
use crate::error::ServerError;
use crate::store::shipping::{
    search_sql, Appended, ShippedEntry, ShippedLog, ShippedQuery, ShippingStore, LOG_COLUMNS,
    SEARCH_COLUMNS,
};

fn log_row(r: &Row<'_>) -> rusqlite::Result<ShippedLog> {
    let boot: Option<String> = r.get(8)?;
    let ts: Option<String> = r.get(9)?;
    Ok(ShippedLog {
        origin: r.get(0)?,
        verifier: r.get(1)?,
        account: r.get(2)?,
        worker: r.get(3)?,
        size: r.get(4)?,
        root: r.get(5)?,
        frontier: r.get(6)?,
        last_hash: r.get(7)?,
        last_time: boot.zip(ts),
        checkpoint: r.get(10)?,
        updated: r.get(11)?,
        revoked_at: r.get(12)?,
    })
}

fn entry_row(r: &Row<'_>) -> rusqlite::Result<ShippedEntry> {
    Ok(ShippedEntry {
        seq: r.get(0)?,
        leaf: r.get(1)?,
        ts: r.get(2)?,
        session: r.get(3)?,
        principal: r.get(4)?,
        teams: r.get(5)?,
        kind: r.get(6)?,
        effect: r.get(7)?,
        path: r.get(8)?,
    })
}

#[async_trait]
impl ShippingStore for SqliteStore {
    async fn shipped_log(&self, origin: &str) -> Result<Option<ShippedLog>, ServerError> {
        let origin = origin.to_string();
        self.call(move |c| {
            c.query_row(
                &format!("SELECT {LOG_COLUMNS} FROM shipped_logs WHERE origin = ?1"),
                params![origin],
                log_row,
            )
            .optional()
        })
        .await
    }

    async fn append_shipped(
        &self,
        from: i64,
        to: &ShippedLog,
        entries: &[ShippedEntry],
    ) -> Result<Appended, ServerError> {
        let (to, entries) = (to.clone(), entries.to_vec());
        self.call(move |c| {
            let tx = c.unchecked_transaction()?;
            let held: Option<(i64, Option<i64>)> = tx
                .query_row(
                    "SELECT size, revoked_at FROM shipped_logs WHERE origin = ?1",
                    params![to.origin],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            match held {
                Some((_, Some(_))) => return Ok(Appended::Revoked),
                Some((size, None)) if size != from => return Ok(Appended::Moved(size)),
                None if from != 0 => return Ok(Appended::Moved(0)),
                _ => {}
            }
            let (boot, ts) = to.last_time.clone().unzip();
            tx.execute(
                &format!(
                    "INSERT INTO shipped_logs ({LOG_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, NULL) \
                     ON CONFLICT(origin) DO UPDATE SET size = excluded.size, verifier = excluded.verifier, \
                       root = excluded.root, frontier = excluded.frontier, \
                       last_hash = excluded.last_hash, last_boot = excluded.last_boot, \
                       last_ts = excluded.last_ts, checkpoint = excluded.checkpoint, \
                       updated = excluded.updated"
                ),
                params![
                    to.origin,
                    to.verifier,
                    to.account,
                    to.worker,
                    to.size,
                    to.root,
                    to.frontier,
                    to.last_hash,
                    boot,
                    ts,
                    to.checkpoint,
                    to.updated
                ],
            )?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO shipped_entries \
                     (origin, seq, leaf, ts, session, principal, teams, kind, effect, path) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?;
                for e in &entries {
                    st.execute(params![
                        to.origin,
                        e.seq,
                        e.leaf,
                        e.ts,
                        e.session,
                        e.principal,
                        e.teams,
                        e.kind,
                        e.effect,
                        e.path
                    ])?;
                }
            }
            tx.commit()?;
            Ok(Appended::Yes)
        })
        .await
    }

    async fn shipped_entries(
        &self,
        origin: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<ShippedEntry>, ServerError> {
        let origin = origin.to_string();
        self.call(move |c| {
            let mut st = c.prepare(
                "SELECT seq, leaf, ts, session, principal, teams, kind, effect, path \
                 FROM shipped_entries WHERE origin = ?1 AND seq >= ?2 AND seq < ?3 ORDER BY seq",
            )?;
            let rows = st.query_map(params![origin, from, to], entry_row)?;
            rows.collect()
        })
        .await
    }

    async fn revoke_shipped(&self, log: &ShippedLog, now: i64) -> Result<bool, ServerError> {
        let l = log.clone();
        self.call(move |c| {
            let tx = c.unchecked_transaction()?;
            let n = tx.execute(
                "UPDATE shipped_logs SET revoked_at = ?2, updated = ?2 \
                 WHERE origin = ?1 AND revoked_at IS NULL",
                params![l.origin, now],
            )?;
            let made = if n == 0 {
                tx.execute(
                    &format!(
                        "INSERT INTO shipped_logs ({LOG_COLUMNS}) \
                         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, NULL, NULL, NULL, '', ?7, ?7) \
                         ON CONFLICT(origin) DO NOTHING"
                    ),
                    params![l.origin, l.verifier, l.account, l.worker, l.root, l.frontier, now],
                )?
            } else {
                n
            };
            tx.commit()?;
            Ok(made == 1)
        })
        .await
    }

    async fn search_shipped(
        &self,
        q: &ShippedQuery,
    ) -> Result<Vec<(String, ShippedEntry)>, ServerError> {
        let (tail, args) = search_sql(q, |i| format!("?{i}"));
        self.call(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT {SEARCH_COLUMNS} FROM shipped_entries {tail}"
            ))?;
            let rows = st.query_map(rusqlite::params_from_iter(args.iter()), |r| {
                Ok((
                    r.get(0)?,
                    ShippedEntry {
                        seq: r.get(1)?,
                        leaf: r.get(2)?,
                        ts: r.get(3)?,
                        session: r.get(4)?,
                        principal: r.get(5)?,
                        teams: r.get(6)?,
                        kind: r.get(7)?,
                        effect: r.get(8)?,
                        path: r.get(9)?,
                    },
                ))
            })?;
            rows.collect()
        })
        .await
    }
}
