//! File-heavy workload through the mediated workspace vs a plain directory.
//!
//! python3 reads 10,000 small files and writes 1,000, once on a plain host
//! directory and once through a real FUSE mount of `MediatedFs` (every lookup
//! and open decided by an allow-all mediator, every close reported with
//! SHA-256). Prints both wall times and the ratio. Needs root and /dev/fuse.
//!
//! Run: `cargo run --release -p stele-sandbox --example fs_bench [-- ROUNDS]`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fs_support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fs_support::{fuse_available, Mounted, Recorder};

const READS: usize = 10_000;
const WRITES: usize = 1_000;

/// The workload: read every file under in/ (in 100 directories), write WRITES files under out/.
const SCRIPT: &str = r#"
import os, sys
root = sys.argv[1]
total = 0
for d in range(100):
    base = os.path.join(root, "in", "d%03d" % d)
    for i in range(100):
        with open(os.path.join(base, "f%03d.txt" % i), "rb") as f:
            total += len(f.read())
out = os.path.join(root, "out")
os.makedirs(out, exist_ok=True)
for i in range(1000):
    with open(os.path.join(out, "w%04d.txt" % i), "wb") as f:
        f.write(b"x" * 700 + b"%d\n" % i)
print(total)
"#;

fn populate(root: &Path) {
    for d in 0..100 {
        let dir = root.join("in").join(format!("d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..100 {
            let body = format!("{}{d}-{i}\n", "line of receipt data\n".repeat(20));
            std::fs::write(dir.join(format!("f{i:03}.txt")), body).unwrap();
        }
    }
    assert_eq!(READS, 100 * 100);
}

/// The real interpreter (not a version-manager shim script).
fn python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn run_workload(root: &Path) -> Duration {
    thread_local!(static PY: String = python());
    let t0 = Instant::now();
    let out = Command::new(PY.with(|p| p.clone()))
        .arg("-c")
        .arg(SCRIPT)
        .arg(root)
        .output()
        .unwrap();
    let elapsed = t0.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(root.join("out"));
    elapsed
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if !fuse_available() {
        return;
    }
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let ws = tempfile::tempdir().unwrap();
    populate(ws.path());
    // Python start-up alone, to show what the ratio is made of.
    let t0 = Instant::now();
    Command::new(python())
        .arg("-c")
        .arg("pass")
        .status()
        .unwrap();
    let startup = t0.elapsed();

    let recorder = Arc::new(Recorder::with_recording(false));
    let mounted = Mounted::new(ws.path(), recorder.clone());

    let mut plain = Vec::new();
    let mut mediated = Vec::new();
    // Warm both once (page cache, python's own imports), then alternate.
    run_workload(ws.path());
    run_workload(&mounted.mountpoint);
    for _ in 0..rounds {
        plain.push(run_workload(ws.path()));
        mediated.push(run_workload(&mounted.mountpoint));
    }
    drop(mounted);
    let (p, m) = (median(plain.clone()), median(mediated.clone()));
    println!(
        "workload: python3 reads {READS} small files, writes {WRITES} ({rounds} rounds, median)"
    );
    println!(
        "python3 start-up:   {:>8.1} ms",
        startup.as_secs_f64() * 1e3
    );
    println!(
        "plain directory:    {:>8.1} ms  {:?}",
        p.as_secs_f64() * 1e3,
        ms(&plain)
    );
    println!(
        "mediated workspace: {:>8.1} ms  {:?}",
        m.as_secs_f64() * 1e3,
        ms(&mediated)
    );
    println!(
        "ratio:              {:>8.2}  (goal <= 2.0)",
        m.as_secs_f64() / p.as_secs_f64()
    );
}

fn ms(v: &[Duration]) -> Vec<u64> {
    v.iter().map(|d| d.as_millis() as u64).collect()
}
