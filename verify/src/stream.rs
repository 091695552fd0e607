//! Streaming every entry bundle in order through the shared leaf checks,
//! rebuilding every tile and comparing it with the exported one.

use std::collections::{BTreeMap, BTreeSet};

use stele_audit::check::commit_hash;
use stele_audit::check::{CheckMap, LeafChecker};
use stele_audit::cpu_time::{cpu_seconds_since, thread_cpu_ns};
use stele_audit::export::layout::sha256;
use stele_audit::export::layout::Selection;
use stele_audit::export::tiles::{
    live_tile_paths, split_bundle, tile_paths, TileBuilder, TileFile,
};
use stele_audit::leaf_view::LeafView;
use stele_audit::merkle::{sha256_pair, CompletedNode, Hash, HashedLeaf};

use crate::account::AccountBuilder;
use crate::derived::Derived;
use crate::manifest::Manifest;
use crate::{Bundle, Expect, Failure};

/// What streaming found.
#[derive(Debug)]
pub(crate) struct Streamed {
    pub checker: LeafChecker,
    pub selected: u64,
    /// Commitment → index of the selected entry committing to it (empty
    /// for whole-log exports: then every commitment is selected).
    pub selected_commits: CheckMap<Hash, u64>,
    /// Whether the selection is the whole log.
    pub all: bool,
    /// Seconds spent streaming the entries and tiles.
    pub seconds: f64,
    /// CPU seconds this thread spent on it.
    pub cpu_seconds: f64,
    /// Leaf hashes of selected entries (not for whole-log exports).
    pub selected_hashes: BTreeMap<u64, Hash>,
    pub span: Option<(String, String)>,
    pub entries_bytes: u64,
    /// The exporter's derived files, recomputed (taken when finished).
    pub derived: Option<Derived>,
    /// The reviewer's account of the selected entries (taken when finished).
    pub account: Option<AccountBuilder>,
    /// Leaf hash of the last entry (the next bundle's first `prev`).
    pub last_leaf: Option<Hash>,
    /// Where a bundle that starts past 0 starts, as verified.
    pub start: Option<crate::start::StartFacts>,
}

