#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The benchmark's synthetic bundle is valid, large and gives a real mix of
//! outcomes (so the benchmark does not time a trivial path). No timing
//! assertions here: figures come from `stele policy bench` / `cargo bench`.

use stele_policy::{synthetic, Bundle, Effect};

#[test]
fn synthetic_bundle_loads_and_decides_a_mix() {
    let dir = tempfile::tempdir().unwrap();
    synthetic::write_bundle(dir.path(), 1000).unwrap();
    let b = Bundle::load(dir.path()).unwrap();
    assert_eq!(b.policy_count(), 1000);
    assert_eq!(b.teams().count(), synthetic::TEAMS);
    let reqs = synthetic::requests(3000, 1).unwrap();
    let mut counts = [0usize; 3];
    for r in &reqs {
        match b.decide(r).effect {
            Effect::Allow => counts[0] += 1,
            Effect::Deny => counts[1] += 1,
            Effect::Ask => counts[2] += 1,
        }
    }
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
}
