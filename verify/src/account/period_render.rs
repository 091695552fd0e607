//! The period section (`super::period::Period`) in Markdown and HTML,
//! first in the report: the findings, then each question an auditor asks
//! of a period, with "none" said when there is nothing.

use std::fmt::Write as _;

use super::html::{esc, table};
use super::markdown::{code, word};
use super::period::Period;

/// Markdown.
pub(super) fn markdown(s: &mut String, p: &Period) {
    let _ = writeln!(
        s,
        "## Period {} to {}\n\n{} entries in the period. The signed export that backs this \
         report: `{}` (verify it with `stele-verify`).\n",
        word(&p.since),
        word(&p.until),
        p.entries,
        p.export_command
    );
    let _ = writeln!(s, "### Findings\n");
    if p.findings.is_empty() {
        let _ = writeln!(
            s,
            "None: no logging gap over {} s while the log was open, no clock step, the clock \
             synchronised at every recorded state, no alteration found.\n",
            p.gap_threshold_s
        );
    }
    for f in &p.findings {
        let _ = writeln!(s, "- **{}**", code(f));
    }
    if !p.findings.is_empty() {
        s.push('\n');
    }
    let _ = writeln!(s, "### Denials by rule\n");
    list(
        s,
        p.denials_by_rule
            .iter()
            .map(|r| format!("{} × {} (entries {:?})", r.count, code(&r.rule), r.entries)),
    );
    let _ = writeln!(s, "### Approvals by approver\n");
    list(
        s,
        p.approvals_by_approver.iter().map(|a| {
            format!(
                "{}: {} granted, {} refused (by {})",
                code(&a.approver),
                a.granted,
                a.denied,
                a.methods.join(", ")
            )
        }),
    );
    if p.approvals_unanswered > 0 {
        let _ = writeln!(s, "Unanswered: {}\n", p.approvals_unanswered);
    }
    let _ = writeln!(s, "### Payload erasures (redactions, retention expiries)\n");
    list(
        s,
        p.erasures.iter().map(|e| {
            format!(
                "#{} {} {} by {}: {} payload(s) — {}",
                e.seq,
                word(&e.ts),
                word(&e.kind),
                code(&e.actor),
                e.count,
                code(&e.reason)
            )
        }),
    );
    let _ = writeln!(s, "### Logging started and stopped\n");
    list(
        s,
        p.logging.iter().map(|l| {
            format!(
                "#{} {} {} on {}",
                l.seq,
                word(&l.ts),
                word(&l.kind),
                code(&l.host)
            )
        }),
    );
    let _ = writeln!(s, "### Silences over {} s\n", p.gap_threshold_s);
    list(
        s,
        p.gaps.iter().map(|g| {
            format!(
                "{} to {}: {} s, {}",
                word(&g.from),
                word(&g.to),
                g.seconds,
                g.state
            )
        }),
    );
    let _ = writeln!(s, "### Clock\n");
    list(
        s,
        p.clock_states
            .iter()
            .map(|c| {
                format!(
                    "#{} {} ({}): source {}, {}, state {}, max error {} µs",
                    c.seq,
                    word(&c.ts),
                    word(&c.reason),
                    code(&c.source),
                    if c.synced {
                        "synchronised"
                    } else {
                        "NOT synchronised"
                    },
                    word(&c.state),
                    c.maxerror_us
                )
            })
            .chain(p.clock_steps.iter().map(|c| {
                format!(
                    "#{} STEP {} by {} µs ({}): {} → {}; entries carried {}",
                    c.seq,
                    c.direction,
                    c.by_us,
                    c.across,
                    word(&c.before),
                    word(&c.reading),
                    word(&c.carried)
                )
            })),
    );
    let _ = writeln!(s, "### Witness cosignatures and timestamps\n");
    list(
        s,
        p.cosignatures
            .iter()
            .map(|w| format!("witness {} cosigned size {}", code(&w.witness), w.size))
            .chain(p.timestamps.iter().map(|t| {
                format!(
                    "checkpoint {} timestamped {} by {} (RFC 3161, {})",
                    t.size,
                    word(&t.gen_time),
                    code(&t.tsa),
                    if t.checked {
                        "verified"
                    } else {
                        "stored, verified on the export by stele-verify --tsa-cert"
                    }
                )
            })),
    );
}

fn list(s: &mut String, items: impl Iterator<Item = String>) {
    let mut any = false;
    for i in items {
        any = true;
        let _ = writeln!(s, "- {i}");
    }
    if !any {
        s.push_str("- none\n");
    }
    s.push('\n');
}

