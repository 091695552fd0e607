//! The account as one self-contained HTML file: inline style, no script,
//! no external resource (a Content-Security-Policy forbids loading any), so
//! it opens offline in any browser. Every text from the log is escaped.

use std::fmt::Write as _;

use super::markdown::rule_text;
use super::{Account, PayloadText, SessionAccount, Source};

/// HTML-escape `s` (text and attribute values).
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    esc(&v.as_ref().map_or("—".into(), |v| v.to_string()))
}

fn payload(p: &PayloadText) -> String {
    match p {
        PayloadText::Present(t) => format!("<pre class=\"shown\">{}</pre>", esc(t)),
        PayloadText::Redacted => "<p class=\"gap\">(erased by a redaction entry)</p>".into(),
        PayloadText::Withheld => "<p class=\"gap\">(not included in this export)</p>".into(),
        PayloadText::None => "<p class=\"gap\">(none recorded)</p>".into(),
    }
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#111}\
h1{font-size:1.5em}h2{border-bottom:2px solid #333;margin-top:2em}h3{margin-top:1.5em}\
table{border-collapse:collapse;width:100%;margin:.5em 0}td,th{border:1px solid #bbb;padding:.25em .5em;vertical-align:top;text-align:left;overflow-wrap:anywhere}\
th{background:#eee}code,pre{font-family:ui-monospace,monospace;font-size:.92em}\
pre.shown{background:#f6f6f0;border:1px solid #cc9;padding:.6em;white-space:pre-wrap}\
.deny{color:#a00;font-weight:bold}.ask{color:#a60;font-weight:bold}.allow{color:#060}.gap{color:#666;font-style:italic}\
.ok{background:#e8f5e8;border:1px solid #6a6;padding:.5em}";

fn effect(e: &str) -> String {
    format!("<span class=\"{}\">{}</span>", esc(e), esc(e))
}

fn answer(a: &str) -> String {
    let class = match a {
        "granted" => "allow",
        "denied" => "deny",
        _ => "ask",
    };
    format!("<span class=\"{class}\">{}</span>", esc(a))
}

pub(super) fn table(s: &mut String, id: &str, head: &[&str], rows: Vec<Vec<String>>) {
    let _ = write!(s, "<table id=\"{id}\"><tr>");
    for h in head {
        let _ = write!(s, "<th>{h}</th>");
    }
    s.push_str("</tr>\n");
    if rows.is_empty() {
        let _ = writeln!(
            s,
            "<tr><td colspan=\"{}\" class=\"gap\">none</td></tr>",
            head.len()
        );
    }
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{c}</td>");
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n");
}

/// Render the account.
pub fn render(a: &Account) -> String {
    let mut s = String::new();
    let v = &a.verification;
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <title>Review of {}</title><style>{STYLE}</style></head><body>\n",
        esc(&a.origin)
    );
    let (what, by) = match v.source {
        Source::Export => (
            "an audit export of",
            "stele-verify from the verified entries and payloads, not from the exporter's summary",
        ),
        Source::LiveLog => (
            "the audit log",
            "<code>stele audit report</code> from the entries and payloads of the live log, \
             verified in one read transaction (there is no export manifest)",
        ),
    };
    let _ = writeln!(
        s,
        "<h1>Review of {what} <code>{}</code></h1>\n<p class=\"ok\">Verified: {} entries \
         (root <code>{}</code>), {} selected ({}). Everything below is derived by {by}.</p>",
        esc(&a.origin),
        v.entries,
        esc(&v.root),
        v.selected,
        esc(&a.selection)
    );
    if let Some(p) = &a.period {
        super::period_render::html(&mut s, p);
    }
    for x in &a.sessions {
        session(&mut s, x);
    }
    let _ = writeln!(s, "<h2>Redactions</h2>");
    table(
        &mut s,
        "redactions",
        &["entry", "time", "by", "payloads", "reason"],
        a.redactions
            .iter()
            .map(|r| {
                vec![
                    r.seq.to_string(),
                    esc(&r.ts),
                    esc(&r.actor),
                    r.count.to_string(),
                    esc(&r.reason),
                ]
            })
            .collect(),
    );
    let _ = writeln!(s, "<h2>Retention, legal holds and archival</h2>");
    table(
        &mut s,
        "retention",
        &["entry", "time", "kind", "by", "what"],
        a.retention
            .iter()
            .map(|r| {
                vec![
                    r.seq.to_string(),
                    esc(&r.ts),
                    esc(&r.kind),
                    esc(&r.actor),
                    esc(&r.detail),
                ]
            })
            .collect(),
    );
    let _ = writeln!(s, "<h2>Verification</h2><ul>");
    let mut li = |t: String| {
        let _ = writeln!(s, "<li>{t}</li>");
    };
    li(format!("result: {}", esc(v.result)));
    li(format!(
        "signed checkpoints verified at sizes {:?}",
        v.checkpoints
    ));
    for w in &v.witnesses {
        li(format!(
            "witness <code>{}</code> cosigned size {}",
            esc(&w.witness),
            w.size
        ));
    }
    match v.source {
        Source::Export => {
            li(format!(
                "payloads: {} verified, {} redacted, {} withheld by the exporter",
                v.payloads_verified, v.payloads_redacted, v.payloads_withheld
            ));
            li(format!("inclusion proofs verified: {}", v.proofs));
            li(format!(
                "SUMMARY.md and OCSF view recomputed and matched: {}",
                if v.derived_files_match { "yes" } else { "no" }
            ));
        }
        Source::LiveLog => li(format!(
            "payloads: {} verified, {} redacted",
            v.payloads_verified, v.payloads_redacted
        )),
    }
    for u in &v.unchecked {
        li(format!("not checked: {}", esc(u)));
    }
    if let Some(e) = &v.exporter {
        li(format!("exporter: <code>{}</code>", esc(e)));
    }
    if let Some(f) = &v.log_file {
        li(format!("live log: <code>{}</code>", esc(f)));
    }
    s.push_str("</ul></body></html>\n");
    s
}

fn session(s: &mut String, x: &SessionAccount) {
    let _ = writeln!(s, "<h2>Session <code>{}</code></h2>", esc(&x.id));
    let _ = writeln!(
        s,
        "<table id=\"session\"><tr><th>principal</th><td>{} (teams: {})</td></tr>\
         <tr><th>authentication</th><td>{}</td></tr><tr><th>client</th><td>{}</td></tr>\
         <tr><th>started</th><td>{}</td></tr><tr><th>ended</th><td>{} {}</td></tr>\
         <tr><th>outcome</th><td>{}</td></tr><tr><th>network / sandbox</th><td>{} / {}</td></tr>\
         <tr><th>policy bundle</th><td><code>{}</code></td></tr><tr><th>entries</th><td>{}</td></tr></table>",
        esc(&x.principal),
        esc(&x.teams.join(", ")),
        opt(&x.authentication),
        opt(&x.client.as_ref().map(|c| c.to_string())),
        esc(&x.started),
        opt(&x.ended),
        opt(&x.end_status),
        opt(&x.end_detail),
        opt(&x.network),
        opt(&x.sandbox),
        opt(&x.policy_bundle),
        x.entries
    );
    let _ = writeln!(
        s,
        "<h3>Task</h3><div id=\"task\">{}</div>",
        payload(&x.task)
    );
    let _ = writeln!(s, "<h3>Models</h3>");
    table(
        s,
        "models",
        &[
            "model",
            "provider",
            "endpoint",
            "requests",
            "denied",
            "tokens in",
            "tokens out",
        ],
        x.models
            .iter()
            .map(|m| {
                vec![
                    format!("<code>{}</code>", esc(&m.model)),
                    opt(&m.provider),
                    opt(&m.endpoint),
                    m.requests.to_string(),
                    m.denied.to_string(),
                    m.tokens_in.to_string(),
                    m.tokens_out.to_string(),
                ]
            })
            .collect(),
    );
    let _ = writeln!(s, "<h3>Files read and written</h3>");
    table(
        s,
        "files",
        &[
            "entry",
            "time",
            "access",
            "path",
            "bytes read",
            "bytes written",
            "SHA-256 after write",
            "decision",
        ],
        x.files
            .iter()
            .map(|f| {
                vec![
                    f.seq.to_string(),
                    esc(&f.ts),
                    esc(&f.access),
                    format!("<code>{}</code>", esc(&f.path)),
                    opt(&f.bytes_read),
                    opt(&f.bytes_written),
                    format!("<code>{}</code>", opt(&f.sha256_after_write)),
                    format!("{} {}", effect(&f.rule.effect), esc(&rule_text(&f.rule))),
                ]
            })
            .collect(),
    );
    let _ = writeln!(s, "<h3>Commands</h3>");
    table(
        s,
        "commands",
        &[
            "entry",
            "time",
            "program and arguments",
            "folder",
            "exit",
            "ms",
            "decision",
        ],
        x.commands
            .iter()
            .map(|c| {
                vec![
                    c.seq.to_string(),
                    esc(&c.ts),
                    format!(
                        "<pre>{}</pre>",
                        esc(&format!(
                            "{} {:?}",
                            c.program.as_deref().unwrap_or(""),
                            c.argv
                        ))
                    ),
                    opt(&c.cwd),
                    format!("{} {}", opt(&c.exit), opt(&c.status)),
                    opt(&c.duration_ms),
                    format!("{} {}", effect(&c.rule.effect), esc(&rule_text(&c.rule))),
                ]
            })
            .collect(),
    );
    let _ = writeln!(s, "<h3>Connections</h3>");
    table(
        s,
        "connections",
        &[
            "entry", "time", "host", "port", "scheme", "sent", "received", "decision",
        ],
        x.connections
            .iter()
            .map(|c| {
                vec![
                    c.seq.to_string(),
                    esc(&c.ts),
                    opt(&c.host),
                    opt(&c.port),
                    opt(&c.scheme),
                    opt(&c.bytes_out),
                    opt(&c.bytes_in),
                    format!("{} {}", effect(&c.rule.effect), esc(&rule_text(&c.rule))),
                ]
            })
            .collect(),
    );
    if !x.mcp_calls.is_empty() {
        let _ = writeln!(s, "<h3>MCP calls</h3>");
        table(
            s,
            "mcp",
            &["entry", "time", "server", "tool", "status", "decision"],
            x.mcp_calls
                .iter()
                .map(|c| {
                    vec![
                        c.seq.to_string(),
                        esc(&c.ts),
                        opt(&c.server),
                        opt(&c.tool),
                        opt(&c.status),
                        format!("{} {}", effect(&c.rule.effect), esc(&rule_text(&c.rule))),
                    ]
                })
                .collect(),
        );
    }
    let _ = writeln!(s, "<h3>Denials</h3>");
    table(
        s,
        "denials",
        &["entry", "time", "kind", "target", "rule"],
        x.denials
            .iter()
            .map(|d| {
                vec![
                    d.seq.to_string(),
                    esc(&d.ts),
                    esc(&d.kind),
                    format!("<code>{}</code>", esc(&d.target)),
                    format!("{} {}", effect(&d.rule.effect), esc(&rule_text(&d.rule))),
                ]
            })
            .collect(),
    );
    let _ = writeln!(s, "<h3>Approvals</h3>");
    if x.approvals.is_empty() {
        s.push_str("<p class=\"gap\">none</p>\n");
    }
    for a in &x.approvals {
        let _ = writeln!(
            s,
            "<div class=\"approval\"><table><tr><th>asked</th><td>entry {} at {} by <b>{}</b> for <code>{}</code></td></tr>\
             <tr><th>rule</th><td>{}</td></tr><tr><th>answer</th><td>{} by <b class=\"approver\">{}</b> \
             (method {}{}) at {}</td></tr><tr><th>shown (SHA-256 <code>{}</code>)</th><td>{}</td></tr></table></div>",
            a.seq,
            esc(&a.ts),
            esc(&a.requester),
            esc(&a.target),
            esc(&rule_text(&a.rule)),
            answer(&a.answer),
            opt(&a.approver),
            opt(&a.method),
            a.detail.as_deref().map(|d| format!(", {}", esc(d))).unwrap_or_default(),
            opt(&a.answered),
            opt(&a.shown_sha256),
            payload(&a.shown)
        );
    }
    let _ = writeln!(s, "<h3>Timeline</h3>");
    let mut rows: Vec<Vec<String>> = x
        .timeline
        .iter()
        .map(|t| {
            vec![
                t.seq.to_string(),
                esc(&t.ts),
                esc(&t.kind),
                format!("<code>{}</code>", esc(&t.target)),
                esc(&t.outcome),
            ]
        })
        .collect();
    if x.entries as usize > x.timeline.len() {
        rows.push(vec![
            String::new(),
            String::new(),
            format!("… and {} more", x.entries as usize - x.timeline.len()),
            String::new(),
            String::new(),
        ]);
    }
    table(
        s,
        "timeline",
        &["entry", "time", "kind", "target", "outcome"],
        rows,
    );
}
