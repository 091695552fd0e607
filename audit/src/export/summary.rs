//! `SUMMARY.md`: what a person reads first. Derived from the leaves; every
//! statement in it can be checked against them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::event::{Effect, EventKind};
use crate::leaf::Leaf;

/// Most items listed per section (the rest are counted).
const MAX_LISTED: usize = 200;

/// Collects the summary while selected leaves stream past.
#[derive(Debug, Default)]
pub struct SummaryBuilder {
    kinds: BTreeMap<&'static str, u64>,
    principals: BTreeMap<String, u64>,
    sessions: BTreeMap<String, (String, u64, u64, u64, bool)>,
    denials: Vec<String>,
    denials_total: usize,
    approvals: Vec<String>,
    approvals_total: usize,
    redactions: Vec<String>,
    selected: u64,
    span: Option<(String, String)>,
}

fn target_text(l: &Leaf) -> String {
    let Some(t) = &l.target else {
        return String::new();
    };
    [&t.tool, &t.path, &t.program, &t.host, &t.model]
        .iter()
        .filter_map(|v| v.as_deref())
        .collect::<Vec<_>>()
        .join(" ")
}

impl SummaryBuilder {
    /// Add a selected leaf.
    pub fn add(&mut self, l: &Leaf) {
        self.selected += 1;
        *self.kinds.entry(l.kind.as_str()).or_default() += 1;
        *self
            .principals
            .entry(l.actor.principal.clone())
            .or_default() += 1;
        match &mut self.span {
            None => self.span = Some((l.ts.clone(), l.ts.clone())),
            Some((_, last)) => last.clone_from(&l.ts),
        }
        if let Some(s) = &l.session {
            let e = self.sessions.entry(s.id.clone()).or_insert((
                l.actor.principal.clone(),
                l.seq,
                l.seq,
                0,
                false,
            ));
            e.2 = l.seq;
            e.3 += 1;
            e.4 = matches!(
                l.kind,
                EventKind::SessionEnd | EventKind::SessionInterrupted
            );
        }
        let line = format!(
            "- #{} {} {} {} {}",
            l.seq,
            l.ts,
            l.actor.principal,
            l.kind,
            target_text(l)
        );
        if l.decision
            .as_ref()
            .is_some_and(|d| d.effect == Effect::Deny)
        {
            self.denials_total += 1;
            if self.denials.len() < MAX_LISTED {
                let why = l
                    .decision
                    .as_ref()
                    .and_then(|d| d.reason.clone())
                    .unwrap_or_default();
                self.denials.push(format!("{line} — {why}"));
            }
        }
        if matches!(
            l.kind,
            EventKind::ApprovalRequest | EventKind::ApprovalGrant | EventKind::ApprovalDeny
        ) {
            self.approvals_total += 1;
            if self.approvals.len() < MAX_LISTED {
                self.approvals.push(line.clone());
            }
        }
        if l.kind == EventKind::Redaction {
            let reason = l
                .data
                .as_ref()
                .and_then(|d| d.get("reason"))
                .and_then(|r| r.as_str())
                .unwrap_or("");
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
        for (id, (who, first, last, n, ended)) in self.sessions.iter().take(MAX_LISTED) {
            let state = if *ended { "ended" } else { "NOT ENDED" };
            let _ = writeln!(
                s,
                "- {id}: {who}, entries #{first}..#{last} ({n} in selection), {state}"
            );
        }
        let _ = writeln!(s, "\n## Who\n");
        for (p, n) in &self.principals {
            let _ = writeln!(s, "- {p}: {n} entries");
        }
        let _ = writeln!(s, "\n## What\n");
        for (k, n) in &self.kinds {
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
