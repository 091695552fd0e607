//! [`KeptBundles`] on SQLite.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension as _};

use super::SqliteStore;
use crate::error::ServerError;
use crate::store::kept_bundles::KeptBundles;

#[async_trait]
impl KeptBundles for SqliteStore {
    async fn keep_bundle(
        &self,
        digest: &str,
        session: &str,
        origin: &str,
        last: i64,
        bytes: &[u8],
        now: i64,
    ) -> Result<(), ServerError> {
        let (digest, session, origin, bytes) = (
            digest.to_string(),
            session.to_string(),
            origin.to_string(),
            bytes.to_vec(),
        );
        self.call(move |c| {
            c.execute(
                "INSERT INTO kept_bundles (digest, session, origin, last, bytes, created) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (digest) DO NOTHING",
                params![digest, session, origin, last, bytes, now],
            )
            .map(|_| ())
        })
        .await
    }

    async fn kept_bundle(&self, digest: &str) -> Result<Option<Vec<u8>>, ServerError> {
        let digest = digest.to_string();
        self.call(move |c| {
            c.query_row(
                "SELECT bytes FROM kept_bundles WHERE digest = ?1",
                params![digest],
                |r| r.get(0),
            )
            .optional()
        })
        .await
    }

    async fn continued_from(
        &self,
        session: &str,
        origin: &str,
    ) -> Result<Option<i64>, ServerError> {
        let (session, origin) = (session.to_string(), origin.to_string());
        self.call(move |c| {
            c.query_row(
                "SELECT min(last) FROM kept_bundles WHERE session = ?1 AND origin = ?2",
                params![session, origin],
                |r| r.get(0),
            )
        })
        .await
    }
}
