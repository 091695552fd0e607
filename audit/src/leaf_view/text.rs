//! The fields of a leaf that the derived views print (the OCSF events,
//! `SUMMARY.md`), borrowed. Read from canonical leaf bytes in one walk
//! without allocating — strings stay in their canonical escaped form, which
//! is exactly how serde_json writes them — or borrowed from a typed leaf.
//! The exporter (typed leaves) and the verifier (bytes) write the derived
//! views from this one type with the same code, so their bytes agree (a
//! property test holds both to the straightforward `serde_json::Value`
//! construction).

use std::borrow::Cow;

use crate::event::{Effect, EventKind, Status};
use crate::leaf::Leaf;

use super::{DataView, PayloadView};

/// A string of a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonStr<'a> {
    /// The content between the quotes of a canonical JSON string, escapes
    /// as written (RFC 8785 escapes exactly the characters serde_json
    /// escapes, in the same spelling).
    Json(&'a str),
    /// Text (from a typed leaf), escaped when written.
    Text(&'a str),
}

impl<'a> JsonStr<'a> {
    /// Write it as a JSON string, quotes included.
    pub fn write_json(self, out: &mut Vec<u8>) {
        out.push(b'"');
        self.write_content(out);
        out.push(b'"');
    }

    /// Write its content as inside a JSON string (escaped, no quotes): for
    /// joining several strings into one.
    pub fn write_content(self, out: &mut Vec<u8>) {
        match self {
            Self::Json(s) => out.extend_from_slice(s.as_bytes()),
            Self::Text(s) => escape_into(s, out),
        }
    }

    /// The text, unescaped (borrowed unless it holds an escape).
    pub fn text(self) -> Cow<'a, str> {
        match self {
            Self::Text(s) => Cow::Borrowed(s),
            Self::Json(s) if !s.contains('\\') => Cow::Borrowed(s),
            Self::Json(s) => Cow::Owned(unescape(s)),
        }
    }

    /// The part after the last `/` (all of it when there is none). Escapes
    /// never spell `/`, so this is the same cut on either form.
    pub fn last_segment(self) -> Self {
        let cut = |s: &'a str| s.rsplit('/').next().unwrap_or(s);
        match self {
            Self::Json(s) => Self::Json(cut(s)),
            Self::Text(s) => Self::Text(cut(s)),
        }
    }
}

/// JSON string escaping as serde_json does it (and RFC 8785 requires):
/// `"` and `\` with a backslash, `\b \f \n \r \t` short, other control
/// characters as `\u00xx` in lowercase hex; everything else as is.
pub fn escape_into(s: &str, out: &mut Vec<u8>) {
    let b = s.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let short = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x00..=0x1f => 0,
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        start = i + 1;
        if short != 0 {
            out.extend_from_slice(&[b'\\', short]);
        } else {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(c >> 4)],
                HEX[usize::from(c & 0xf)],
            ]);
        }
    }
    out.extend_from_slice(&b[start..]);
}

/// Decode the escapes of canonical string content (the only ones it may
/// hold: the short ones and `\u00xx`).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => out.push_str(&hex),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// A list of strings.
#[derive(Debug, Clone, Copy)]
pub enum StrList<'a> {
    /// A canonical JSON array of strings, brackets included.
    Json(&'a str),
    /// From a typed leaf.
    Text(&'a [String]),
}

impl<'a> StrList<'a> {
    /// The strings, in order.
    pub fn iter(self) -> StrIter<'a> {
        match self {
            Self::Json(s) => StrIter::Json(s.get(1..).unwrap_or("")),
            Self::Text(t) => StrIter::Text(t.iter()),
        }
    }

    /// Write the strings as one JSON string, joined by `sep` (which needs
    /// no escape).
    pub fn write_joined(self, sep: &str, out: &mut Vec<u8>) {
        out.push(b'"');
        for (i, s) in self.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(sep.as_bytes());
            }
            s.write_content(out);
        }
        out.push(b'"');
    }
}

/// Iterator over a [`StrList`].
#[derive(Debug)]
pub enum StrIter<'a> {
    /// The rest of a canonical array, after `[` or a `,`.
    Json(&'a str),
    /// Typed strings.
    Text(std::slice::Iter<'a, String>),
}

impl<'a> Iterator for StrIter<'a> {
    type Item = JsonStr<'a>;

    fn next(&mut self) -> Option<JsonStr<'a>> {
        match self {
            Self::Text(it) => it.next().map(|s| JsonStr::Text(s)),
            Self::Json(rest) => {
                // `"…"` then `,` or `]`; inside, a backslash always starts
                // a two-character escape (or `\u` and four hex digits, none
                // of which is a quote or a backslash).
                let s = rest.strip_prefix('"')?;
                let b = s.as_bytes();
                let mut i = 0;
                while i < b.len() {
                    match b[i] {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                let item = s.get(..i)?;
                *rest = s.get(i + 2..).unwrap_or("");
                Some(JsonStr::Json(item))
            }
        }
    }
}

/// Who, as the views print it.
#[derive(Debug, Clone, Copy)]
pub struct ActorText<'a> {
    /// Host.
    pub host: JsonStr<'a>,
    /// Principal.
    pub principal: JsonStr<'a>,
    /// Runtime version.
    pub runtime: JsonStr<'a>,
    /// Teams (empty when absent).
    pub teams: StrList<'a>,
}

/// What was acted on.
#[derive(Debug, Clone, Copy, Default)]
pub struct TargetText<'a> {
    /// Arguments.
    pub argv: Option<StrList<'a>>,
    /// Host.
    pub host: Option<JsonStr<'a>>,
    /// Model.
    pub model: Option<JsonStr<'a>>,
    /// Path.
    pub path: Option<JsonStr<'a>>,
    /// Port.
    pub port: Option<u16>,
    /// Program.
    pub program: Option<JsonStr<'a>>,
    /// Provider.
    pub provider: Option<JsonStr<'a>>,
    /// Scheme.
    pub scheme: Option<JsonStr<'a>>,
    /// MCP server.
    pub server: Option<JsonStr<'a>>,
    /// Tool.
    pub tool: Option<JsonStr<'a>>,
}

