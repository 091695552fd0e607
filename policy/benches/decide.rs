#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Criterion benchmarks: one decision against a 1,000-policy, three-layer
//! bundle, and loading that bundle. Run with
//! `cargo bench -p stele-policy --bench decide`.

use criterion::{criterion_group, Criterion};
use stele_policy::{synthetic, Bundle};

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    synthetic::write_bundle(dir.path(), 1000).unwrap();
    let bundle = Bundle::load(dir.path()).unwrap();
    assert!(bundle.policy_count() >= 1000);
    let reqs = synthetic::requests(4096, 42).unwrap();
    let mut i = 0usize;
    c.bench_function("decide/1000-policies", |b| {
        b.iter(|| {
            i = (i + 1) % reqs.len();
            std::hint::black_box(bundle.decide(&reqs[i]))
        })
    });
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.bench_function("load/1000-policies", |b| {
        b.iter(|| std::hint::black_box(Bundle::load(dir.path()).unwrap()))
    });
    group.finish();
}

criterion_group!(decide, benches);

/// For comparison: the same decisions when Cedar evaluates every policy of
/// the action's slots (no guards, no shortcuts).
fn reference_figures() {
    let dir = tempfile::tempdir().unwrap();
    synthetic::write_bundle(dir.path(), 1000).unwrap();
    let bundle = Bundle::load(dir.path()).unwrap();
    let reqs = synthetic::requests(10_000, 42).unwrap();
    let mut times: Vec<std::time::Duration> = reqs
        .iter()
        .map(|r| {
            let t = std::time::Instant::now();
            std::hint::black_box(bundle.decide_reference(r));
            t.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "stele-policy: reference (all policies of the action through Cedar): p50 {:.2} us, p99 {:.2} us",
        times[times.len() / 2].as_secs_f64() * 1e6,
        times[times.len() * 99 / 100].as_secs_f64() * 1e6
    );
}

fn main() {
    // The figures issue 3 asks for (p50, p99, load) first, from individually
    // timed decisions; then criterion's statistics.
    let r = synthetic::run_in_temp_dir(1000, 100_000).unwrap();
    println!(
        "stele-policy: {} policies: load {:.1} ms (median {:.1} ms), decision p50 {:.2} us, \
         p99 {:.2} us, max {:.2} us ({} allow / {} deny / {} ask)",
        r.policies,
        r.load.as_secs_f64() * 1e3,
        r.load_median.as_secs_f64() * 1e3,
        r.p50.as_secs_f64() * 1e6,
        r.p99.as_secs_f64() * 1e6,
        r.max.as_secs_f64() * 1e6,
        r.effects[0],
        r.effects[1],
        r.effects[2]
    );
    reference_figures();
    decide();
    Criterion::default().configure_from_args().final_summary();
}
