#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Per-entry cost of each verification step on an existing log:
//! `cargo run --release -p stele-audit --example parse_cost -- PATH/TO/audit.db`
//! (add `--verify-only` to run just the full verification, e.g. under perf).
use std::time::Instant;
fn main() {
    let db = std::env::args().nth(1).unwrap();
    let store = stele_audit::Store::open(std::path::Path::new(&db)).unwrap();
    if std::env::args().nth(2).as_deref() == Some("--verify-only") {
        let vkey = store.meta_required("vkey").unwrap();
        let verifier = stele_attest::NoteVerifier::parse(&vkey).unwrap();
        let r = stele_audit::verify::verify_db(std::path::Path::new(&db), &verifier, None).unwrap();
        println!(
            "{} entries in {:.3} s wall, {:.3} s CPU ({:.0} entries per CPU second)",
            r.entries,
            r.seconds,
            r.cpu_seconds,
            r.entries as f64 / r.cpu_seconds
        );
        return;
    }
    let mut leaves = Vec::new();
    store
        .for_each_entry(0, u64::MAX, |_, b, _| {
            leaves.push(b.to_vec());
            Ok(())
        })
        .unwrap();
    let n = leaves.len() as f64;
    if std::env::args().nth(2).as_deref() == Some("--hash") {
        // Leaf and node hashes: ring against the SHA-NI path, best of five.
        use stele_audit::merkle as m;
        let best = |f: &dyn Fn()| {
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64() * 1e9 / n
                })
                .fold(f64::MAX, f64::min)
        };
        let ring = best(&|| {
            for l in &leaves {
                std::hint::black_box(m::ring_leaf_hash(l));
            }
        });
        let fast = best(&|| {
            for l in &leaves {
                std::hint::black_box(m::leaf_hash(l));
            }
        });
        let pair = best(&|| {
            for p in leaves.chunks_exact(2) {
                std::hint::black_box(m::leaf_hash_pair(&p[0], &p[1]));
            }
        });
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let ring_node = best(&|| {
            for _ in 0..leaves.len() {
                std::hint::black_box(m::ring_node_hash(&a, &std::hint::black_box(b)));
            }
        });
        let node = best(&|| {
            for _ in 0..leaves.len() {
                std::hint::black_box(m::node_hash(&a, &std::hint::black_box(b)));
            }
        });
        println!("leaf hash ns: ring {ring:.0}, sha-ni {fast:.0}, sha-ni pairs {pair:.0}; node hash ns: ring {ring_node:.0}, sha-ni {node:.0}");
        return;
    }
    if std::env::args().nth(2).as_deref() == Some("--scan") {
        // Only the one-pass scan, best of five (for A/B runs of the scanner).
        let best = (0..5)
            .map(|_| {
                let t = Instant::now();
                for l in &leaves {
                    stele_audit::leaf_view::LeafView::scan(l).unwrap();
                }
                t.elapsed().as_secs_f64() * 1e6 / n
            })
            .fold(f64::MAX, f64::min);
        println!("one-pass scan:   {best:.3} us (best of 5)");
        return;
    }
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
        stele_audit::leaf_view::LeafView::scan(l).unwrap();
    }
    println!(
        "one-pass scan:   {:.2} us (canonical form + schema + fields)",
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
    for l in &leaves {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update([0u8]);
        h.update(l);
        let _ = h.finalize();
    }
    println!(
        "leaf hash (sha2 crate): {:.2} us",
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
    let vkey = store.meta_required("vkey").unwrap();
    let verifier = stele_attest::NoteVerifier::parse(&vkey).unwrap();
    let notes = store.checkpoints().unwrap();
    let texts: Vec<&str> = notes.iter().map(|(_, t)| t.as_str()).collect();
    let t = Instant::now();
    for t in &texts {
        stele_attest::Checkpoint::open(t, &verifier).unwrap();
    }
    println!(
        "checkpoints one by one: {:.2} us per entry ({} checkpoints)",
        t.elapsed().as_secs_f64() * 1e6 / n,
        texts.len()
    );
    let t = Instant::now();
    stele_audit::checkpoints::open_all(&texts, &verifier).unwrap();
    println!(
        "checkpoints batched:    {:.2} us per entry",
        t.elapsed().as_secs_f64() * 1e6 / n
    );
    let t = Instant::now();
    let r = stele_audit::verify::verify_db(std::path::Path::new(&db), &verifier, None).unwrap();
    println!(
        "full verify_db:  {:.2} us per entry, {:.0} entries/s ({} entries)",
        t.elapsed().as_secs_f64() * 1e6 / n,
        r.entries as f64 / t.elapsed().as_secs_f64(),
        r.entries
    );
}
