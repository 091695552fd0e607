#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `stele serve` brings the log's exports index (`<db>.exports`) up to date
//! when it starts, so that sessions started on a large log it has not seen
//! do not each scan all of it in their workspace check (issue 18 figures:
//! ~7 s per session start at 1,000,000 entries before).

mod e2e_common;
mod server_support;

use server_support::Server;
use stele_tests::siem::wait_for;

#[test]
fn the_server_refreshes_the_exports_index_at_start() {
    let mut srv = Server::prepare("", "");
    // A log of 2,000 entries written before the server starts, no index beside it.
    let db = srv.s.state.join("audit.db");
    for f in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{f}", db.display()));
    }
    let signer = stele_runtime::cli::state::file_key(&srv.s.state.join("keys/log.key")).unwrap();
    stele_audit::bench::prefill(&db, 2000, signer).unwrap();
    let index = srv.s.state.join("audit.db.exports");
    assert!(!index.exists(), "an index before the server started");
    srv.spawn();
    assert!(
        wait_for(30, || index.exists()),
        "no exports index after start: {}",
        srv.stderr()
    );
    let idx: serde_json::Value = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    // It covers the log as the server found it.
    assert!(idx["scanned"].as_u64().unwrap() >= 2000, "{idx}");
    srv.stop();
    srv.verify();
}
