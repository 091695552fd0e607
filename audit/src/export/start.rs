//! Bundles that start past 0 (docs/export-format.md, "Bundles that start
//! past 0"): the export of a log whose prefix `0 … N−1` is archived holds
//! the entries from `N` on, and carries in its signed predicate what an
//! offline verifier needs to take the tree up at `N` — the archived row's
//! size, root, frontier and last leaf hash, and the `log.archive` entry's
//! record of the keys below `N` — while the signed checkpoint at `N` goes
//! under `checkpoints/N`. The verifier checks all of it against the
//! signed checkpoint and against the `log.archive` entry in the bundle.

use serde::{Deserialize, Serialize};

use crate::archive_keys::ArchiveKeys;
use crate::leaf::{hash_b64, parse_hash_b64};
use crate::merkle::{Frontier, Hash};

/// Where a bundle's entries begin, when not at 0 (the predicate's `start`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleStart {
    /// Entries archived before the bundle (`N`): its first entry's index.
    pub size: u64,
    /// Base64 Merkle root at `N` (the signed `checkpoints/N`'s).
    pub root: String,
    /// Base64 leaf hash of entry `N−1` (the first entry's `prev`).
    pub prev: String,
    /// The tree's frontier at `N` (base64 hashes, largest subtree first).
    pub frontier: Vec<String>,
    /// The keys below `N`, exactly as the `log.archive` entry that
    /// archived through `N` records them.
    #[serde(default)]
    pub keys: ArchiveKeys,
}

/// A start whose hashes parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedStart {
    /// `N`.
    pub size: u64,
    /// Root at `N`.
    pub root: Hash,
    /// Leaf hash of entry `N−1`.
    pub prev: Hash,
    /// Frontier at `N` (its root is `root`).
    pub frontier: Frontier,
}

impl BundleStart {
    /// The start at an archived row of size `size`.
    pub fn new(frontier: &Frontier, prev: &Hash, keys: ArchiveKeys) -> Self {
        Self {
            size: frontier.size(),
            root: hash_b64(&frontier.root()),
            prev: hash_b64(prev),
            frontier: frontier.nodes().iter().map(hash_b64).collect(),
            keys,
        }
    }

    /// Parse the hashes and check that the frontier has the shape of a
    /// tree of `size` leaves and gives `root`; the error names the field.
    pub fn parse(&self) -> Result<ParsedStart, String> {
        if self.size == 0 {
            return Err("start.size is 0 (a bundle from 0 names no start)".into());
        }
        let hash = |what: &str, s: &str| {
            parse_hash_b64(s).ok_or_else(|| format!("start.{what} is not a base64 hash"))
        };
        let root = hash("root", &self.root)?;
        let prev = hash("prev", &self.prev)?;
        let nodes = self
            .frontier
            .iter()
            .map(|h| hash("frontier", h))
            .collect::<Result<Vec<_>, _>>()?;
        let want = Frontier::positions(self.size).len();
        let frontier = Frontier::from_parts(self.size, nodes).ok_or_else(|| {
            format!(
                "start.frontier holds {} hashes; a tree of {} entries has {want}",
                self.frontier.len(),
                self.size
            )
        })?;
        if frontier.root() != root {
            return Err(format!(
                "start.frontier does not give start.root (the tree at {} differs)",
                self.size
            ));
        }
        Ok(ParsedStart {
            size: self.size,
            root,
            prev,
            frontier,
        })
    }
}

/// The start of a bundle of `store`'s live part: the newest archived row
/// and what its `log.archive` entry records of the keys.
#[cfg(feature = "store")]
pub(crate) fn of_store(
    store: &crate::store::Store,
) -> Result<Option<(BundleStart, crate::check::ArchiveSeen)>, super::ExportError> {
    let Some(row) = store.archived()? else {
        return Ok(None);
    };
    let leaf = store.entry(row.entry)?.leaf;
    let seen = crate::check::LeafChecker::new("", "")
        .archive_of(&leaf)
        .map_err(|reason| crate::AuditError::Integrity {
            index: row.entry,
            reason,
        })?;
    Ok(Some((
        BundleStart::new(&row.frontier, &row.prev, seen.keys.clone()),
        seen,
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn start(n: u64) -> BundleStart {
        let mut f = Frontier::new();
        let mut last = [0u8; 32];
        for i in 0..n {
            last = crate::merkle::leaf_hash(&i.to_be_bytes());
            f.push(last, |_| {});
        }
        BundleStart::new(&f, &last, ArchiveKeys::default())
    }

    #[test]
    fn a_start_parses_and_every_damage_is_named() {
        for n in [1u64, 2, 3, 255, 256, 257, 1000] {
            let s = start(n);
            assert_eq!(s.parse().unwrap().size, n);
            // A size whose tree has another shape (one more subtree).
            let mut x = s.clone();
            x.size = 2 * n + 1;
            assert!(x.parse().unwrap_err().contains("start.frontier"), "n={n}");
            let mut x = s.clone();
            x.root = hash_b64(&[7u8; 32]);
            assert!(x.parse().unwrap_err().contains("start.root"), "n={n}");
            let mut x = s.clone();
            x.frontier[0] = hash_b64(&[7u8; 32]);
            assert!(x.parse().unwrap_err().contains("start.root"), "n={n}");
            let mut x = s.clone();
            x.prev = "nope".into();
            assert!(x.parse().unwrap_err().contains("start.prev"), "n={n}");
            let mut x = s.clone();
            x.frontier.pop();
            assert!(x.parse().unwrap_err().contains("start.frontier"), "n={n}");
        }
        let mut x = start(3);
        x.size = 0;
        assert!(x.parse().unwrap_err().contains("start.size"));
    }
}
