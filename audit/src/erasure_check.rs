//! The rules of erasure that need the entry that *made* each erased payload,
//! checked once every leaf is: no payload is erased (by `redaction` or
//! `payload.expiry`) while a legal hold in force covers it, and an expiry
//! names only payloads made before its own cut-off (`data.before`). Shared
//! by both verifiers; each supplies the maker's attributes from where it
//! reads entries (the database, an export's entry bundles).

use crate::check::{CheckMap, LeafChecker, LeafFailure};
use crate::holds::EntryAttrs;
use crate::merkle::Hash;
use crate::payload::commit_text;

impl LeafChecker {
    /// Check every erasure against the holds in force when it was written
    /// and against its expiry's cut-off. `committed` is
    /// [`LeafChecker::committed`]; `attrs(seq)` reads entry `seq` (`None`
    /// when the source does not hold it: an export that selected part of
    /// the log, whose report says so). Only erasures that a hold or a
    /// cut-off could concern read their maker, so a log without holds or
    /// expiries costs nothing here.
    pub fn check_erasures(
        &self,
        committed: &CheckMap<Hash, u64>,
        mut attrs: impl FnMut(u64) -> Result<Option<EntryAttrs>, String>,
    ) -> Result<(), LeafFailure> {
        if self.holds.holds.is_empty() && self.expiries.is_empty() {
            return Ok(());
        }
        let cutoff: CheckMap<u64, &str> = self
            .expiries
            .iter()
            .map(|e| (e.seq, e.before.as_str()))
            .collect();
        let mut todo: Vec<(u64, Hash)> = self
            .redacted_by
            .iter()
            .filter(|(_, r)| cutoff.contains_key(r) || self.holds.any_active_at(**r))
            .map(|(c, r)| (*r, *c))
            .collect();
        // The first problem in index order is the one reported.
        todo.sort();
        for (r, c) in todo {
            let fail = |reason: String| LeafFailure { index: r, reason };
            // A resumed checker has not seen commitments made before it.
            let Some(&maker) = committed.get(&c) else {
                continue;
            };
            let Some(a) = attrs(maker).map_err(|e| fail(format!("entry {maker}: {e}")))? else {
                continue;
            };
            if let Some(h) = self.holds.holding_at(r, &a) {
                return Err(fail(format!(
                    "payload {} of entry {maker} was erased while legal hold {} ({}) covered it",
                    commit_text(&c),
                    h.id,
                    h.scope
                )));
            }
            if let Some(before) = cutoff.get(&r) {
                if a.ts.as_str() >= *before {
                    return Err(fail(format!(
                        "payload.expiry names payload {} of entry {maker} made at {}, not before its cut-off {before}",
                        commit_text(&c),
                        a.ts
                    )));
                }
            }
        }
        Ok(())
    }
}
