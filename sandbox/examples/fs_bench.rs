//! File-heavy workload through the mediated workspace vs a plain directory.
//!
//! python3 reads 10,000 small files and writes 1,000, once on a plain host
//! directory and once through a real FUSE mount of `MediatedFs` (every lookup
//! and open decided by an allow-all mediator, every close reported with
//! SHA-256). Prints both wall times and the ratio. Needs root and /dev/fuse.
//!
//! Python runs under the process sandbox's own seccomp filters in both runs
//! (as it would in the sandbox; among other things they answer `isatty`'s
//! `TCGETS` without a FUSE round trip).
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

/// CPU time (user + system) of this process (incl. the file-server threads)
/// and of its waited-for children (python).
fn cpu() -> Duration {
    let mut total = Duration::ZERO;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: getrusage writes into the zeroed struct we pass.
        let ru = unsafe {
            let mut ru: libc::rusage = std::mem::zeroed();
            libc::getrusage(who, &mut ru);
            ru
        };
        for tv in [ru.ru_utime, ru.ru_stime] {
            total +=
                Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64);
        }
    }
    total
}

/// One run: (wall time, CPU time of python + file server).
fn run_workload(root: &Path) -> (Duration, Duration) {
    thread_local!(static PY: String = python());
    let c0 = cpu();
    let t0 = Instant::now();
    thread_local!(static FILTERS: Vec<seccompiler::BpfProgram> =
        stele_sandbox::process::seccomp::sandbox_filters().unwrap());
    let filters = FILTERS.with(|f| f.clone());
    let mut cmd = Command::new(PY.with(|p| p.clone()));
    // SAFETY: apply_filter only sets no-new-privs and installs the programs
    // (two system calls on data prepared before the fork).
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            for f in &filters {
                seccompiler::apply_filter(f).map_err(std::io::Error::other)?;
            }
            Ok(())
        });
    }
    let out = cmd.arg("-c").arg(SCRIPT).arg(root).output().unwrap();
    let elapsed = t0.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let used = cpu() - c0;
    let _ = std::fs::remove_dir_all(root.join("out"));
    (elapsed, used)
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

    // First pass on each: cold FUSE caches (every name looked up and decided
    // once), page cache already warm from populating. Then alternate.
    let (first_plain, _) = run_workload(ws.path());
    let (first_mediated, _) = run_workload(&mounted.mountpoint);
    let (mut plain, mut plain_cpu) = (Vec::new(), Vec::new());
    let (mut mediated, mut mediated_cpu) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (w, c) = run_workload(ws.path());
        plain.push(w);
        plain_cpu.push(c);
        let (w, c) = run_workload(&mounted.mountpoint);
        mediated.push(w);
        mediated_cpu.push(c);
    }
    let counts = mounted.request_counts();
    drop(mounted);
    let (p, m) = (median(plain.clone()), median(mediated.clone()));
    let (pc, mc) = (median(plain_cpu), median(mediated_cpu));
    println!(
        "workload: python3 reads {READS} small files, writes {WRITES} ({rounds} rounds, median)"
    );
    println!(
        "first pass:         plain {:.1} ms, mediated {:.1} ms, ratio {:.2}",
        first_plain.as_secs_f64() * 1e3,
        first_mediated.as_secs_f64() * 1e3,
        first_mediated.as_secs_f64() / first_plain.as_secs_f64()
    );
    println!(
        "python3 start-up:   {:>8.1} ms",
        startup.as_secs_f64() * 1e3
    );
    println!(
        "plain directory:    {:>8.1} ms wall {:>8.1} ms cpu  wall runs {:?}",
        p.as_secs_f64() * 1e3,
        pc.as_secs_f64() * 1e3,
        ms(&plain)
    );
    println!(
        "mediated workspace: {:>8.1} ms wall {:>8.1} ms cpu  wall runs {:?}",
        m.as_secs_f64() * 1e3,
        mc.as_secs_f64() * 1e3,
        ms(&mediated)
    );
    let runs = (rounds + 1) as u64;
    let per_run: Vec<String> = counts
        .iter()
        .map(|(op, n)| format!("{op} {}", n / runs))
        .collect();
    println!("FUSE requests per run: {}", per_run.join(", "));
    println!(
        "ratio (wall):       {:>8.2}  (goal <= 2.0)",
        m.as_secs_f64() / p.as_secs_f64()
    );
    println!(
        "ratio (cpu):        {:>8.2}  (python + file server)",
        mc.as_secs_f64() / pc.as_secs_f64()
    );
}

fn ms(v: &[Duration]) -> Vec<u64> {
    v.iter().map(|d| d.as_millis() as u64).collect()
}
