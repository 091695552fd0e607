#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The PostgreSQL store's schema and its opening, on a temporary cluster:
//! a database behind the binary is refused until `--migrate` (which several
//! servers may run at once), one ahead of it is refused on both paths, and
//! a server that cannot be reached is an error naming the configuration
//! file and `store.url`, never the password.

use stele_server::config::ServerConfig;
use stele_server::store::open::{migrate, open};
use stele_server::store::postgres::migrations::known;
use stele_tests::postgres::TempCluster;

/// A configuration file naming `url` as the store.
fn config(dir: &std::path::Path, url: &str) -> ServerConfig {
    let p = dir.join("server.toml");
    std::fs::write(
        &p,
        format!(
            "[server]\ndb = \"{}\"\n[store]\nurl = \"{url}\"\n",
            dir.join("audit.db").display()
        ),
    )
    .unwrap();
    ServerConfig::load(&p).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn behind_is_refused_until_migrated_and_ahead_is_refused() {
    let Some(cluster) = TempCluster::start().unwrap() else {
        return;
    };
    let url = cluster.create_db("stele").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &url);
    let e = open(&cfg).await.unwrap_err().to_string();
    assert!(
        e.contains("schema version 0") && e.contains("stele serve --migrate"),
        "{e}"
    );
    // Three servers migrating at once: each migration is applied once.
    let mut runs = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let cfg = cfg.clone();
        runs.spawn(async move { migrate(&cfg).await });
    }
    let mut froms = Vec::new();
    while let Some(r) = runs.join_next().await {
        let m = r.unwrap().unwrap();
        assert_eq!(m.to, known());
        froms.push(m.from);
    }
    assert!(froms.contains(&0), "{froms:?}");
    let applied = cluster
        .psql(
            "stele",
            "SELECT version FROM schema_migrations ORDER BY version",
        )
        .unwrap();
    let want: Vec<String> = (1..=known()).map(|v| v.to_string()).collect();
    assert_eq!(applied.lines().collect::<Vec<_>>(), want);
    let store = open(&cfg).await.unwrap();
    assert!(store.users().await.unwrap().is_empty());
    drop(store);
    // Migrating an up-to-date store changes nothing.
    let m = migrate(&cfg).await.unwrap();
    assert_eq!((m.from, m.to), (known(), known()));
    // A newer stele migrated it: this one refuses it, to serve and to migrate.
    cluster
        .psql(
            "stele",
            &format!("INSERT INTO schema_migrations VALUES ({}, 0)", known() + 1),
        )
        .unwrap();
    for e in [
        open(&cfg).await.unwrap_err().to_string(),
        migrate(&cfg).await.unwrap_err().to_string(),
    ] {
        assert!(
            e.contains(&format!("schema version {}", known() + 1)) && e.contains("newer"),
            "{e}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_server_names_the_file_and_field_but_not_the_password() {
    let dir = tempfile::tempdir().unwrap();
    // A socket folder with no server in it.
    let host = dir.path().display().to_string().replace('/', "%2F");
    let cfg = config(
        dir.path(),
        &format!("postgres://stele:hunter2@{host}:5999/stele"),
    );
    for e in [
        open(&cfg).await.unwrap_err().to_string(),
        migrate(&cfg).await.unwrap_err().to_string(),
    ] {
        assert!(
            e.contains("server.toml") && e.contains("store.url") && e.contains("stele:***@"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }
}
