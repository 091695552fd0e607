//! Per-opcode request counters: a cheap way to see what a workload costs in
//! FUSE round trips (the benchmark prints them).

use std::sync::atomic::{AtomicU64, Ordering};

use fuse_backend_rs::abi::fuse_abi::{InHeader, Opcode, OutHeader};
use fuse_backend_rs::api::server::MetricsHook;

/// Opcodes are small integers; the few above this bound share the last slot.
const SLOTS: usize = 64;

/// Requests seen per FUSE opcode.
#[derive(Debug)]
pub(crate) struct RequestStats {
    counts: [AtomicU64; SLOTS],
}

impl RequestStats {
    /// All counters at zero.
    pub fn new() -> Self {
        RequestStats {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Non-zero counters as (opcode name, count), busiest first.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .counts
            .iter()
            .enumerate()
            .filter_map(|(op, c)| {
                let n = c.load(Ordering::Relaxed);
                let op = u32::try_from(op).ok()?;
                (n > 0).then(|| (format!("{:?}", Opcode::from(op)), n))
            })
            .collect();
        out.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        out
    }
}

impl MetricsHook for RequestStats {
    fn collect(&self, ih: &InHeader) {
        let slot = usize::try_from(ih.opcode)
            .unwrap_or(SLOTS - 1)
            .min(SLOTS - 1);
        if let Some(c) = self.counts.get(slot) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn release(&self, _oh: Option<&OutHeader>) {}
}
