//! C2SP tlog-tiles (<https://c2sp.org/tlog-tiles>): tile paths, hash tiles
//! and entry bundles, built from a stream of leaves.
//!
//! A tile is 256 wide. Hash tile `(L, N)` holds the hashes of the tree nodes
//! at height `8·L` with indices `256·N ..`; level 0 holds leaf hashes. Entry
//! bundle `N` holds leaves `256·N ..`, each as a big-endian `u16` length and
//! the leaf bytes. A tile with fewer than 256 items is partial, `.p/<W>`.

use crate::merkle::{CompletedNode, Hash};

/// Items per tile.
pub const TILE_WIDTH: u64 = 256;
/// Tree levels per tile level.
pub const TILE_HEIGHT: u8 = 8;

/// The `<N>` path element: groups of three digits, all but the last prefixed `x`.
pub fn index_path(n: u64) -> String {
    let digits = format!("{n:03}");
    let pad = (3 - digits.len() % 3) % 3;
    let padded = format!("{}{digits}", "0".repeat(pad));
    let groups: Vec<&str> = padded
        .as_bytes()
        .chunks(3)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    let last = groups.len().saturating_sub(1);
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            if i < last {
                format!("x{g}")
            } else {
                (*g).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn suffix(width: u64) -> String {
    if width == TILE_WIDTH {
        String::new()
    } else {
        format!(".p/{width}")
    }
}

/// Path of hash tile `(level, index)` with `width` hashes.
pub fn hash_tile_path(level: u8, index: u64, width: u64) -> String {
    format!("tile/{level}/{}{}", index_path(index), suffix(width))
}

/// Path of entry bundle `index` with `width` entries.
pub fn entry_bundle_path(index: u64, width: u64) -> String {
    format!("tile/entries/{}{}", index_path(index), suffix(width))
}

/// Every tile path of a tree of `size` leaves: `(path, level or None for
/// entries, index, width)`, entry bundles first, then hash tiles by level.
pub fn tile_paths(size: u64) -> Vec<(String, Option<u8>, u64, u64)> {
    let mut out = Vec::new();
    let mut push = |level: Option<u8>, count: u64| {
        for n in 0..count.div_ceil(TILE_WIDTH) {
            let w = (count - n * TILE_WIDTH).min(TILE_WIDTH);
            let p = match level {
                None => entry_bundle_path(n, w),
                Some(l) => hash_tile_path(l, n, w),
            };
            out.push((p, level, n, w));
        }
    };
    push(None, size);
    let mut level = 0u8;
    loop {
        let count = size
            .checked_shr(u32::from(level) * u32::from(TILE_HEIGHT))
            .unwrap_or(0);
        if count == 0 {
            break;
        }
        push(Some(level), count);
        level += 1;
    }
    out
}

/// Every tile path of a bundle that starts past 0 and holds `count`
/// entries from there: entry bundles and level-0 hash tiles numbered from
/// the bundle's first entry (tile `k` holds entries `N + 256·k …`), and
/// no higher level (those nodes would cover archived leaves). Same tuple
/// as [`tile_paths`].
pub fn live_tile_paths(count: u64) -> Vec<(String, Option<u8>, u64, u64)> {
    tile_paths(count)
        .into_iter()
        .filter(|t| matches!(t.1, None | Some(0)))
        .collect()
}

/// A finished tile: its path and bytes.
pub type TileFile = (String, Vec<u8>);

/// Builds tiles while leaves are appended in order. The writer and the
/// verifier both use it: the verifier compares the bytes it rebuilds with
/// the exported files.
#[derive(Debug, Default)]
pub struct TileBuilder {
    entries: Vec<u8>,
    entry_count: u64,
    entry_index: u64,
    levels: Vec<(u64, Vec<u8>)>,
}

impl TileBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add one leaf; returns the entry bundle if it completed one.
    pub fn push_entry(&mut self, leaf: &[u8], out: &mut Vec<TileFile>) {
        // Leaves are at most 65,535 bytes (checked when they are made and
        // when they are parsed), so the length fits.
        let len = u16::try_from(leaf.len()).unwrap_or(u16::MAX);
        self.entries.extend_from_slice(&len.to_be_bytes());
        self.entries.extend_from_slice(leaf);
        self.entry_count += 1;
        if self.entry_count == TILE_WIDTH {
            out.push((
                entry_bundle_path(self.entry_index, TILE_WIDTH),
                std::mem::take(&mut self.entries),
            ));
            self.entry_index += 1;
            self.entry_count = 0;
        }
    }

    /// Add a leaf hash (level-0 node).
    pub fn push_leaf_hash(&mut self, h: &Hash, out: &mut Vec<TileFile>) {
        self.push_node(0, h, out);
    }

    /// Add a completed internal node; only heights that are multiples of 8 go into tiles.
    pub fn push_completed(&mut self, n: &CompletedNode, out: &mut Vec<TileFile>) {
        if n.level.is_multiple_of(TILE_HEIGHT) {
            self.push_node(n.level / TILE_HEIGHT, &n.hash, out);
        }
    }

    fn push_node(&mut self, tile_level: u8, h: &Hash, out: &mut Vec<TileFile>) {
        let l = usize::from(tile_level);
        while self.levels.len() <= l {
            self.levels.push((0, Vec::with_capacity(8192)));
        }
        let (index, buf) = &mut self.levels[l];
        buf.extend_from_slice(h);
        if buf.len() == 8192 {
            out.push((
                hash_tile_path(tile_level, *index, TILE_WIDTH),
                std::mem::take(buf),
            ));
            *index += 1;
        }
    }

    /// The partial tiles left at the end.
    pub fn finish(self, out: &mut Vec<TileFile>) {
        if self.entry_count > 0 {
            out.push((
                entry_bundle_path(self.entry_index, self.entry_count),
                self.entries,
            ));
        }
        for (l, (index, buf)) in self.levels.into_iter().enumerate() {
            if !buf.is_empty() {
                let level = u8::try_from(l).unwrap_or(u8::MAX);
                out.push((hash_tile_path(level, index, buf.len() as u64 / 32), buf));
            }
        }
    }
}

/// Split an entry bundle into leaves; `None` when the framing is broken.
pub fn split_bundle(bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::with_capacity(TILE_WIDTH as usize);
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < 2 {
            return None;
        }
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let leaf = rest.get(2..2 + n)?;
        out.push(leaf);
        rest = &rest[2 + n..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paths_follow_the_specification() {
        // Examples from the tlog-tiles document.
        assert_eq!(index_path(1_234_067), "x001/x234/067");
        assert_eq!(index_path(0), "000");
        assert_eq!(index_path(999), "999");
        assert_eq!(index_path(1000), "x001/000");
        assert_eq!(hash_tile_path(1, 1_234_067, 8), "tile/1/x001/x234/067.p/8");
        assert_eq!(entry_bundle_path(5, 256), "tile/entries/005");
    }

    #[test]
    fn tile_paths_cover_the_tree() {
        let p = tile_paths(70_000);
        assert!(p.iter().any(|x| x.0 == "tile/entries/273.p/112"));
        assert!(p.iter().any(|x| x.0 == "tile/0/273.p/112"));
        assert!(p.iter().any(|x| x.0 == "tile/1/001.p/17"));
        assert!(p.iter().any(|x| x.0 == "tile/2/000.p/1"));
        assert!(!p.iter().any(|x| x.0.starts_with("tile/3/")));
        let live = live_tile_paths(70_000);
        assert!(live.iter().any(|x| x.0 == "tile/entries/273.p/112"));
        assert!(live.iter().any(|x| x.0 == "tile/0/273.p/112"));
        assert!(!live.iter().any(|x| x.0.starts_with("tile/1/")));
    }
}
