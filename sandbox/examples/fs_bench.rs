//! File-heavy workload through the mediated workspace vs a plain directory.
//!
//! python3 reads 10,000 small files and writes 1,000, once on a plain host
//! directory and once through a real FUSE mount of `MediatedFs` (every lookup
//! and open decided by an allow-all mediator, every close reported with
//! SHA-256). Prints wall and CPU times, the phases, and the ratios. Needs
//! root and /dev/fuse.
//!
//! Python runs under the process sandbox's own seccomp filters in both runs
//! (as it would in the sandbox; among other things they answer `isatty`'s
//! `TCGETS` without a FUSE round trip), and, as the process sandbox places
//! its commands, on the file server's CPU (`MediatedFs::with_cpu`) — in both
//! runs, so the plain run is placed the same way.
//!
//! Run: `cargo run --release -p stele-sandbox --example fs_bench [-- ROUNDS] [--no-pin] [--fresh] [--dir PARENT]`
//!
//! * `--dir PARENT`: create the workspace under PARENT instead of the
//!   temporary directory (e.g. `/dev/shm` for a tmpfs).
//! * `--no-pin`: neither python nor the server is pinned (the scheduler
//!   places them; on an idle 2-CPU machine, on different CPUs).
//! * `--fresh`: each round writes into a new directory, all removed at the
//!   end, instead of removing `out/` after every round. On the development
//!   VM's journal-less ext4, creating files right after deleting others
//!   makes ext4 skip every recently freed inode (`recently_deleted`), so the
//!   write phase of both runs grows with each round; `--fresh` measures
//!   without that.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fs_support;
#[path = "fs_support/workload.rs"]
mod workload;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fs_support::{fuse_available, Mounted, Recorder};
use workload::{populate, READS, SCRIPT, WRITES};

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

/// One run's figures.
#[derive(Clone, Copy)]
struct Run {
    wall: Duration,
    cpu: Duration,
    read: Duration,
    write: Duration,
}

struct Bench {
    python: String,
    filters: Vec<seccompiler::BpfProgram>,
    cpu: Option<usize>,
    fresh: bool,
    runs: usize,
}

impl Bench {
    /// One run of the workload under `root`.
    fn run(&mut self, root: &Path) -> Run {
        self.runs += 1;
        let out_dir = if self.fresh {
            format!("out-{}", self.runs)
        } else {
            "out".to_owned()
        };
        let filters = self.filters.clone();
        let cpu_pin = self.cpu;
        let mut cmd = Command::new(&self.python);
        // SAFETY: between fork and exec only system calls on data prepared
        // before the fork (the CPU number, the filter programs).
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                if let Some(cpu) = cpu_pin {
                    stele_sandbox::fs::pin_current_thread(cpu)?;
                }
                for f in &filters {
                    seccompiler::apply_filter(f).map_err(std::io::Error::other)?;
                }
                Ok(())
            });
        }
        let c0 = cpu();
        let t0 = Instant::now();
        let out = cmd
            .arg("-c")
            .arg(SCRIPT)
            .arg(root)
            .arg(&out_dir)
            .output()
            .unwrap();
        let wall = t0.elapsed();
        let used = cpu() - c0;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let fields: Vec<u64> = text
            .split_whitespace()
            .map(|f| f.parse().unwrap())
            .collect();
        if !self.fresh {
            let _ = std::fs::remove_dir_all(root.join("out"));
        }
        Run {
            wall,
            cpu: used,
            read: Duration::from_micros(fields[1]),
            write: Duration::from_micros(fields[2]),
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Medians of each figure over `runs`.
fn medians(runs: &[Run]) -> Run {
    let pick = |f: fn(&Run) -> Duration| median(runs.iter().map(f).collect());
    Run {
        wall: pick(|r| r.wall),
        cpu: pick(|r| r.cpu),
        read: pick(|r| r.read),
        write: pick(|r| r.write),
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    if !fuse_available() {
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(5)
        .max(1);
    let pin = !args.iter().any(|a| a == "--no-pin");
    let fresh = args.iter().any(|a| a == "--fresh");
    let parent = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let load_before = loadavg();
    let ws = tempfile::tempdir_in(&parent).unwrap();
    populate(ws.path());
    // The CPU this started on: the server and python go there.
    let cpu = if pin {
        Some(stele_sandbox::fs::current_cpu().unwrap_or(0))
    } else {
        None
    };
    let mut bench = Bench {
        python: python(),
        filters: stele_sandbox::process::seccomp::sandbox_filters().unwrap(),
        cpu,
        fresh,
        runs: 0,
    };
    let t0 = Instant::now();
    Command::new(&bench.python)
        .arg("-c")
        .arg("pass")
        .status()
        .unwrap();
    let startup = t0.elapsed();

    let recorder = Arc::new(Recorder::with_recording(false));
    let mounted = Mounted::with(ws.path(), recorder.clone(), |fs| match cpu {
        Some(c) => fs.with_cpu(c),
        None => fs,
    });

    // First pass on each: cold FUSE caches (every name looked up and decided
    // once), page cache already warm from populating. Then alternate.
    let first_plain = bench.run(ws.path());
    let first_mediated = bench.run(&mounted.mountpoint);
    let (mut plain, mut mediated) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        plain.push(bench.run(ws.path()));
        mediated.push(bench.run(&mounted.mountpoint));
    }
    let counts = mounted.request_counts();
    drop(mounted);
    let (p, m) = (medians(&plain), medians(&mediated));
    let placement = match cpu {
        Some(c) => format!("python and file server on CPU {c}"),
        None => "not pinned".to_owned(),
    };
    println!(
        "workload: python3 reads {READS} small files, writes {WRITES} ({rounds} rounds, median; {placement}{}; under {})",
        if fresh { "; fresh output directories" } else { "" },
        parent.display()
    );
    println!("load average before: {load_before}, after: {}", loadavg());
    println!(
        "first pass:         plain {:.1} ms, mediated {:.1} ms, ratio {:.2}",
        ms(first_plain.wall),
        ms(first_mediated.wall),
        first_mediated.wall.as_secs_f64() / first_plain.wall.as_secs_f64()
    );
    println!("python3 start-up:   {:>8.1} ms", ms(startup));
    for (name, r, all) in [
        ("plain directory:   ", p, &plain),
        ("mediated workspace:", m, &mediated),
    ] {
        println!(
            "{name} {:>8.1} ms wall {:>8.1} ms cpu  (read {:.1} ms, write {:.1} ms)  wall runs {:?}",
            ms(r.wall),
            ms(r.cpu),
            ms(r.read),
            ms(r.write),
            all.iter().map(|r| ms(r.wall) as u64).collect::<Vec<_>>()
        );
    }
    let runs = (rounds + 1) as u64;
    let per_run: Vec<String> = counts
        .iter()
        .map(|(op, n)| format!("{op} {}", n / runs))
        .collect();
    println!("FUSE requests per run: {}", per_run.join(", "));
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "ratio (wall):       {:>8.2}  (goal <= 2.0)",
        ratio(m.wall, p.wall)
    );
    println!(
        "ratio (cpu):        {:>8.2}  (python + file server)",
        ratio(m.cpu, p.cpu)
    );
    println!(
        "phases:             read {:.2}, write {:.2}",
        ratio(m.read, p.read),
        ratio(m.write, p.write)
    );
}
