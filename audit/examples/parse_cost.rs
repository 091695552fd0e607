#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Per-entry cost of each verification step on an existing log:
//! `cargo run --release -p stele-audit --example parse_cost -- PATH/TO/audit.db`.
use std::time::Instant;
fn main() {
    let db = std::env::args().nth(1).unwrap();
    let store = stele_audit::Store::open(std::path::Path::new(&db)).unwrap();
    let mut leaves = Vec::new();
    store
        .for_each_entry(0, u64::MAX, |_, b, _| {
            leaves.push(b.to_vec());
            Ok(())
        })
        .unwrap();
    let n = leaves.len() as f64;
    let t = Instant::now();
    for l in &leaves {
        stele_audit::canonical::check(l).unwrap();
    }
    println!(
        "canonical check: {:.2} us",
        t.elapsed().as_secs_f64() * 1e6 / n
    );
    let t = Instant::now();
    for l in &leaves {
        let _: serde::de::IgnoredAny = serde_json::from_slice(l).unwrap();
    }
    println!(
        "serde skip-all:  {:.2} us",
        t.elapsed().as_secs_f64() * 1e6 / n
    );
    let t = Instant::now();
    for l in &leaves {
        let _: stele_audit::leaf::Leaf = serde_json::from_slice(l).unwrap();
    }
    println!(
        "typed Leaf:      {:.2} us",
        t.elapsed().as_secs_f64() * 1e6 / n
    );
    let t = Instant::now();
    for l in &leaves {
        let _ = stele_audit::merkle::leaf_hash(l);
    }
    println!(
        "leaf hash:       {:.2} us",
        t.elapsed().as_secs_f64() * 1e6 / n
    );
    let t = Instant::now();
    let mut c = 0u64;
    store
        .for_each_entry(0, u64::MAX, |_, b, _| {
            c += b.len() as u64;
            Ok(())
        })
        .unwrap();
    println!(
        "sqlite read:     {:.2} us ({c})",
        t.elapsed().as_secs_f64() * 1e6 / n
    );
}