pub(crate) fn run(
    bundle: &Bundle,
    m: &Manifest,
    expect: &Expect,
    account: Option<AccountBuilder>,
    started: Option<&crate::start::Started>,
) -> Result<Streamed, Failure> {
    let size = m.predicate.tree_size;
    let from = started.map_or(0, |s| s.parsed.size);
    let expected = match started {
        None => tile_paths(size),
        Some(_) => live_tile_paths(size - from),
    };
    let want: BTreeSet<&str> = expected.iter().map(|t| t.0.as_str()).collect();
    for name in m.digests.keys().filter(|n| n.starts_with("tile/")) {
        if !want.contains(name.as_str()) {
            return Err(Failure::new(
                name.clone(),
                None,
                format!("unexpected tile for a bundle of entries {from}..{size}"),
            ));
        }
    }
    for t in &expected {
        if !m.digests.contains_key(&t.0) {
            return Err(Failure::new(
                t.0.clone(),
                None,
                format!("tile missing: a bundle of entries {from}..{size} needs it"),
            ));
        }
    }
    let all = matches!(m.predicate.range, Selection::All);
    let checker = match started {
        None => LeafChecker::new(&m.predicate.origin, m.keys.first()),
        Some(st) => crate::start::checker(m, st),
    };
    let s = Streamed {
        checker,
        selected: 0,
        selected_commits: CheckMap::default(),
        all,
        seconds: 0.0,
        cpu_seconds: 0.0,
        selected_hashes: BTreeMap::new(),
        span: None,
        entries_bytes: 0,
        derived: Some(Derived::open(bundle, m)?),
        account,
        last_leaf: None,
        start: None,
    };
    let began = std::time::Instant::now();
    let cpu0 = thread_cpu_ns();
    let mut run = Run {
        bundle,
        m,
        s,
        tiles: TileBuilder::new(),
        nodes: Vec::with_capacity(64),
        done: Vec::new(),
        node_tiles: from == 0,
        checks: expect.iter().peekable(),
    };
    let files: Vec<(&String, u64)> = expected
        .iter()
        .filter(|t| t.1.is_none())
        .map(|t| (&t.0, t.3))
        .collect();
    let (mut first, mut second) = (Vec::new(), Vec::new());
    // Entry bundles two at a time: both files are read and their SHA-256
    // computed together (a fifth faster), while they are in cache for the
    // leaves. Anything wrong with the second file is reported only after
    // the first file's entries are checked, as when read one by one.
    for two in files.chunks(2) {
        let (path, width) = two[0];
        let want = m.listed(path)?;
        bundle.read_into(path, &mut first)?;
        let next = two.get(1).map(|&(p, w)| {
            let read = m
                .listed(p)
                .and_then(|want| bundle.read_into(p, &mut second).map(|()| want));
            (p, w, read)
        });
        let (got, got_next) = match &next {
            Some((_, _, Ok(_))) => {
                let (a, b) = sha256_pair(&first, &second);
                (a, Some(b))
            }
            _ => (sha256(&first), None),
        };
        m.check_sum(path, want, &got)?;
        run.entry_bundle(path, width, &first)?;
        if let Some((path, width, read)) = next {
            let want = read?;
            // Read, so its digest was computed with the first file's.
            m.check_sum(path, want, &got_next.unwrap_or_default())?;
            run.entry_bundle(path, width, &second)?;
        }
    }
    let Run {
        mut s,
        tiles,
        mut done,
        mut checks,
        ..
    } = run;
    tiles.finish(&mut done);
    compare(bundle, m, &mut done)?;
    if let Some((&at, (_, from))) = checks.peek() {
        return Err(Failure::new(
            from.clone(),
            None,
            format!(
                "names size {at} beyond the {} entries exported",
                s.checker.size()
            ),
        ));
    }
    if s.checker.root() != m.root {
        return Err(Failure::new(
            "checkpoint",
            None,
            "root recomputed from the entries differs from the checkpoint",
        ));
    }
    // The keys the export states are the ones the log's entries set.
    if s.checker.keys != m.keys {
        return Err(Failure::new(
            "manifest.intoto.jsonl",
            None,
            "the key ranges differ from the log's key.rotation entries",
        ));
    }
    if s.checker.revocations != m.predicate.revoked {
        return Err(Failure::new(
            "manifest.intoto.jsonl",
            None,
            "the revoked keys differ from the log's key.revocation entries",
        ));
    }
    if let Some(st) = started {
        s.start = Some(crate::start::joined(m, st, &s.checker)?);
    }
    s.seconds = began.elapsed().as_secs_f64();
    s.cpu_seconds = cpu_seconds_since(cpu0, s.seconds);
    Ok(s)
}

/// The state of the streaming pass.
struct Run<'a> {
    bundle: &'a Bundle,
    m: &'a Manifest,
    s: Streamed,
    tiles: TileBuilder,
    nodes: Vec<CompletedNode>,
    done: Vec<TileFile>,
    /// Whether internal nodes are tiled (not past 0: `live_tile_paths`).
    node_tiles: bool,
    checks: std::iter::Peekable<std::collections::btree_map::Iter<'a, u64, (Hash, String)>>,
}

