//! [`KeptBundles`] on PostgreSQL.

use async_trait::async_trait;

use super::PgStore;
use crate::error::ServerError;
use crate::store::kept_bundles::KeptBundles;

#[async_trait]
impl KeptBundles for PgStore {
    async fn keep_bundle(
        &self,
        digest: &str,
        session: &str,
        origin: &str,
        last: i64,
        bytes: &[u8],
        now: i64,
    ) -> Result<(), ServerError> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO kept_bundles (digest, session, origin, last, bytes, created) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (digest) DO NOTHING",
            &[&digest, &session, &origin, &last, &bytes, &now],
        )
        .await?;
        Ok(())
    }

    async fn kept_bundle(&self, digest: &str) -> Result<Option<Vec<u8>>, ServerError> {
        let c = self.client().await?;
        Ok(c.query_opt(
            "SELECT bytes FROM kept_bundles WHERE digest = $1",
            &[&digest],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?)
    }

    async fn continued_from(
        &self,
        session: &str,
        origin: &str,
    ) -> Result<Option<i64>, ServerError> {
        let c = self.client().await?;
        Ok(c.query_one(
            "SELECT min(last) FROM kept_bundles WHERE session = $1 AND origin = $2",
            &[&session, &origin],
        )
        .await?
        .try_get(0)?)
    }
}
