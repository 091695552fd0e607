//! The two engines a contract case runs on: SQLite in a temporary folder,
//! and PostgreSQL in a temporary cluster (`stele_tests::postgres`), each
//! opened as the server opens it and with its schema migrated.

use std::future::Future;
use std::sync::Arc;

use stele_server::store::postgres::PgStore;
use stele_server::store::sqlite::SqliteStore;
use stele_server::store::Store;
use stele_tests::postgres::TempCluster;

/// Which store a case runs on.
#[derive(Debug, Clone, Copy)]
pub enum Engine {
    /// `server.db` in a temporary folder.
    Sqlite,
    /// A database in a temporary PostgreSQL cluster.
    Postgres,
}

/// What keeps a store's backing alive for the length of a case.
pub enum Backing {
    /// The SQLite file's folder.
    Dir(#[allow(dead_code)] tempfile::TempDir),
    /// The running cluster (stopped on drop).
    Cluster(#[allow(dead_code)] TempCluster),
}

/// A fresh, migrated store on `engine`; None when PostgreSQL is not
/// installed (a loud SKIPPED line was printed).
pub async fn fresh(engine: Engine) -> Option<(Arc<dyn Store>, Backing)> {
    match engine {
        Engine::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let s = SqliteStore::open(&dir.path().join("server.db")).unwrap();
            Some((Arc::new(s), Backing::Dir(dir)))
        }
        Engine::Postgres => {
            let cluster = TempCluster::start().unwrap()?;
            let url = cluster.create_db("stele").unwrap();
            let s = PgStore::connect(&url).await.unwrap();
            s.migrate().await.unwrap();
            // As `stele serve` opens it: the schema is current now.
            let s = PgStore::open(&url).await.unwrap();
            Some((Arc::new(s), Backing::Cluster(cluster)))
        }
    }
}

/// Run `case` on a fresh store on `engine`.
pub async fn run<F, Fut>(engine: Engine, case: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some((store, backing)) = fresh(engine).await else {
        return;
    };
    case(store).await;
    drop(backing);
}
