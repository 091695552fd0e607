//! One audit entry on one line, as `audit show`, `audit tail` and
//! `session show` print it.

use stele_audit::leaf::Leaf;

use crate::terminal_safe;

/// One entry on one line. Every field that comes from the log is escaped
/// (line feeds too): a principal, path or program name can neither drive
/// the reviewer's terminal nor forge another line.
pub fn summary(l: &Leaf) -> String {
    let f = terminal_safe::line;
    let mut s = format!(
        "{:>7}  {}  {:<19} {}",
        l.seq,
        f(&l.ts),
        l.kind.as_str(),
        f(&l.actor.principal)
    );
    if let Some(sess) = &l.session {
        s.push_str(&format!("  session={}#{}", f(&sess.id), sess.n));
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
    if let Some(d) = &l.decision {
        s.push_str(&format!("  {:?}", d.effect).to_lowercase());
        if !d.policies.is_empty() {
            let ids: Vec<String> = d.policies.iter().map(|p| f(p)).collect();
            s.push_str(&format!(" [{}]", ids.join(",")));
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
