//! An in-memory tree of all complete subtree hashes, for proofs over data
//! that is not in a store (exports, tests).

use std::convert::Infallible;

use crate::merkle::{Frontier, Hash, NodeReader};

/// All complete-subtree hashes of a tree, level by level.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
    frontier: Frontier,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let levels = &mut self.levels;
        self.frontier.push(leaf, |n| {
            let l = n.level as usize;
            if levels.len() <= l {
                levels.push(Vec::new());
            }
            levels[l].push(n.hash);
        });
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Current root.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }
}

impl NodeReader for MemoryTree {
    type Error = Infallible;
    fn node(&self, level: u8, index: u64) -> Result<Hash, Infallible> {
        // Callers only ask for nodes inside the tree; an out-of-range ask is a
        // logic error that yields a zero hash and so fails proof verification.
        Ok(self
            .levels
            .get(level as usize)
            .and_then(|l| l.get(index as usize))
            .copied()
            .unwrap_or([0; 32]))
    }
}
