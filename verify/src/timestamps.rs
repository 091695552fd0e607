//! RFC 3161 timestamp tokens in an export (`timestamps/<size>.tsr`,
//! docs/export-format.md §2): each must stamp a checkpoint in the bundle
//! (the imprint is the SHA-256 of that note with the log's signature line
//! only), checked with or without a TSA certificate; with `--tsa-cert` its signature must verify and chain to the
//! given certificate, and its time (genTime) must be plausible for the
//! checkpoint: not before the newest entry it covers (less
//! [`EARLIEST_SKEW_S`]), not more than [`LATEST_DELAY_S`] after it.

use stele_attest::timestamp::{check_imprint, imprint_of_checkpoint, verify_token};
use stele_audit::export::layout::{timestamp_size, BundleLayout, CHECKPOINTS_DIR, TIMESTAMPS_DIR};
use stele_audit::export::tiles::{entry_bundle_path, split_bundle, TILE_WIDTH};

use crate::manifest::Manifest;
use crate::report::TimestampLine;
use crate::{Bundle, Failure, Options};

/// How far a TSA's time may precede the newest entry it covers (the two
/// clocks disagree a little).
pub const EARLIEST_SKEW_S: i64 = 300;
/// How long after the newest entry it covers a checkpoint may be stamped.
pub const LATEST_DELAY_S: i64 = 24 * 3600;

/// Check every token; the lines for the report.
pub(crate) fn check(
    bundle: &Bundle,
    opts: &Options,
    m: &Manifest,
) -> Result<Vec<TimestampLine>, Failure> {
    let mut out = Vec::new();
    let names: Vec<&String> = m
        .digests
        .keys()
        .filter(|n| n.starts_with(TIMESTAMPS_DIR))
        .collect();
    for name in names {
        let size = timestamp_size(name)
            .ok_or_else(|| Failure::new(name.as_str(), None, "not a timestamps/<size>.tsr name"))?;
        let note = if size == m.predicate.tree_size {
            m.note.clone()
        } else {
            let cp = format!("{CHECKPOINTS_DIR}{size}");
            if !m.predicate.checkpoints.contains(&size) {
                return Err(Failure::new(
                    name.as_str(),
                    None,
                    format!("stamps the checkpoint of size {size}, which is not in the export"),
                ));
            }
            String::from_utf8(m.read(bundle, &cp)?)
                .map_err(|_| Failure::new(cp.clone(), None, "not UTF-8"))?
        };
        let token = m.read(bundle, name)?;
        let fail = |why: String| Failure::new(name.as_str(), size.checked_sub(1), why);
        let digest =
            imprint_of_checkpoint(&note, &opts.log_key).map_err(|e| fail(e.to_string()))?;
        let Some(trust) = &opts.tsa else {
            check_imprint(&token, &digest).map_err(|e| fail(e.to_string()))?;
            out.push(TimestampLine {
                size,
                gen_time: None,
                tsa: None,
                checked: false,
            });
            continue;
        };
        let stamp = verify_token(&token, &digest, trust).map_err(|e| fail(e.to_string()))?;
        if let Some(ts) = newest_entry_time(bundle, m, size)? {
            let at = stele_audit::clock::ns_of_ts(&ts)
                .map(|ns| (ns / 1_000_000_000) as i64)
                .ok_or_else(|| fail(format!("entry time {ts:?} unreadable")))?;
            let d = stamp.gen_time_unix - at;
            if d < -EARLIEST_SKEW_S {
                return Err(fail(format!(
                    "the TSA's time {} is {}s before the newest entry it covers ({ts}): the log's clock was ahead, or the token is for another checkpoint",
                    stamp.gen_time, -d
                )));
            }
            if d > LATEST_DELAY_S {
                return Err(fail(format!(
                    "the TSA's time {} is {}s after the newest entry it covers ({ts}), more than {LATEST_DELAY_S}s: the log's clock was behind, or the checkpoint was stamped long after",
                    stamp.gen_time, d
                )));
            }
        }
        out.push(TimestampLine {
            size,
            gen_time: Some(stamp.gen_time),
            tsa: Some(stamp.tsa),
            checked: true,
        });
    }
    Ok(out)
}

/// The time of entry `size - 1` from the (already verified) entry tiles;
/// `None` in a session bundle, which holds no tiles.
fn newest_entry_time(bundle: &Bundle, m: &Manifest, size: u64) -> Result<Option<String>, Failure> {
    if m.predicate.layout != BundleLayout::Tiles || size == 0 {
        return Ok(None);
    }
    let i = size - 1;
    let n = i / TILE_WIDTH;
    let width = (m.predicate.tree_size - n * TILE_WIDTH).min(TILE_WIDTH);
    let path = entry_bundle_path(n, width);
    let bytes = m.read(bundle, &path)?;
    let leaves = split_bundle(&bytes).ok_or_else(|| Failure::new(path.clone(), None, "broken"))?;
    let leaf = leaves
        .get((i % TILE_WIDTH) as usize)
        .ok_or_else(|| Failure::new(path.clone(), Some(i), "entry missing"))?;
    let view = stele_audit::leaf_view::LeafView::scan(leaf)
        .ok_or_else(|| Failure::new(path.clone(), Some(i), "unreadable entry"))?;
    Ok(Some(view.ts.to_string()))
}
