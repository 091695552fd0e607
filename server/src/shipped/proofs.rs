//! RFC 6962 inclusion proofs of a shipped log's entries, read from the
//! store: the node positions the audit paths need are found first (by
//! running [`inclusion_proof`] over a reader that only records), fetched in
//! one query per round, and the paths computed from them.
//!
//! Batches stored before the server kept tree nodes have none: a missing
//! node is computed from the level below (fetched the same way, down to
//! the leaf hashes) — the same hash, only slower.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;

use stele_audit::merkle::{inclusion_proof, node_hash, Hash, NodeReader};

use crate::error::ServerError;
use crate::store::shipped_reads::ShippedReads;

/// The audit path of each of `indexes` in the tree of `origin`'s first
/// `size` entries, in the order of `indexes`.
pub async fn inclusion_proofs<S: ShippedReads + ?Sized>(
    store: &S,
    origin: &str,
    indexes: &[u64],
    size: u64,
) -> Result<Vec<Vec<Hash>>, ServerError> {
    if let Some(i) = indexes.iter().find(|&&i| i >= size) {
        return Err(ServerError::Shipped(format!(
            "{origin}: entry {i} is not in the tree of size {size}"
        )));
    }
    let wanted = positions(indexes, size);
    let mut held = store.shipped_nodes(origin, &wanted).await?;
    fill_missing(store, origin, &wanted, &mut held).await?;
    let reader = Held(&held);
    let mut proofs = Vec::with_capacity(indexes.len());
    for &i in indexes {
        proofs.push(inclusion_proof(&reader, i, size).map_err(|p| missing(origin, p))?);
    }
    Ok(proofs)
}

/// Every `(level, index)` the audit paths of `indexes` read, once each.
fn positions(indexes: &[u64], size: u64) -> Vec<(u8, u64)> {
    let rec = Recorder::default();
    for &i in indexes {
        // The recorder never fails.
        let _ = inclusion_proof(&rec, i, size);
    }
    rec.0.into_inner().into_iter().collect()
}

/// Compute the nodes of `wanted` not held from the level below, fetching
/// each level's missing children in one query, down to the leaf hashes.
async fn fill_missing<S: ShippedReads + ?Sized>(
    store: &S,
    origin: &str,
    wanted: &[(u8, u64)],
    held: &mut HashMap<(u8, u64), Hash>,
) -> Result<(), ServerError> {
    let mut need: BTreeSet<(u8, u64)> = wanted
        .iter()
        .filter(|p| !held.contains_key(p))
        .copied()
        .collect();
    // Computed bottom-up once everything below them is at hand.
    let mut to_compute: Vec<(u8, u64)> = Vec::new();
    while !need.is_empty() {
        if let Some(p) = need.iter().find(|(level, _)| *level == 0) {
            return Err(missing(origin, *p));
        }
        let children: Vec<(u8, u64)> = need
            .iter()
            .flat_map(|&(l, i)| [(l - 1, 2 * i), (l - 1, 2 * i + 1)])
            .filter(|p| !held.contains_key(p))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        to_compute.extend(need.iter().copied());
        held.extend(store.shipped_nodes(origin, &children).await?);
        need = children
            .into_iter()
            .filter(|p| !held.contains_key(p))
            .collect();
    }
    to_compute.sort_unstable();
    for (l, i) in to_compute {
        let (Some(left), Some(right)) = (held.get(&(l - 1, 2 * i)), held.get(&(l - 1, 2 * i + 1)))
        else {
            return Err(missing(origin, (l - 1, 2 * i)));
        };
        let h = node_hash(left, right);
        held.insert((l, i), h);
    }
    Ok(())
}

fn missing(origin: &str, (level, index): (u8, u64)) -> ServerError {
    if level == 0 {
        ServerError::Shipped(format!(
            "{origin}: the leaf hash of entry {index} is not held"
        ))
    } else {
        ServerError::Shipped(format!(
            "{origin}: tree node (level {level}, index {index}) could not be read or computed"
        ))
    }
}

/// A reader that notes what is read (and answers zeros).
#[derive(Default)]
struct Recorder(RefCell<BTreeSet<(u8, u64)>>);

impl NodeReader for Recorder {
    type Error = Infallible;
    fn node(&self, level: u8, index: u64) -> Result<Hash, Infallible> {
        self.0.borrow_mut().insert((level, index));
        Ok([0; 32])
    }
}

/// A reader over the nodes fetched.
struct Held<'a>(&'a HashMap<(u8, u64), Hash>);

impl NodeReader for Held<'_> {
    type Error = (u8, u64);
    fn node(&self, level: u8, index: u64) -> Result<Hash, (u8, u64)> {
        self.0.get(&(level, index)).copied().ok_or((level, index))
    }
}

#[cfg(test)]
#[path = "proofs_tests.rs"]
mod tests;
