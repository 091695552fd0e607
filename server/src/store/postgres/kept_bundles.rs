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
        bytes: &[u8],
        now: i64,
    ) -> Result<(), ServerError> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO kept_bundles (digest, session, origin, bytes, created) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (digest) DO NOTHING",
            &[&digest, &session, &origin, &bytes, &now],
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
}
