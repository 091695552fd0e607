//! The workload of the file benchmarks (`fs_bench`, `fs_bench_sandbox`):
//! python3 reads 10,000 small files and writes 1,000.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::Path;

pub const READS: usize = 10_000;
pub const WRITES: usize = 1_000;

/// The workload: read every file under in/ (in 100 directories), write
/// WRITES files under the directory named by argv[2]; prints the bytes
/// read and the two phases in microseconds.
pub const SCRIPT: &str = r#"
import os, sys, time
root = sys.argv[1]
t0 = time.perf_counter()
total = 0
for d in range(100):
    base = os.path.join(root, "in", "d%03d" % d)
    for i in range(100):
        with open(os.path.join(base, "f%03d.txt" % i), "rb") as f:
            total += len(f.read())
t1 = time.perf_counter()
out = os.path.join(root, sys.argv[2])
os.makedirs(out, exist_ok=True)
for i in range(1000):
    with open(os.path.join(out, "w%04d.txt" % i), "wb") as f:
        f.write(b"x" * 700 + b"%d\n" % i)
t2 = time.perf_counter()
print(total, int((t1 - t0) * 1e6), int((t2 - t1) * 1e6))
"#;

/// Create the READS input files under `root/in/` (100 directories of 100).
pub fn populate(root: &Path) {
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
