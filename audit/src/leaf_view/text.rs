//! The fields of a leaf that the derived views print (the OCSF events,
//! `SUMMARY.md`), borrowed. Read from canonical leaf bytes in one walk
//! without allocating — strings stay in their canonical escaped form, which
//! is exactly how serde_json writes them — or borrowed from a typed leaf.
//! The exporter (typed leaves) and the verifier (bytes) write the derived
//! views from this one type with the same code, so their bytes agree (a
//! property test holds both to the straightforward `serde_json::Value`
//! construction).

use std::borrow::Cow;

use crate::canonical::{Cursor, Ints};
use crate::event::{Effect, EventKind, Status};
use crate::leaf::Leaf;

use super::{kind_from_wire, uint, DataView, PayloadView};
use crate::leaf::MAX_SAFE_INT;

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

    /// The string `data.<key>`, if there is one.
    pub fn data_str(&self, key: &str) -> Option<Cow<'a, str>> {
        match self.data? {
            DataView::Typed(v) => v.get(key)?.as_str().map(Cow::Borrowed),
            DataView::Raw(b) => {
                let mut c = Cursor::new(b, Ints::Any);
                let mut found = None;
                fields(&mut c, |c, k| {
                    if k == key.as_bytes() && c.peek() == Some(b'"') {
                        found = string(c);
                        Some(())
                    } else {
                        c.value(1).ok()
                    }
                })?;
                found.map(JsonStr::text)
            }
        }
    }

    /// Read the fields from the bytes of a leaf that verified (canonical
    /// JSON of the leaf schema). `None` when the bytes are not shaped so;
    /// the caller then uses the typed leaf ([`LeafText::of`]).
    pub fn scan(bytes: &'a [u8]) -> Option<Self> {
        let mut c = Cursor::new(bytes, Ints::Any);
        let mut l = LeafText {
            seq: 0,
            kind: EventKind::Heartbeat,
            ts: JsonStr::Json(""),
            prev: None,
            actor: ActorText {
                host: JsonStr::Json(""),
                principal: JsonStr::Json(""),
                runtime: JsonStr::Json(""),
                teams: StrList::Text(NO_TEAMS),
            },
            session: None,
            target: None,
            decision: None,
            outcome: None,
            payload: PayloadView::Typed(&[]),
            data: None,
        };
        let mut seen = 0u8;
        fields(&mut c, |c, key| {
            match key {
                b"actor" => {
                    seen |= 1;
                    l.actor = actor(c)?;
                }
                b"data" => {
                    let start = c.i;
                    c.value(1).ok()?;
                    l.data = Some(DataView::Raw(&c.b[start..c.i]));
                }
                b"decision" => l.decision = Some(decision(c)?),
                b"kind" => {
                    seen |= 2;
                    l.kind = kind_from_wire(raw_string(c)?)?;
                }
                b"outcome" => l.outcome = Some(outcome(c)?),
                b"payload" => l.payload = payload(c)?,
                b"prev" => l.prev = Some(string(c)?),
                b"seq" => {
                    seen |= 4;
                    l.seq = uint(c, MAX_SAFE_INT)?;
                }
                b"session" => {
                    fields(c, |c, key| {
                        if key == b"id" {
                            l.session = Some(string(c)?);
                            Some(())
                        } else {
                            c.value(1).ok()
                        }
                    })?;
                    l.session?;
                }
                b"target" => l.target = Some(target(c)?),
                b"ts" => {
                    seen |= 8;
                    l.ts = string(c)?;
                }
                _ => c.value(1).ok()?,
            }
            Some(())
        })?;
        c.end().ok()?;
        (seen == 15).then_some(l)
    }
}

