//! What recording the clock costs the writer (docs/audit-format.md §3,
//! *Time*): the price of one kernel state read (`adjtimex` and the sysfs
//! clock source) and of the wall and monotonic readings, and the append
//! rate of 64 concurrent writers with the clock watch as shipped (state
//! read at most once a second), with no kernel reads at all, and with the
//! state read at every group commit.
//!
//! `cargo run --release -p stele-audit --example clock_cost [ENTRIES] [ROUNDS]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use stele_attest::Ed25519Signer;
use stele_audit::clock::{ClockHandle, ClockSource, ClockState, SystemClock};
use stele_audit::{Actor, AuditLog, Event, EventKind, LogOptions};

/// The real clocks, but a constant kernel state: no system call.
struct NoKernelReads {
    real: SystemClock,
    state: ClockState,
}

impl ClockSource for NoKernelReads {
    fn wall_ns(&self) -> i128 {
        self.real.wall_ns()
    }
    fn mono_ns(&self) -> u64 {
        self.real.mono_ns()
    }
    fn state(&self) -> ClockState {
        self.state.clone()
    }
}

/// The real clocks, with the monotonic clock running a second ahead at
/// every reading: the watch reads the kernel state at every group commit.
struct EveryCommit {
    real: SystemClock,
    skew: AtomicU64,
}

impl ClockSource for EveryCommit {
    fn wall_ns(&self) -> i128 {
        // Keep wall and monotonic in step (no forward-step entries).
        self.real.wall_ns() + i128::from(self.skew.load(Ordering::Relaxed))
    }
    fn mono_ns(&self) -> u64 {
        let s = self.skew.fetch_add(1_000_000_000, Ordering::Relaxed) + 1_000_000_000;
        self.real.mono_ns() + s
    }
    fn state(&self) -> ClockState {
        self.real.state()
    }
}

fn per_call(n: u32, f: impl Fn()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn appends_per_s(clock: Arc<dyn ClockSource>, entries: u64, writers: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(Ed25519Signer::from_seed("bench.invalid/clock", &[9; 32]).unwrap());
    let log = Arc::new(
        AuditLog::create(
            &dir.path().join("a.db"),
            key,
            LogOptions {
                heartbeat: None,
                clock: ClockHandle(clock),
                ..LogOptions::default()
            },
        )
        .unwrap(),
    );
    let actor = Actor::system();
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..writers {
            let (log, actor) = (log.clone(), actor.clone());
            s.spawn(move || {
                for _ in 0..entries / writers {
                    log.append_blocking(Event::new(EventKind::PolicyDecision, actor.clone()))
                        .unwrap();
                }
            });
        }
    });
    (entries / writers * writers) as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let entries: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(32_000);
    let rounds: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let sys = SystemClock::new();
    println!(
        "one kernel state read (adjtimex + sysfs clock source): {:.0} ns",
        per_call(20_000, || drop(std::hint::black_box(sys.state())))
    );
    println!(
        "one wall clock reading: {:.0} ns",
        per_call(1_000_000, || {
            std::hint::black_box(sys.wall_ns());
        })
    );
    println!(
        "one monotonic reading: {:.0} ns",
        per_call(1_000_000, || {
            std::hint::black_box(sys.mono_ns());
        })
    );
    let mut rates: [Vec<f64>; 3] = Default::default();
    for _ in 0..rounds {
        rates[0].push(appends_per_s(Arc::new(SystemClock::new()), entries, 64));
        rates[1].push(appends_per_s(
            Arc::new(NoKernelReads {
                real: SystemClock::new(),
                state: SystemClock::new().state(),
            }),
            entries,
            64,
        ));
        rates[2].push(appends_per_s(
            Arc::new(EveryCommit {
                real: SystemClock::new(),
                skew: AtomicU64::new(0),
            }),
            entries,
            64,
        ));
    }
    for (name, r) in [
        ("as shipped (state at most once a second)", &rates[0]),
        ("no kernel state reads", &rates[1]),
        ("state read at every group commit", &rates[2]),
    ] {
        let mut v = r.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        println!(
            "64 writers, {entries} appends, {name}: median {:.0} appends/s (runs: {})",
            v[v.len() / 2],
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}
