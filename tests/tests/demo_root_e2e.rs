#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The demo's scripted model starts as real models do: by listing the workspace root with
//! `file_list {"path": "."}`. The listing must succeed (its result names `receipts`), be
//! decided on the root as `"."` (the finance template allows listing `"."`), and be logged.
//! (Needs the workspace root to be a first-class resource in the tools and the mediated
//! layer: issue 13, item 1.)

use stele_tests::{intents_closed_once, sandbox_available, Stele};

#[test]
fn the_demo_starts_by_listing_the_workspace_root() {
    if !sandbox_available("the_demo_starts_by_listing_the_workspace_root") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let s = Stele::new(&d.path().join("state"));
    let o = s
        .run(&["demo", "--dir", d.path().join("demo").to_str().unwrap()])
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "{}\n{err}",
        String::from_utf8_lossy(&o.stdout)
    );
    let (db, key) = (
        d.path().join("demo/state/audit.db"),
        d.path().join("demo/state/log.key"),
    );
    let o = s
        .run(&[
            "audit",
            "tail",
            "-n",
            "100000",
            "--json",
            "--db",
            db.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])
        .unwrap();
    let leaves: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = leaves.iter().find(|l| l["kind"] == "tool.intent").unwrap();
    assert_eq!(first["target"]["tool"], "file_list", "{first}");
    let result = leaves
        .iter()
        .find(|l| l["kind"] == "tool.result" && l["refs"]["intent_seq"] == first["seq"])
        .unwrap();
    assert_eq!(result["outcome"]["status"], "ok", "{result}");
    // The listing of the root was decided as ".", allowed, and names its call.
    let root = leaves
        .iter()
        .find(|l| l["target"]["path"] == "." && l["data"]["tool_call"] == first["seq"])
        .unwrap_or_else(|| panic!("no decision on \".\" for the first call"));
    assert_eq!(root["decision"]["effect"], "allow", "{root}");
    let id = first["session"]["id"].as_str().unwrap();
    intents_closed_once(&leaves, id).unwrap();
}