/// What the one-pass scanner ([`super::LeafView::scan`]) tells about the
/// text fields it checks: nothing is kept for `()` (the checks alone), the
/// text for [`TextParts`] ([`super::LeafView::scan_text`]). Positions are
/// those of the fields in each object's sorted key list.
pub(super) trait Sink<'a> {
    /// `actor.host` (0), `.principal` (1), `.runtime` (2).
    fn actor(&mut self, _at: usize, _s: &'a str) {}
    /// `actor.teams`, the array's text.
    fn teams(&mut self, _list: &'a str) {}
    /// A `decision` object starts.
    fn decision_begin(&mut self) {}
    /// `decision.bundle` (0), `.layer` (2), `.reason` (4).
    fn decision(&mut self, _at: usize, _s: &'a str) {}
    /// `decision.effect`.
    fn effect(&mut self, _e: Effect) {}
    /// `decision.policies`, the array's text.
    fn policies(&mut self, _list: &'a str) {}
    /// `outcome.detail`.
    fn detail(&mut self, _s: &'a str) {}
    /// `outcome.status`.
    fn status(&mut self, _s: Status) {}
    /// A `target` object starts.
    fn target_begin(&mut self) {}
    /// A string of `target`, at its position.
    fn target(&mut self, _at: usize, _s: &'a str) {}
    /// `target.argv`, the array's text.
    fn argv(&mut self, _list: &'a str) {}
    /// `target.port`.
    fn port(&mut self, _p: u64) {}
}

impl Sink<'_> for () {}

/// The text fields kept by [`super::LeafView::scan_text`].
#[derive(Debug, Default)]
pub(super) struct TextParts<'a> {
    actor: [&'a str; 3],
    teams: Option<&'a str>,
    decision: Option<DecisionParts<'a>>,
    status: Option<Status>,
    detail: Option<&'a str>,
    target: Option<TargetText<'a>>,
}

#[derive(Debug, Default)]
struct DecisionParts<'a> {
    bundle: Option<&'a str>,
    effect: Option<Effect>,
    layer: Option<&'a str>,
    policies: Option<&'a str>,
    reason: Option<&'a str>,
}

impl<'a> Sink<'a> for TextParts<'a> {
    fn actor(&mut self, at: usize, s: &'a str) {
        if let Some(x) = self.actor.get_mut(at) {
            *x = s;
        }
    }
    fn teams(&mut self, list: &'a str) {
        self.teams = Some(list);
    }
    fn decision_begin(&mut self) {
        self.decision = Some(DecisionParts::default());
    }
    fn decision(&mut self, at: usize, s: &'a str) {
        if let Some(d) = &mut self.decision {
            match at {
                0 => d.bundle = Some(s),
                2 => d.layer = Some(s),
                _ => d.reason = Some(s),
            }
        }
    }
    fn effect(&mut self, e: Effect) {
        if let Some(d) = &mut self.decision {
            d.effect = Some(e);
        }
    }
    fn policies(&mut self, list: &'a str) {
        if let Some(d) = &mut self.decision {
            d.policies = Some(list);
        }
    }
    fn detail(&mut self, s: &'a str) {
        self.detail = Some(s);
    }
    fn status(&mut self, s: Status) {
        self.status = Some(s);
    }
    fn target_begin(&mut self) {
        self.target = Some(TargetText::default());
    }
    fn target(&mut self, at: usize, s: &'a str) {
        let Some(t) = &mut self.target else { return };
        let s = Some(JsonStr::Json(s));
        match at {
            1 => t.host = s,
            2 => t.model = s,
            3 => t.path = s,
            5 => t.program = s,
            6 => t.provider = s,
            7 => t.scheme = s,
            8 => t.server = s,
            _ => t.tool = s,
        }
    }
    fn argv(&mut self, list: &'a str) {
        if let Some(t) = &mut self.target {
            t.argv = Some(StrList::Json(list));
        }
    }
    fn port(&mut self, p: u64) {
        if let Some(t) = &mut self.target {
            t.port = u16::try_from(p).ok();
        }
    }
}

impl<'a> TextParts<'a> {
    /// The text of the leaf `v` was scanned from.
    pub(super) fn into_text(self, v: &super::LeafView<'a>) -> Option<LeafText<'a>> {
        let j = JsonStr::Json;
        let decision = match self.decision {
            None => None,
            Some(d) => Some(DecisionText {
                bundle: j(d.bundle?),
                effect: d.effect?,
                layer: d.layer.map(j),
                policies: d.policies.map_or(StrList::Text(NO_TEAMS), StrList::Json),
                reason: d.reason.map(j),
            }),
        };
        Some(LeafText {
            seq: v.seq,
            kind: v.kind,
            // Read by `text`: no escapes, so already JSON string content.
            ts: j(v.ts),
            prev: v.prev.map(j),
            actor: ActorText {
                host: j(self.actor[0]),
                principal: j(self.actor[1]),
                runtime: j(self.actor[2]),
                teams: self.teams.map_or(StrList::Text(NO_TEAMS), StrList::Json),
            },
            session: v.session.map(|s| j(s.id)),
            target: self.target,
            decision,
            outcome: self.status.map(|status| OutcomeText {
                status,
                detail: self.detail.map(j),
            }),
            payload: v.payload,
            data: v.data,
        })
    }
}

/// Walk an object, calling `field` with each key (the cursor on its value).
fn fields<'a>(
    c: &mut Cursor<'a>,
    mut field: impl FnMut(&mut Cursor<'a>, &'a [u8]) -> Option<()>,
) -> Option<()> {
    if !c.eat(b'{') {
        return None;
    }
    if c.eat(b'}') {
        return Some(());
    }
    loop {
        let key = raw_string(c)?;
        if !c.eat(b':') {
            return None;
        }
        field(c, key)?;
        if c.eat(b'}') {
            return Some(());
        }
        if !c.eat(b',') {
            return None;
        }
    }
}

fn raw_string<'a>(c: &mut Cursor<'a>) -> Option<&'a [u8]> {
    if c.peek() != Some(b'"') {
        return None;
    }
    c.string().ok()
}

fn string<'a>(c: &mut Cursor<'a>) -> Option<JsonStr<'a>> {
    std::str::from_utf8(raw_string(c)?).ok().map(JsonStr::Json)
}