/// HTML.
pub(super) fn html(s: &mut String, p: &Period) {
    let _ = writeln!(
        s,
        "<h2>Period {} to {}</h2>\n<p>{} entries in the period. The signed export that backs this \
         report: <code>{}</code> (verify it with <code>stele-verify</code>).</p>",
        esc(&p.since),
        esc(&p.until),
        p.entries,
        esc(&p.export_command)
    );
    let _ = writeln!(s, "<h3>Findings</h3>");
    if p.findings.is_empty() {
        let _ = writeln!(
            s,
            "<p class=\"ok\">None: no logging gap over {} s while the log was open, no clock step, \
             the clock synchronised at every recorded state, no alteration found.</p>",
            p.gap_threshold_s
        );
    } else {
        s.push_str("<ul id=\"findings\">");
        for f in &p.findings {
            let _ = write!(s, "<li class=\"deny\">{}</li>", esc(f));
        }
        s.push_str("</ul>\n");
    }
    let _ = writeln!(s, "<h3>Denials by rule</h3>");
    table(
        s,
        "denials-by-rule",
        &["rule", "denials", "first entries"],
        p.denials_by_rule
            .iter()
            .map(|r| {
                vec![
                    esc(&r.rule),
                    r.count.to_string(),
                    esc(&format!("{:?}", r.entries)),
                ]
            })
            .collect(),
    );
    let _ = writeln!(s, "<h3>Approvals by approver</h3>");
    table(
        s,
        "approvals-by-approver",
        &["approver", "granted", "refused", "how"],
        p.approvals_by_approver
            .iter()
            .map(|a| {
                vec![
                    esc(&a.approver),
                    a.granted.to_string(),
                    a.denied.to_string(),
                    esc(&a.methods.join(", ")),
                ]
            })
            .collect(),
    );
    let _ = writeln!(
        s,
        "<h3>Payload erasures (redactions, retention expiries)</h3>"
    );
    table(
        s,
        "erasures",
        &["entry", "time", "kind", "by", "payloads", "why"],
        p.erasures
            .iter()
            .map(|e| {
                vec![
                    e.seq.to_string(),
                    esc(&e.ts),
                    esc(&e.kind),
                    esc(&e.actor),
                    e.count.to_string(),
                    esc(&e.reason),
                ]
            })
            .collect(),
    );
    let _ = writeln!(s, "<h3>Logging started and stopped</h3>");
    table(
        s,
        "logging",
        &["entry", "time", "event", "host"],
        p.logging
            .iter()
            .map(|l| vec![l.seq.to_string(), esc(&l.ts), esc(&l.kind), esc(&l.host)])
            .collect(),
    );
    let _ = writeln!(s, "<h3>Silences over {} s</h3>", p.gap_threshold_s);
    table(
        s,
        "gaps",
        &["from", "to", "seconds", "state"],
        p.gaps
            .iter()
            .map(|g| {
                vec![
                    esc(&g.from),
                    esc(&g.to),
                    g.seconds.to_string(),
                    esc(&g.state),
                ]
            })
            .collect(),
    );
    let _ = writeln!(s, "<h3>Clock</h3>");
    table(
        s,
        "clock",
        &[
            "entry",
            "time",
            "why",
            "source",
            "synchronised",
            "state",
            "max error µs",
        ],
        p.clock_states
            .iter()
            .map(|c| {
                vec![
                    c.seq.to_string(),
                    esc(&c.ts),
                    esc(&c.reason),
                    esc(&c.source),
                    if c.synced {
                        "yes".into()
                    } else {
                        "<span class=\"deny\">NO</span>".into()
                    },
                    esc(&c.state),
                    c.maxerror_us.to_string(),
                ]
            })
            .collect(),
    );
    table(
        s,
        "clock-steps",
        &[
            "entry",
            "direction",
            "by µs",
            "across",
            "before",
            "reading",
            "entries carried",
        ],
        p.clock_steps
            .iter()
            .map(|c| {
                vec![
                    c.seq.to_string(),
                    esc(&c.direction),
                    c.by_us.to_string(),
                    esc(&c.across),
                    esc(&c.before),
                    esc(&c.reading),
                    esc(&c.carried),
                ]
            })
            .collect(),
    );
    let _ = writeln!(s, "<h3>Witness cosignatures and timestamps</h3>");
    table(
        s,
        "cosignatures",
        &["witness", "size"],
        p.cosignatures
            .iter()
            .map(|w| vec![esc(&w.witness), w.size.to_string()])
            .collect(),
    );
    table(
        s,
        "timestamps",
        &["checkpoint size", "TSA time", "TSA", "checked"],
        p.timestamps
            .iter()
            .map(|t| {
                vec![
                    t.size.to_string(),
                    esc(&t.gen_time),
                    esc(&t.tsa),
                    if t.checked {
                        "verified".into()
                    } else {
                        "stored (checked on the export)".into()
                    },
                ]
            })
            .collect(),
    );
}
