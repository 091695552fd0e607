//! Proofs from held nodes equal the reference ones over an in-memory tree,
//! and verify against its root — with every node held, and with only the
//! leaf hashes (a log shipped before nodes were kept).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use stele_audit::merkle::{leaf_hash, root_of, verify_inclusion, Frontier};

use super::*;
use crate::store::shipping::{ShippedEntry, ShippedPayload};

/// A shipped tree held in memory, as a store answers it.
struct Mem {
    nodes: HashMap<(u8, u64), Hash>,
    queries: AtomicUsize,
}

impl Mem {
    /// `n` leaves; with `keep_nodes`, every node their appends complete.
    fn new(n: u64, keep_nodes: bool) -> (Self, Vec<Hash>) {
        let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut nodes = HashMap::new();
        let mut f = Frontier::new();
        for (i, l) in leaves.iter().enumerate() {
            nodes.insert((0, i as u64), *l);
            f.push(*l, |c| {
                if keep_nodes {
                    nodes.insert((c.level, c.index), c.hash);
                }
            });
        }
        let mem = Mem {
            nodes,
            queries: AtomicUsize::new(0),
        };
        (mem, leaves)
    }
}

#[async_trait]
impl ShippedReads for Mem {
    async fn shipped_session_entries(
        &self,
        _: &str,
        _: &str,
    ) -> Result<Vec<ShippedEntry>, ServerError> {
        Ok(Vec::new())
    }
    async fn shipped_session_origins(&self, _: &str) -> Result<Vec<String>, ServerError> {
        Ok(Vec::new())
    }
    async fn shipped_sessions_between(&self, _: &str, _: &str) -> Result<Vec<String>, ServerError> {
        Ok(Vec::new())
    }
    async fn shipped_session_counts(
        &self,
        _: &[String],
    ) -> Result<HashMap<String, crate::store::shipped_reads::SessionCounts>, ServerError> {
        Ok(HashMap::new())
    }
    async fn shipped_payloads(
        &self,
        _: &str,
        _: &[Vec<u8>],
    ) -> Result<Vec<ShippedPayload>, ServerError> {
        Ok(Vec::new())
    }
    async fn shipped_nodes(
        &self,
        _: &str,
        positions: &[(u8, u64)],
    ) -> Result<HashMap<(u8, u64), Hash>, ServerError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        Ok(positions
            .iter()
            .filter_map(|p| self.nodes.get(p).map(|h| (*p, *h)))
            .collect())
    }
}

/// The reference: every complete subtree hashed from the leaves.
struct Leaves<'a>(&'a [Hash]);

impl NodeReader for Leaves<'_> {
    type Error = Infallible;
    fn node(&self, level: u8, index: u64) -> Result<Hash, Infallible> {
        let w = 1usize << level;
        let start = index as usize * w;
        Ok(root_of(&self.0[start..start + w]))
    }
}

fn sizes() -> Vec<u64> {
    let mut v: Vec<u64> = (1..=40).collect();
    v.extend([
        63, 64, 65, 100, 127, 128, 129, 255, 256, 257, 1000, 1023, 1024, 1025,
    ]);
    v
}

fn check(keep_nodes: bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (mem, leaves) = Mem::new(1025, keep_nodes);
    for size in sizes() {
        let root = root_of(&leaves[..size as usize]);
        // Every index of small trees; a spread over larger ones.
        let indexes: Vec<u64> = if size <= 64 {
            (0..size).collect()
        } else {
            (0..size).step_by(7).chain([size - 1]).collect()
        };
        let got = rt
            .block_on(inclusion_proofs(&mem, "o", &indexes, size))
            .unwrap();
        assert_eq!(got.len(), indexes.len());
        for (&i, proof) in indexes.iter().zip(&got) {
            let want = inclusion_proof(&Leaves(&leaves), i, size).unwrap();
            assert_eq!(proof, &want, "index {i} of {size}");
            verify_inclusion(&leaves[i as usize], i, size, proof, &root)
                .unwrap_or_else(|e| panic!("index {i} of {size}: {e}"));
        }
    }
}

#[test]
fn proofs_from_held_nodes_are_the_reference_ones_and_verify() {
    check(true);
}

#[test]
fn proofs_from_leaf_hashes_alone_are_the_same() {
    check(false);
}

#[test]
fn held_nodes_are_read_in_one_query_and_missing_ones_a_level_at_a_time() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (mem, _) = Mem::new(1000, true);
    let all: Vec<u64> = (0..1000).collect();
    rt.block_on(inclusion_proofs(&mem, "o", &all, 1000))
        .unwrap();
    assert_eq!(mem.queries.load(Ordering::Relaxed), 1);
    let (mem, _) = Mem::new(1000, false);
    rt.block_on(inclusion_proofs(&mem, "o", &[5], 1000))
        .unwrap();
    // One, then one per level down to the leaves (the tallest is level 8).
    let q = mem.queries.load(Ordering::Relaxed);
    assert!((2..=10).contains(&q), "{q} queries");
}

#[test]
fn an_index_beyond_the_size_or_a_leaf_not_held_is_an_error_naming_it() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (mem, _) = Mem::new(10, true);
    let e = rt
        .block_on(inclusion_proofs(&mem, "o", &[10], 10))
        .unwrap_err()
        .to_string();
    assert!(e.contains("entry 10") && e.contains("size 10"), "{e}");
    let e = rt
        .block_on(inclusion_proofs(&mem, "o", &[3], 12))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not held"), "{e}");
}