fn strings<'a>(c: &mut Cursor<'a>) -> Option<StrList<'a>> {
    let start = c.i;
    if c.peek() != Some(b'[') {
        return None;
    }
    c.array(1).ok()?;
    let s = std::str::from_utf8(&c.b[start..c.i]).ok()?;
    // Strings only: the iterator reads nothing else.
    let mut inner = Cursor::new(s.as_bytes(), Ints::Any);
    inner.i = 1;
    if !inner.eat(b']') {
        loop {
            raw_string(&mut inner)?;
            if inner.eat(b']') {
                break;
            }
            if !inner.eat(b',') {
                return None;
            }
        }
    }
    Some(StrList::Json(s))
}

/// The payload array, kept raw for [`PayloadView::commits`], which reads
/// each object's first field as a `commit` string without escapes.
fn payload<'a>(c: &mut Cursor<'a>) -> Option<PayloadView<'a>> {
    let start = c.i;
    if !c.eat(b'[') {
        return None;
    }
    if !c.eat(b']') {
        loop {
            let mut first = true;
            fields(c, |c, key| {
                if std::mem::take(&mut first) {
                    if key != b"commit" || c.peek() != Some(b'"') {
                        return None;
                    }
                    let (_, escaped) = c.string_escaped().ok()?;
                    (!escaped).then_some(())
                } else {
                    c.value(2).ok()
                }
            })?;
            if first {
                return None;
            }
            if c.eat(b']') {
                break;
            }
            if !c.eat(b',') {
                return None;
            }
        }
    }
    Some(PayloadView::Raw(&c.b[start..c.i]))
}

fn actor<'a>(c: &mut Cursor<'a>) -> Option<ActorText<'a>> {
    let mut a = ActorText {
        host: JsonStr::Json(""),
        principal: JsonStr::Json(""),
        runtime: JsonStr::Json(""),
        teams: StrList::Text(NO_TEAMS),
    };
    let mut seen = 0u8;
    fields(c, |c, key| {
        match key {
            b"host" => {
                seen |= 1;
                a.host = string(c)?;
            }
            b"principal" => {
                seen |= 2;
                a.principal = string(c)?;
            }
            b"runtime" => {
                seen |= 4;
                a.runtime = string(c)?;
            }
            b"teams" => a.teams = strings(c)?,
            _ => return None,
        }
        Some(())
    })?;
    (seen == 7).then_some(a)
}

fn target<'a>(c: &mut Cursor<'a>) -> Option<TargetText<'a>> {
    let mut t = TargetText::default();
    fields(c, |c, key| {
        match key {
            b"argv" => t.argv = Some(strings(c)?),
            b"host" => t.host = Some(string(c)?),
            b"model" => t.model = Some(string(c)?),
            b"path" => t.path = Some(string(c)?),
            b"port" => t.port = Some(u16::try_from(uint(c, u64::from(u16::MAX))?).ok()?),
            b"program" => t.program = Some(string(c)?),
            b"provider" => t.provider = Some(string(c)?),
            b"scheme" => t.scheme = Some(string(c)?),
            b"server" => t.server = Some(string(c)?),
            b"tool" => t.tool = Some(string(c)?),
            _ => return None,
        }
        Some(())
    })?;
    Some(t)
}

fn decision<'a>(c: &mut Cursor<'a>) -> Option<DecisionText<'a>> {
    let mut bundle = None;
    let mut effect = None;
    let mut layer = None;
    let mut policies = StrList::Text(NO_TEAMS);
    let mut reason = None;
    fields(c, |c, key| {
        match key {
            b"bundle" => bundle = Some(string(c)?),
            b"effect" => {
                effect = Some(match raw_string(c)? {
                    b"allow" => Effect::Allow,
                    b"deny" => Effect::Deny,
                    b"ask" => Effect::Ask,
                    _ => return None,
                })
            }
            b"layer" => layer = Some(string(c)?),
            b"policies" => policies = strings(c)?,
            b"reason" => reason = Some(string(c)?),
            _ => return None,
        }
        Some(())
    })?;
    Some(DecisionText {
        bundle: bundle?,
        effect: effect?,
        layer,
        policies,
        reason,
    })
}

fn outcome<'a>(c: &mut Cursor<'a>) -> Option<OutcomeText<'a>> {
    let mut status = None;
    let mut detail = None;
    fields(c, |c, key| {
        match key {
            b"status" => {
                status = Some(match raw_string(c)? {
                    b"ok" => Status::Ok,
                    b"error" => Status::Error,
                    b"denied" => Status::Denied,
                    b"interrupted" => Status::Interrupted,
                    b"timeout" => Status::Timeout,
                    _ => return None,
                })
            }
            b"detail" => detail = Some(string(c)?),
            _ => c.value(1).ok()?,
        }
        Some(())
    })?;
    Some(OutcomeText {
        status: status?,
        detail,
    })
}

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
