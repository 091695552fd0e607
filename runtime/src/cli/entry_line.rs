//! One audit entry on one line, as `audit show`, `audit tail` and
//! `session show` print it: what happened in words a reviewer reads (the
//! action a file entry decided, who approved, which rule decided), the
//! session id only where entries of several sessions are shown.

use stele_audit::leaf::Leaf;
use stele_audit::EventKind;

use crate::terminal_safe;

/// What the lines around this one already say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionColumn {
    /// Entries of several sessions: each line names its session.
    Shown,
    /// One session (filtered, or `session show`): only the entry's number in it.
    Implied,
}

/// One entry on one line, with its session. Every field that comes from
/// the log is escaped (line feeds too): a principal, path or program name
/// can neither drive the reviewer's terminal nor forge another line.
pub fn summary(l: &Leaf) -> String {
    line(l, SessionColumn::Shown)
}

/// One entry on one line; see [`SessionColumn`].
pub fn line(l: &Leaf, session: SessionColumn) -> String {
    let f = terminal_safe::line;
    let mut s = format!(
        "{:>7}  {}  {:<19} {}",
        l.seq,
        f(&l.ts),
        l.kind.as_str(),
        f(&l.actor.principal)
    );
    if let Some(sess) = &l.session {
        match session {
            SessionColumn::Shown => s.push_str(&format!("  session={}#{}", f(&sess.id), sess.n)),
            SessionColumn::Implied => s.push_str(&format!("  #{}", sess.n)),
        }
    }
    if let Some(action) = decided_action(l) {
        s.push_str(&format!("  {action}"));
    }
    if let Some(t) = &l.target {
        for (k, v) in [
            ("path", &t.path),
            ("program", &t.program),
            ("host", &t.host),
            ("tool", &t.tool),
            ("model", &t.model),
        ] {
            if let Some(v) = v {
                s.push_str(&format!("  {k}={}", f(v)));
            }
        }
    }
    if let Some(a) = approval(l) {
        s.push_str(&format!("  {a}"));
    }
    if let Some(d) = &l.decision {
        s.push_str(&format!("  {:?}", d.effect).to_lowercase());
        if !d.policies.is_empty() {
            let ids: Vec<String> = d.policies.iter().map(|p| f(p)).collect();
            s.push_str(&format!(" by {}", ids.join(", ")));
        } else if d.effect == stele_audit::Effect::Deny {
            s.push_str(" (no rule permits it)");
        }
    }
    if let Some(o) = &l.outcome {
        s.push_str(&format!("  -> {:?}", o.status).to_lowercase());
    }
    if let Some(r) = &l.refs {
        s.push_str(&format!(" (intent {})", r.intent_seq));
    }
    s
}

/// The action a decision was about when the kind alone does not say it:
/// a `file.open` is a read, a write, a list or a delete. The decision's
/// reason starts with the action's name (gate/record.rs writes it so).
fn decided_action(l: &Leaf) -> Option<String> {
    if l.kind != EventKind::FileOpen {
        return None;
    }
    let reason = l.decision.as_ref()?.reason.as_deref()?;
    let first = reason.split_whitespace().next()?;
    let action: stele_policy::Action = first.parse().ok()?;
    Some(format!("action={}", action.as_str()))
}

/// Who answered an approval, how, and for which request.
fn approval(l: &Leaf) -> Option<String> {
    let data = l.data.as_ref()?;
    let text = |k: &str| {
        data.get(k)
            .and_then(|v| v.as_str())
            .map(terminal_safe::line)
    };
    let by = || {
        format!(
            "by {} ({}) for entry {}",
            text("approver").unwrap_or_else(|| "?".into()),
            text("method").unwrap_or_else(|| "?".into()),
            data.get("request_seq")
                .and_then(serde_json::Value::as_u64)
                .map_or_else(|| "?".into(), |n| n.to_string())
        )
    };
    match l.kind {
        EventKind::ApprovalGrant => Some(format!("granted {}", by())),
        EventKind::ApprovalDeny => Some(format!("refused {}", by())),
        _ => None,
    }
}