/// A decision.
#[derive(Debug, Clone, Copy)]
pub struct DecisionText<'a> {
    /// Bundle digest.
    pub bundle: JsonStr<'a>,
    /// Effect.
    pub effect: Effect,
    /// Layer.
    pub layer: Option<JsonStr<'a>>,
    /// Determining policies.
    pub policies: StrList<'a>,
    /// Explanation.
    pub reason: Option<JsonStr<'a>>,
}

/// An outcome, as far as the views print it.
#[derive(Debug, Clone, Copy)]
pub struct OutcomeText<'a> {
    /// Status.
    pub status: Status,
    /// Detail.
    pub detail: Option<JsonStr<'a>>,
}

/// The fields of a leaf the derived views print, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct LeafText<'a> {
    /// Index.
    pub seq: u64,
    /// Kind.
    pub kind: EventKind,
    /// Time (`YYYY-MM-DDTHH:MM:SS.ffffffZ` in a valid leaf).
    pub ts: JsonStr<'a>,
    /// Base64 hash of the previous leaf.
    pub prev: Option<JsonStr<'a>>,
    /// Who.
    pub actor: ActorText<'a>,
    /// Session id.
    pub session: Option<JsonStr<'a>>,
    /// Target.
    pub target: Option<TargetText<'a>>,
    /// Decision.
    pub decision: Option<DecisionText<'a>>,
    /// Outcome.
    pub outcome: Option<OutcomeText<'a>>,
    /// Payload commitments.
    pub payload: PayloadView<'a>,
    /// Kind-specific data.
    pub data: Option<DataView<'a>>,
}

const NO_TEAMS: &[String] = &[];

impl<'a> LeafText<'a> {
    /// The fields of a typed leaf.
    pub fn of(l: &'a Leaf) -> Self {
        let t = JsonStr::Text;
        Self {
            seq: l.seq,
            kind: l.kind,
            ts: t(&l.ts),
            prev: l.prev.as_deref().map(t),
            actor: ActorText {
                host: t(&l.actor.host),
                principal: t(&l.actor.principal),
                runtime: t(&l.actor.runtime),
                teams: StrList::Text(&l.actor.teams),
            },
            session: l.session.as_ref().map(|s| t(&s.id)),
            target: l.target.as_ref().map(|x| TargetText {
                argv: x.argv.as_deref().map(StrList::Text),
                host: x.host.as_deref().map(t),
                model: x.model.as_deref().map(t),
                path: x.path.as_deref().map(t),
                port: x.port,
                program: x.program.as_deref().map(t),
                provider: x.provider.as_deref().map(t),
                scheme: x.scheme.as_deref().map(t),
                server: x.server.as_deref().map(t),
                tool: x.tool.as_deref().map(t),
            }),
            decision: l.decision.as_ref().map(|d| DecisionText {
                bundle: t(&d.bundle),
                effect: d.effect,
                layer: d.layer.as_deref().map(t),
                policies: StrList::Text(&d.policies),
                reason: d.reason.as_deref().map(t),
            }),
            outcome: l.outcome.as_ref().map(|o| OutcomeText {
                status: o.status,
                detail: o.detail.as_deref().map(t),
            }),
            payload: PayloadView::Typed(&l.payload),
            data: l.data.as_ref().map(DataView::Typed),
        }
    }
}

mod parts;
mod scan;

pub(in crate::leaf_view) use parts::{Sink, TextParts};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn escaping_matches_serde_json() {
        for s in [
            "",
            "plain",
            "a\"b\\c",
            "\u{0}\u{1}\u{8}\u{9}\u{a}\u{b}\u{c}\u{d}\u{1f}\u{7f}",
            "é ü 中 😀",
            "</script>",
        ] {
            let mut out = Vec::new();
            JsonStr::Text(s).write_json(&mut out);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
            let escaped = std::str::from_utf8(&out[1..out.len() - 1]).unwrap();
            assert_eq!(JsonStr::Json(escaped).text(), s);
        }
    }

    #[test]
    fn lists_iterate_over_escaped_items() {
        let items = vec!["a,b".to_string(), "q\"]".into(), "\\".into(), "".into()];
        let json = serde_json::to_string(&items).unwrap();
        let got: Vec<String> = StrList::Json(&json)
            .iter()
            .map(|s| s.text().into_owned())
            .collect();
        assert_eq!(got, items);
        assert_eq!(StrList::Json("[]").iter().count(), 0);
    }
}
