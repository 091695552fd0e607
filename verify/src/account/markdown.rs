//! The account as Markdown. Text from the log (paths, argv, the task, what
//! an approver was shown) is quoted in code spans and fences sized so that
//! it cannot close them, so it reads as data, never as the report's own
//! structure.

use std::fmt::Write as _;

use super::{Account, PayloadText, Rule, SessionAccount, Source};

/// A code span holding `s` on one line.
pub(super) fn code(s: &str) -> String {
    if s.is_empty() {
        return "—".into();
    }
    let s = s.replace(['\n', '\r'], "⏎");
    let ticks = longest_run(&s, '`') + 1;
    let fence = "`".repeat(ticks);
    format!("{fence} {s} {fence}")
}

/// A short field the format keeps plain (a time, a status, an access):
/// as it is when it is, else quoted like any other text from the log.
pub(super) fn word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '-' | '+' | '_');
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        code(s)
    }
}

fn longest_run(s: &str, c: char) -> usize {
    let (mut best, mut cur) = (0, 0);
    for ch in s.chars() {
        cur = if ch == c { cur + 1 } else { 0 };
        best = best.max(cur);
    }
    best
}

/// A fenced block holding `s` as it is.
fn block(s: &str) -> String {
    let fence = "`".repeat(longest_run(s, '`').max(2) + 1);
    format!("{fence}text\n{}\n{fence}\n", s.trim_end_matches('\n'))
}

fn payload(p: &PayloadText) -> String {
    match p {
        PayloadText::Present(t) => block(t),
        PayloadText::Redacted => "_(erased by a redaction entry)_\n".into(),
        PayloadText::Withheld => "_(not included in this export)_\n".into(),
        PayloadText::None => "_(none recorded)_\n".into(),
    }
}

/// "allow by `p` (layer) — reason".
pub(super) fn rule_text(r: &Rule) -> String {
    let who = if r.policies.is_empty() {
        "no rule (denied by default)".to_string()
    } else {
        r.policies.join(", ")
    };
    let layer = r
        .layer
        .as_deref()
        .map(|l| format!(" [{l}]"))
        .unwrap_or_default();
    let why = r.reason.as_deref().unwrap_or("");
    format!("{} by {}{layer}: {why}", r.effect, who)
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or("—".into(), |v| v.to_string())
}

/// Render the account.
pub fn render(a: &Account) -> String {
    let mut s = String::new();
    let v = &a.verification;
    match v.source {
        Source::Export => {
            let _ = writeln!(s, "# Review of an audit export of {}\n", code(&a.origin));
            let _ = writeln!(
                s,
                "Derived by stele-verify from {} verified entries ({} selected: {}); \
                 nothing here is taken from the exporter's own summary.\n",
                v.entries,
                v.selected,
                code(&a.selection)
            );
        }
        Source::LiveLog => {
            let _ = writeln!(s, "# Review of the audit log {}\n", code(&a.origin));
            let _ = writeln!(
                s,
                "Derived by `stele audit report` from {} entries of the live log, verified in one \
                 read transaction ({} selected: {}); there is no export manifest.\n",
                v.entries,
                v.selected,
                code(&a.selection)
            );
        }
    }
    if let Some(p) = &a.period {
        super::period_render::markdown(&mut s, p);
    }
    for x in &a.sessions {
        session(&mut s, x);
    }
    if !a.redactions.is_empty() {
        let _ = writeln!(s, "## Redactions\n");
        for r in &a.redactions {
            let _ = writeln!(
                s,
                "- #{} {} by {}: {} payload(s) erased — {}",
                r.seq,
                word(&r.ts),
                code(&r.actor),
                r.count,
                code(&r.reason)
            );
        }
        s.push('\n');
    }
    if !a.retention.is_empty() {
        let _ = writeln!(s, "## Retention, legal holds and archival\n");
        for r in &a.retention {
            let _ = writeln!(
                s,
                "- #{} {} {} by {}: {}",
                r.seq,
                word(&r.ts),
                code(&r.kind),
                code(&r.actor),
                code(&r.detail)
            );
        }
        s.push('\n');
    }
    let _ = writeln!(s, "## Verification\n");
    let _ = writeln!(s, "- result: {}", v.result);
    let _ = writeln!(s, "- entries: {} (root `{}`)", v.entries, v.root);
    let _ = writeln!(s, "- signed checkpoints verified: {:?}", v.checkpoints);
    for w in &v.witnesses {
        let _ = writeln!(s, "- witness {} cosigned size {}", code(&w.witness), w.size);
    }
    match v.source {
        Source::Export => {
            let _ = writeln!(
                s,
                "- payloads: {} verified, {} redacted, {} withheld by the exporter",
                v.payloads_verified, v.payloads_redacted, v.payloads_withheld
            );
            let _ = writeln!(s, "- inclusion proofs verified: {}", v.proofs);
            let _ = writeln!(
                s,
                "- SUMMARY.md and OCSF view recomputed and matched: {}",
                if v.derived_files_match { "yes" } else { "no" }
            );
        }
        Source::LiveLog => {
            let _ = writeln!(
                s,
                "- payloads: {} verified, {} redacted",
                v.payloads_verified, v.payloads_redacted
            );
        }
    }
    for u in &v.unchecked {
        let _ = writeln!(s, "- not checked: {u}");
    }
    if let Some(e) = &v.exporter {
        let _ = writeln!(s, "- exporter: {}", code(e));
    }
    if let Some(f) = &v.log_file {
        let _ = writeln!(s, "- live log: {}", code(f));
    }
    s
}