impl Run<'_> {
    /// Check the leaves of one entry bundle (its digest already checked).
    fn entry_bundle(&mut self, path: &str, width: u64, bytes: &[u8]) -> Result<(), Failure> {
        self.s.entries_bytes += bytes.len() as u64;
        let leaves = split_bundle(bytes)
            .ok_or_else(|| Failure::new(path, None, "entry bundle framing is broken"))?;
        if leaves.len() as u64 != width {
            return Err(Failure::new(
                path,
                None,
                format!("holds {} entries, expected {width}", leaves.len()),
            ));
        }
        // Two leaves at a time: their hashes are computed together
        // (`HashedLeaf::pair`); each is then checked on its own, in order.
        for two in leaves.chunks(2) {
            let (first, second) = match two {
                [a, b] => {
                    let (a, b) = HashedLeaf::pair(a, b);
                    (a, Some(b))
                }
                _ => (HashedLeaf::new(two[0]), None),
            };
            for leaf in std::iter::once(first).chain(second) {
                self.leaf(path, leaf)?;
            }
        }
        Ok(())
    }

    fn leaf(&mut self, path: &str, leaf: HashedLeaf<'_>) -> Result<(), Failure> {
        let (s, m) = (&mut self.s, self.m);
        let nodes = &mut self.nodes;
        let bytes = leaf.bytes();
        nodes.clear();
        let mut text = None;
        let checked = s
            .checker
            .push_hashed_text(leaf, None, |n| nodes.push(n), &mut text)
            .map_err(|f| Failure::new(path, Some(f.index), f.reason))?;
        let h = checked.hash;
        s.last_leaf = Some(h);
        self.tiles.push_leaf_hash(&h, &mut self.done);
        if self.node_tiles {
            for n in nodes.iter() {
                self.tiles.push_completed(n, &mut self.done);
            }
        }
        if !self.done.is_empty() {
            compare(self.bundle, m, &mut self.done)?;
        }
        let view = checked.view();
        let (selected, seq) = (selects(&m.predicate.range, &view), view.seq);
        if selected {
            let leaf = view;
            s.selected += 1;
            if !s.all {
                for p in leaf.commits() {
                    if let Some(c) = commit_hash(&p) {
                        s.selected_commits.insert(c, leaf.seq);
                    }
                }
                s.selected_hashes.insert(leaf.seq, h);
            }
            match &mut s.span {
                None => s.span = Some((leaf.ts.to_string(), leaf.ts.to_string())),
                Some((_, b)) => {
                    b.clear();
                    b.push_str(leaf.ts);
                }
            }
        }
        if selected {
            // The readable views are derived from the verified leaf bytes.
            if let Some(d) = &mut s.derived {
                d.add(text.as_ref(), bytes, seq, &h)?;
            }
            if let Some(a) = &mut s.account {
                let typed = checked
                    .into_leaf()
                    .map_err(|e| Failure::new(path, Some(seq), e.to_string()))?;
                a.add(&typed);
            }
        }
        while let Some((&at, (root, from))) = self.checks.peek() {
            if at > s.checker.size() {
                break;
            }
            if at == s.checker.size() && s.checker.root() != *root {
                return Err(Failure::new(
                    from.clone(),
                    Some(at - 1),
                    format!("root at size {at} differs from the one recomputed from the entries"),
                ));
            }
            self.checks.next();
        }
        Ok(())
    }
}

/// Whether the export's selection covers this leaf (the same rule as
/// `Selection::selects`, on the borrowed view).
fn selects(range: &Selection, leaf: &LeafView<'_>) -> bool {
    match range {
        Selection::All => true,
        Selection::Session { id } => leaf.session.is_some_and(|s| s.id == id),
        Selection::Time { since, until } => leaf.ts >= since.as_str() && leaf.ts < until.as_str(),
    }
}

fn compare(bundle: &Bundle, m: &Manifest, done: &mut Vec<TileFile>) -> Result<(), Failure> {
    for (path, bytes) in done.drain(..) {
        if path.starts_with("tile/entries/") {
            continue; // read and checked above (and not rebuilt by the verifier)
        }
        let got = m.read(bundle, &path)?;
        if got != bytes {
            return Err(Failure::new(
                path,
                None,
                "hash tile differs from the hashes recomputed from the entries",
            ));
        }
    }
    Ok(())
}
