//! Times each step of a command's cgroup on this host:
//! `cargo run --release -p stele-sandbox --example cgroup_steps`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::time::{Duration, Instant};

use stele_sandbox::process::cgroup::SessionGroup;
use stele_sandbox::resources::ResourceLimits;

fn main() {
    let limits = ResourceLimits::default();
    let t = Instant::now();
    let s = SessionGroup::create(&limits).expect("session group");
    println!("session create {:?}", t.elapsed());
    let names = [
        "leaf",
        "thread in",
        "fork",
        "thread out",
        "wait",
        "usage",
        "finish",
        "session usage",
    ];
    let mut steps: Vec<Vec<Duration>> = vec![vec![]; names.len()];
    for _ in 0..300 {
        let mut ts = vec![Instant::now()];
        let leaf = s.command_leaf().unwrap();
        ts.push(Instant::now());
        let g = leaf.enter_thread().unwrap();
        ts.push(Instant::now());
        // SAFETY: the child only exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: leaving the child at once.
            unsafe { libc::_exit(0) };
        }
        ts.push(Instant::now());
        drop(g);
        ts.push(Instant::now());
        // SAFETY: reaping our child.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        ts.push(Instant::now());
        let _ = leaf.usage();
        ts.push(Instant::now());
        leaf.finish();
        ts.push(Instant::now());
        let _ = s.usage();
        ts.push(Instant::now());
        for i in 0..names.len() {
            steps[i].push(ts[i + 1] - ts[i]);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    for (name, mut v) in names.iter().zip(steps) {
        v.sort();
        println!(
            "{name:<14} median {:?}  p90 {:?}",
            v[v.len() / 2],
            v[v.len() * 9 / 10]
        );
    }
}