fn session(s: &mut String, x: &SessionAccount) {
    let _ = writeln!(s, "## Session {}\n", code(&x.id));
    let _ = writeln!(
        s,
        "- principal: {} (teams: {})",
        code(&x.principal),
        if x.teams.is_empty() {
            "none".into()
        } else {
            x.teams
                .iter()
                .map(|t| code(t))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    if let Some(a) = &x.authentication {
        let _ = writeln!(s, "- authentication: {}", code(a));
    }
    if let Some(c) = &x.client {
        let _ = writeln!(s, "- client: {}", code(&c.to_string()));
    }
    let _ = writeln!(
        s,
        "- started {}, {} ({} entries)",
        word(&x.started),
        match (&x.ended, &x.end_status) {
            (Some(t), Some(st)) => format!("ended {}: {}", word(t), word(st)),
            _ => "NOT ENDED".into(),
        },
        x.entries
    );
    let _ = writeln!(
        s,
        "- network: {}; sandbox: {}; policy bundle: {}",
        code(&opt(&x.network)),
        code(&opt(&x.sandbox)),
        code(&opt(&x.policy_bundle))
    );
    if let Some(d) = &x.end_detail {
        let _ = writeln!(s, "- outcome: {}", code(d));
    }
    let _ = writeln!(s, "\n### Task\n\n{}", payload(&x.task));
    let _ = writeln!(s, "### Models ({})\n", x.models.len());
    for m in &x.models {
        let _ = writeln!(
            s,
            "- {} via {} at {}: {} request(s) ({} denied), {} tokens in, {} out",
            code(&m.model),
            code(&opt(&m.provider)),
            code(&opt(&m.endpoint)),
            m.requests,
            m.denied,
            m.tokens_in,
            m.tokens_out
        );
    }
    let _ = writeln!(s, "\n### Files read and written ({})\n", x.files.len());
    for f in &x.files {
        let _ = writeln!(
            s,
            "- #{} {} **{}** {} — read {} B, written {} B{} — {}",
            f.seq,
            word(&f.ts),
            word(&f.access),
            code(&f.path),
            opt(&f.bytes_read),
            opt(&f.bytes_written),
            f.sha256_after_write
                .as_deref()
                .map(|h| format!(", SHA-256 after write `{h}`"))
                .unwrap_or_default(),
            code(&rule_text(&f.rule))
        );
    }
    let _ = writeln!(s, "\n### Commands ({})\n", x.commands.len());
    for c in &x.commands {
        let _ = writeln!(
            s,
            "- #{} {} {} in {}: exit {}, {} ms, {} — {}",
            c.seq,
            word(&c.ts),
            code(&format!("{} {:?}", opt(&c.program), c.argv)),
            code(&opt(&c.cwd)),
            opt(&c.exit),
            opt(&c.duration_ms),
            opt(&c.status),
            code(&rule_text(&c.rule))
        );
    }
    let _ = writeln!(s, "\n### Connections ({})\n", x.connections.len());
    for c in &x.connections {
        let _ = writeln!(
            s,
            "- #{} {} {}:{} ({}) sent {} B, received {} B — {}",
            c.seq,
            word(&c.ts),
            code(&opt(&c.host)),
            opt(&c.port),
            opt(&c.scheme),
            opt(&c.bytes_out),
            opt(&c.bytes_in),
            code(&rule_text(&c.rule))
        );
    }
    if !x.mcp_calls.is_empty() {
        let _ = writeln!(s, "\n### MCP calls ({})\n", x.mcp_calls.len());
        for c in &x.mcp_calls {
            let _ = writeln!(
                s,
                "- #{} {} {} / {}: {} — {}",
                c.seq,
                word(&c.ts),
                code(&opt(&c.server)),
                code(&opt(&c.tool)),
                opt(&c.status),
                code(&rule_text(&c.rule))
            );
        }
    }
    let _ = writeln!(s, "\n### Denials ({})\n", x.denials.len());
    for d in &x.denials {
        let _ = writeln!(
            s,
            "- #{} {} {} {} — {}",
            d.seq,
            word(&d.ts),
            d.kind,
            code(&d.target),
            code(&rule_text(&d.rule))
        );
    }
    let _ = writeln!(s, "\n### Approvals ({})\n", x.approvals.len());
    for a in &x.approvals {
        let _ = writeln!(
            s,
            "- #{} {}: {} asked for {} under {}\n  - answer: **{}** by {} (method {}{}) at {}\n  - shown (SHA-256 {}):\n",
            a.seq,
            word(&a.ts),
            code(&a.requester),
            code(&a.target),
            code(&rule_text(&a.rule)),
            a.answer,
            code(&opt(&a.approver)),
            code(&opt(&a.method)),
            a.detail.as_deref().map(|d| format!(", {}", code(d))).unwrap_or_default(),
            opt(&a.answered),
            opt(&a.shown_sha256)
        );
        let _ = writeln!(s, "{}", payload(&a.shown));
    }
    let _ = writeln!(s, "### Timeline ({} entries)\n", x.entries);
    for t in &x.timeline {
        let _ = writeln!(
            s,
            "- #{} {} {} {} {}",
            t.seq,
            word(&t.ts),
            t.kind,
            code(&t.target),
            t.outcome
        );
    }
    if x.entries as usize > x.timeline.len() {
        let _ = writeln!(s, "- … and {} more", x.entries as usize - x.timeline.len());
    }
    s.push('\n');
}
