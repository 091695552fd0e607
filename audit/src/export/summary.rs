//! `SUMMARY.md`: what a person reads first. Derived from the leaves; every
//! statement in it can be checked against them.

use std::fmt::Write as _;

use crate::check::CheckMap;
use crate::event::{Effect, EventKind};
use crate::leaf::Leaf;
use crate::leaf_view::{JsonStr, LeafText};

/// Most items listed per section (the rest are counted).
const MAX_LISTED: usize = 200;

/// A session as the summary lists it.
#[derive(Debug, Clone)]
struct SessionLine {
    principal: String,
    first: u64,
    last: u64,
    entries: u64,
    ended: bool,
}

/// Collects the summary while selected leaves stream past. Counting is
/// done on borrowed text ([`LeafText`]) without allocating; only listed
/// entries (denials, approvals, redactions) are formatted.
#[derive(Debug)]
pub struct SummaryBuilder {
    /// Entries per kind, by `EventKind as usize`.
    kinds: [u64; EventKind::ALL.len()],
    principals: CheckMap<String, u64>,
    sessions: CheckMap<String, SessionLine>,
    denials: Vec<String>,
    denials_total: usize,
    approvals: Vec<String>,
    approvals_total: usize,
    redactions: Vec<String>,
    selected: u64,
    span: Option<(String, String)>,
}

// By hand: `Default` for arrays stops at 32 elements.
impl Default for SummaryBuilder {
    fn default() -> Self {
        Self {
            kinds: [0; EventKind::ALL.len()],
            principals: CheckMap::default(),
            sessions: CheckMap::default(),
            denials: Vec::new(),
            denials_total: 0,
            approvals: Vec::new(),
            approvals_total: 0,
            redactions: Vec::new(),
            selected: 0,
            span: None,
        }
    }
}

fn target_text(l: &LeafText<'_>) -> String {
    let Some(t) = &l.target else {
        return String::new();
    };
    [t.tool, t.path, t.program, t.host, t.model]
        .iter()
        .filter_map(|v| v.map(JsonStr::text))
        .collect::<Vec<_>>()
        .join(" ")
}

impl SummaryBuilder {
    /// Add a selected leaf.
    pub fn add(&mut self, l: &Leaf) {
        self.add_text(&LeafText::of(l));
    }

    /// Add a selected leaf, read as borrowed text (the verifier reads it
    /// from the leaf bytes with [`LeafText::scan`]).
    pub fn add_text(&mut self, l: &LeafText<'_>) {
        self.selected += 1;
        if let Some(n) = self.kinds.get_mut(l.kind as usize) {
            *n += 1;
        }
        let principal = l.actor.principal.text();
        match self.principals.get_mut(principal.as_ref()) {
            Some(n) => *n += 1,
            None => {
                self.principals.insert(principal.clone().into_owned(), 1);
            }
        }
        let ts = l.ts.text();
        match &mut self.span {
            None => self.span = Some((ts.to_string(), ts.to_string())),
            Some((_, last)) => {
                last.clear();
                last.push_str(&ts);
            }
        }
        if let Some(id) = l.session {
            let id = id.text();
            let ended = matches!(
                l.kind,
                EventKind::SessionEnd | EventKind::SessionInterrupted
            );
            match self.sessions.get_mut(id.as_ref()) {
                Some(s) => {
                    s.last = l.seq;
                    s.entries += 1;
                    s.ended = ended;
                }
                None => {
                    self.sessions.insert(
                        id.into_owned(),
                        SessionLine {
                            principal: principal.clone().into_owned(),
                            first: l.seq,
                            last: l.seq,
                            entries: 1,
                            ended,
                        },
                    );
                }
            }
        }
        let denied = l.decision.is_some_and(|d| d.effect == Effect::Deny);
        let approval = matches!(
            l.kind,
            EventKind::ApprovalRequest | EventKind::ApprovalGrant | EventKind::ApprovalDeny
        );
        let redaction = l.kind == EventKind::Redaction;
        if !(denied || approval || redaction) {
            return;
        }
        let line = format!(
            "- #{} {} {} {} {}",
            l.seq,
            ts,
            principal,
            l.kind,
            target_text(l)
        );
        if denied {
            self.denials_total += 1;
            if self.denials.len() < MAX_LISTED {
                let why = l
                    .decision
                    .and_then(|d| d.reason)
                    .map(JsonStr::text)
                    .unwrap_or_default();
                self.denials.push(format!("{line} — {why}"));
            }
        }
        if approval {
            self.approvals_total += 1;
            if self.approvals.len() < MAX_LISTED {
                self.approvals.push(line.clone());
            }
        }
        if redaction {
            let reason = l.data_str("reason").unwrap_or_default();
            self.redactions.push(format!("{line} — {reason}"));
        }
    }

    /// The Markdown text.
    pub fn render(&self, origin: &str, tree_size: u64, selection: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Audit export of {origin}\n");
        let _ = writeln!(
            s,
            "Selection: {selection}. Log size: {tree_size} entries; {} selected.",
            self.selected
        );
        if let Some((a, b)) = &self.span {
            let _ = writeln!(s, "Time span of the selection: {a} to {b}.");
        }
        let _ = writeln!(s, "\nThis summary is derived from the signed entries; `VERIFY.md` says how to check them.\n");
        let _ = writeln!(s, "## Sessions ({})\n", self.sessions.len());
        let mut sessions: Vec<(&String, &SessionLine)> = self.sessions.iter().collect();
        sessions.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (id, x) in sessions.into_iter().take(MAX_LISTED) {
            let state = if x.ended { "ended" } else { "NOT ENDED" };
            let _ = writeln!(
                s,
                "- {id}: {}, entries #{}..#{} ({} in selection), {state}",
                x.principal, x.first, x.last, x.entries
            );
        }
        let _ = writeln!(s, "\n## Who\n");
        let mut principals: Vec<(&String, &u64)> = self.principals.iter().collect();
        principals.sort_unstable();
        for (p, n) in principals {
            let _ = writeln!(s, "- {p}: {n} entries");
        }
        let _ = writeln!(s, "\n## What\n");
        let mut kinds: Vec<(&str, u64)> = EventKind::ALL
            .iter()
            .filter_map(|k| {
                let n = self.kinds.get(*k as usize).copied().unwrap_or(0);
                (n > 0).then_some((k.as_str(), n))
            })
            .collect();
        kinds.sort_unstable();
        for (k, n) in kinds {
            let _ = writeln!(s, "- {k}: {n}");
        }
        for (title, list, total) in [
            ("Denials", &self.denials, self.denials_total),
            ("Approvals", &self.approvals, self.approvals_total),
            ("Redactions", &self.redactions, self.redactions.len()),
        ] {
            let _ = writeln!(s, "\n## {title} ({total})\n");
            for l in list {
                let _ = writeln!(s, "{l}");
            }
            if total > list.len() {
                let _ = writeln!(s, "- … and {} more", total - list.len());
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_index_their_counts() {
        for (i, k) in EventKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "{k}");
        }
    }
}
