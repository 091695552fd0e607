//! The period section of `stele-verify --report` for a time-range export
//! (docs/review-report.md): the same builder `stele audit report --since`
//! uses on the live log (`account::period`), fed every verified entry of
//! the bundle's tiles (silences and the clock need the entries around the
//! window), with the cosignatures and RFC 3161 tokens this verification
//! checked.

use std::collections::{BTreeMap, BTreeSet};

use stele_audit::clock::ns_of_ts;
use stele_audit::export::layout::{BundleLayout, Selection};
use stele_audit::export::tiles::{entry_bundle_path, split_bundle, TILE_WIDTH};
use stele_audit::leaf::Leaf;

use crate::account::period::{Period, PeriodBuilder, StampLine, Window, DEFAULT_GAP_S};
use crate::account::{SessionAccount, Witnessed};
use crate::manifest::Manifest;
use crate::{Bundle, Report};

/// The period of a time-range tiles export; `None` for other bundles.
pub(crate) fn period(
    bundle: &Bundle,
    m: &Manifest,
    r: &Report,
    sessions: &[SessionAccount],
) -> Option<Period> {
    let p = &m.predicate;
    let (Selection::Time { since, until }, BundleLayout::Tiles) = (&p.range, p.layout) else {
        return None;
    };
    let w = Window {
        since_ns: ns_of_ts(since)?,
        until_ns: ns_of_ts(until)?,
        gap_s: DEFAULT_GAP_S,
    };
    let wanted: BTreeSet<u64> = r
        .cosigned
        .iter()
        .map(|(_, s)| *s)
        .chain(r.timestamps.iter().map(|t| t.size))
        .collect();
    let mut size_ts: BTreeMap<u64, i128> = BTreeMap::new();
    let mut b = PeriodBuilder::new(w.clone());
    let mut last = w.since_ns;
    let mut n = 0;
    while n * TILE_WIDTH < p.tree_size {
        let width = (p.tree_size - n * TILE_WIDTH).min(TILE_WIDTH);
        // Verified already (step 5): read again, digest-checked.
        let bytes = m.read(bundle, &entry_bundle_path(n, width)).ok()?;
        for leaf in split_bundle(&bytes)? {
            let l = Leaf::parse_canonical(leaf).ok()?;
            let t = ns_of_ts(&l.ts)?;
            if wanted.contains(&(l.seq + 1)) {
                size_ts.insert(l.seq + 1, t);
            }
            last = t;
            b.add(&l);
        }
        n += 1;
    }
    let mut period = b.finish(sessions, last);
    let inside = |size: &u64| {
        size_ts
            .get(size)
            .is_some_and(|t| *t >= w.since_ns && *t < w.until_ns)
    };
    period.cosignatures = r
        .cosigned
        .iter()
        .filter(|(_, s)| inside(s))
        .map(|(witness, size)| Witnessed {
            witness: witness.clone(),
            size: *size,
        })
        .collect();
    period.timestamps = r
        .timestamps
        .iter()
        .filter(|t| inside(&t.size))
        .map(|t| StampLine {
            size: t.size,
            gen_time: t.gen_time.clone().unwrap_or_default(),
            tsa: t.tsa.clone().unwrap_or_default(),
            checked: t.checked,
        })
        .collect();
    period.export_command = "this export (verified by stele-verify)".into();
    Some(period)
}
