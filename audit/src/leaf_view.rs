//! A borrowed view of the leaf fields verification needs, read in one pass
//! that also checks RFC 8785 canonical form and the whole leaf schema.
//!
//! [`LeafView::scan`] accepts only what `Leaf::parse_canonical` accepts and
//! then agrees with it field for field (a property test checks both). It
//! knows only the usual spelling of a leaf: anything else — a `null` for an
//! absent field, an escape inside a field verification compares, a number
//! that does not fit — makes it answer `None`, and the caller falls back to
//! the typed parse, which accepts or rejects exactly as before and names the
//! problem. So the fast path never changes what a valid log is.

use crate::canonical::{Cursor, Ints};
use crate::event::{Effect, EventKind, PayloadRef, Status};
use crate::leaf::{Leaf, MAX_LEAF_BYTES, MAX_SAFE_INT};

mod fields;
mod text;

pub use text::{
    escape_into, ActorText, DecisionText, JsonStr, LeafText, OutcomeText, StrIter, StrList,
    TargetText,
};
use text::{Sink, TextParts};

use fields::{
    key_at, mask, Key, ACTOR_KEYS, DECISION_KEYS, LEAF_KEYS, OUTCOME_KEYS, PAYLOAD_KEYS, REFS_KEYS,
    SESSION_KEYS, TARGET_KEYS,
};

/// A leaf's session link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionView<'a> {
    /// Session id.
    pub id: &'a str,
    /// Position in the session.
    pub n: u64,
    /// Base64 leaf hash of the session's previous entry.
    pub prev: Option<&'a str>,
}

/// A result's reference to its intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefsView<'a> {
    /// Base64 leaf hash of the intent.
    pub intent_leaf: &'a str,
    /// Index of the intent.
    pub intent_seq: u64,
}

/// The payload list: raw canonical JSON (fast path) or typed.
#[derive(Debug, Clone, Copy)]
pub enum PayloadView<'a> {
    /// The bytes of a checked `payload` array.
    Raw(&'a [u8]),
    /// From a typed leaf.
    Typed(&'a [PayloadRef]),
}

/// Kind-specific data: raw canonical JSON (fast path) or typed.
#[derive(Debug, Clone, Copy)]
pub enum DataView<'a> {
    /// The bytes of a checked `data` value.
    Raw(&'a [u8]),
    /// From a typed leaf.
    Typed(&'a serde_json::Value),
}

/// The fields of a leaf that the checks use, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct LeafView<'a> {
    /// Format version.
    pub v: u32,
    /// Index.
    pub seq: u64,
    /// Kind.
    pub kind: EventKind,
    /// Log origin.
    pub log: &'a str,
    /// Writer boot id.
    pub boot: &'a str,
    /// Timestamp.
    pub ts: &'a str,
    /// Base64 hash of the previous leaf.
    pub prev: Option<&'a str>,
    /// Session link.
    pub session: Option<SessionView<'a>>,
    /// Intent reference.
    pub refs: Option<RefsView<'a>>,
    /// Payload commitments.
    pub payload: PayloadView<'a>,
    /// Kind-specific data.
    pub data: Option<DataView<'a>>,
}

impl<'a> LeafView<'a> {
    /// Read `bytes` if they are a canonical leaf in the usual spelling;
    /// `None` means "use the typed parse" (which also reports errors).
    pub fn scan(bytes: &'a [u8]) -> Option<Self> {
        if bytes.len() > MAX_LEAF_BYTES {
            return None;
        }
        let mut c = Cursor::new(bytes, Ints::Any);
        let v = leaf(&mut c, &mut ())?;
        c.end().ok()?;
        Some(v)
    }

    /// [`LeafView::scan`], also keeping the text the derived views print
    /// ([`LeafText`]) in the same pass, in `text` (written in place: it is
    /// large, and returning it cost a copy per leaf).
    pub fn scan_text(bytes: &'a [u8], text: &mut Option<LeafText<'a>>) -> Option<Self> {
        if bytes.len() > MAX_LEAF_BYTES {
            return None;
        }
        let mut c = Cursor::new(bytes, Ints::Any);
        let mut parts = TextParts::default();
        let v = leaf(&mut c, &mut parts)?;
        c.end().ok()?;
        *text = Some(parts.into_text(&v)?);
        Some(v)
    }

    /// The same view of a typed leaf.
    pub fn of(leaf: &'a Leaf) -> Self {
        Self {
            v: leaf.v,
            seq: leaf.seq,
            kind: leaf.kind,
            log: &leaf.log,
            boot: &leaf.boot,
            ts: &leaf.ts,
            prev: leaf.prev.as_deref(),
            session: leaf.session.as_ref().map(|s| SessionView {
                id: &s.id,
                n: s.n,
                prev: s.prev.as_deref(),
            }),
            refs: leaf.refs.as_ref().map(|r| RefsView {
                intent_leaf: &r.intent_leaf,
                intent_seq: r.intent_seq,
            }),
            payload: PayloadView::Typed(&leaf.payload),
            data: leaf.data.as_ref().map(DataView::Typed),
        }
    }

    /// The `commit` text of each payload, in order.
    pub fn commits(&self) -> Commits<'a> {
        self.payload.commits()
    }
}

impl<'a> PayloadView<'a> {
    /// The `commit` text of each payload, in order.
    pub fn commits(self) -> Commits<'a> {
        Commits(match self {
            PayloadView::Raw(b) => CommitsFrom::Raw(Cursor::new(b, Ints::Any)),
            PayloadView::Typed(t) => CommitsFrom::Typed(t.iter()),
        })
    }
}

/// Iterator over payload commitment texts.
pub struct Commits<'a>(CommitsFrom<'a>);

enum CommitsFrom<'a> {
    /// Walking a checked `payload` array.
    Raw(Cursor<'a>),
    /// Walking typed payload references.
    Typed(std::slice::Iter<'a, PayloadRef>),
}

impl std::fmt::Debug for Commits<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Commits")
    }
}

impl<'a> Iterator for Commits<'a> {
    type Item = std::borrow::Cow<'a, str>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            CommitsFrom::Typed(it) => it.next().map(|p| p.commit.as_str().into()),
            CommitsFrom::Raw(c) => {
                // The array was checked by `payload`: each element is an
                // object whose first key is "commit", and "commit" was
                // checked to hold no escapes.
                if !(c.eat(b'[') || c.eat(b',')) || c.peek() != Some(b'{') {
                    return None;
                }
                c.i += br#"{"commit":"#.len();
                let s = text(c)?;
                let mut depth = 1usize;
                while depth > 0 {
                    match c.peek()? {
                        b'"' => {
                            c.string().ok()?;
                        }
                        b'{' | b'[' => {
                            depth += 1;
                            c.i += 1;
                        }
                        b'}' | b']' => {
                            depth -= 1;
                            c.i += 1;
                        }
                        _ => c.i += 1,
                    }
                }
                Some(s.into())
            }
        }
    }
}

/// The wire name of a kind, as bytes, to its kind.
pub fn kind_from_wire(b: &[u8]) -> Option<EventKind> {
    use EventKind as K;
    Some(match b {
        b"log.genesis" => K::LogGenesis,
        b"log.open" => K::LogOpen,
        b"log.close" => K::LogClose,
        b"heartbeat" => K::Heartbeat,
        b"clock.state" => K::ClockState,
        b"clock.step" => K::ClockStep,
        b"session.start" => K::SessionStart,
        b"session.end" => K::SessionEnd,
        b"session.interrupted" => K::SessionInterrupted,
        b"interrupted" => K::Interrupted,
        b"model.request" => K::ModelRequest,
        b"model.response" => K::ModelResponse,
        b"tool.intent" => K::ToolIntent,
        b"tool.result" => K::ToolResult,
        b"file.open" => K::FileOpen,
        b"file.close" => K::FileClose,
        b"exec.start" => K::ExecStart,
        b"exec.end" => K::ExecEnd,
        b"net.connect" => K::NetConnect,
        b"net.close" => K::NetClose,
        b"mcp.list" => K::McpList,
        b"mcp.call" => K::McpCall,
        b"mcp.result" => K::McpResult,
        b"policy.decision" => K::PolicyDecision,
        b"policy.load" => K::PolicyLoad,
        b"approval.request" => K::ApprovalRequest,
        b"approval.grant" => K::ApprovalGrant,
        b"approval.deny" => K::ApprovalDeny,
        b"redaction" => K::Redaction,
        b"key.rotation" => K::KeyRotation,
        b"key.revocation" => K::KeyRevocation,
        b"audit.read" => K::AuditRead,
        b"audit.export" => K::AuditExport,
        b"audit.alert" => K::AuditAlert,
        // retention, legal hold and archival
        b"payload.expiry" => K::PayloadExpiry,
        b"hold.place" => K::HoldPlace,
        b"hold.release" => K::HoldRelease,
        b"log.archive" => K::LogArchive,
        _ => return None,
    })
}

/// Walk an object whose keys must be some of `names`, in order, each at
/// most once; `field` reads the value of the field at the given position.
/// Returns which fields were present, or `None` if `required` are not all.
fn object<'a>(
    c: &mut Cursor<'a>,
    names: &[Key],
    required: u32,
    mut field: impl FnMut(&mut Cursor<'a>, usize) -> Option<()>,
) -> Option<u32> {
    if !c.eat(b'{') {
        return None;
    }
    let mut seen = 0u32;
    if c.eat(b'}') {
        return (required == 0).then_some(0);
    }
    let mut next = 0usize;
    loop {
        // The key, matched as `"name":` against the names still allowed
        // (names need no escapes, so a match is exactly that key).
        let rest = &c.b[c.i..];
        let at = next + key_at(rest, &names[next..])?;
        c.i += names[at].name.len() + 2;
        next = at + 1;
        seen |= 1 << at;
        if !c.eat(b':') {
            return None;
        }
        field(c, at)?;
        if c.eat(b'}') {
            return (seen & required == required).then_some(seen);
        }
        if !c.eat(b',') || next == names.len() {
            return None;
        }
    }
}

/// A string whose content is kept: it must hold no escapes (else `None`).
fn text<'a>(c: &mut Cursor<'a>) -> Option<&'a str> {
    if c.peek() != Some(b'"') {
        return None;
    }
    let (raw, escaped) = c.string_escaped().ok()?;
    if escaped {
        return None;
    }
    // SAFETY: `string_escaped` accepted every byte of `raw`: printable
    // ASCII, escapes (none here) and non-ASCII characters each checked to
    // be one whole, well-formed UTF-8 sequence (`Cursor::non_ascii`), so
    // `raw` is valid UTF-8. Checking it again cost 3% of verification.
    Some(unsafe { std::str::from_utf8_unchecked(raw) })
}

/// Any canonical string: its content between the quotes, escapes as
/// written.
fn content<'a>(c: &mut Cursor<'a>) -> Option<&'a str> {
    if c.peek() != Some(b'"') {
        return None;
    }
    let raw = c.string().ok()?;
    // SAFETY: as in `text`: `string` accepted every byte of `raw` (escapes
    // are ASCII), so it is valid UTF-8.
    Some(unsafe { std::str::from_utf8_unchecked(raw) })
}

/// Any canonical string (escapes allowed: the content is not used).
fn any_string(c: &mut Cursor<'_>) -> Option<()> {
    content(c).map(|_| ())
}

/// An array of canonical strings: how many, and the array's text.
fn list<'a>(c: &mut Cursor<'a>) -> Option<(usize, &'a str)> {
    let start = c.i;
    let n = strings(c)?;
    // SAFETY: strings accepted by `string`, `[`, `,` and `]`: valid UTF-8.
    Some((n, unsafe {
        std::str::from_utf8_unchecked(&c.b[start..c.i])
    }))
}

/// An array of canonical strings; returns how many.
fn strings(c: &mut Cursor<'_>) -> Option<usize> {
    if !c.eat(b'[') {
        return None;
    }
    if c.eat(b']') {
        return Some(0);
    }
    let mut n = 0;
    loop {
        any_string(c)?;
        n += 1;
        if c.eat(b']') {
            return Some(n);
        }
        if !c.eat(b',') {
            return None;
        }
    }
}

/// A non-negative integer in canonical spelling that fits in `max`.
fn uint(c: &mut Cursor<'_>, max: u64) -> Option<u64> {
    let start = c.i;
    let mut n: u64 = 0;
    while let Some(d @ b'0'..=b'9') = c.peek() {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        c.i += 1;
    }
    let len = c.i - start;
    let canonical = len == 1 || (len > 1 && c.b[start] != b'0');
    let ends = !matches!(c.peek(), Some(b'.' | b'e' | b'E'));
    (canonical && ends && n <= max).then_some(n)
}

/// An integer of magnitude at most 2^53 − 1 in canonical spelling.
fn int(c: &mut Cursor<'_>) -> Option<()> {
    if c.eat(b'-') {
        // Canonical: no "-0".
        let m = uint(c, MAX_SAFE_INT)?;
        (m != 0).then_some(())
    } else {
        uint(c, MAX_SAFE_INT).map(|_| ())
    }
}

fn leaf<'a, T: Sink<'a>>(c: &mut Cursor<'a>, t: &mut T) -> Option<LeafView<'a>> {
    let mut v = LeafView {
        v: 0,
        seq: 0,
        kind: EventKind::Heartbeat,
        log: "",
        boot: "",
        ts: "",
        prev: None,
        session: None,
        refs: None,
        payload: PayloadView::Raw(b"[]"),
        data: None,
    };
    // actor, boot, kind, log, seq, ts, v
    const REQUIRED: u32 = mask(&[0, 1, 4, 5, 10, 13, 14]);
    object(c, &LEAF_KEYS, REQUIRED, |c, at| {
        match at {
            0 => actor(c, t)?,
            1 => v.boot = text(c)?,
            2 => v.data = Some(DataView::Raw(data(c)?)),
            3 => decision(c, t)?,
            4 => {
                let raw = c
                    .peek()
                    .filter(|b| *b == b'"')
                    .and_then(|_| c.string().ok())?;
                v.kind = kind_from_wire(raw)?;
            }
            5 => v.log = text(c)?,
            6 => outcome(c, t)?,
            7 => v.payload = PayloadView::Raw(payload(c)?),
            8 => v.prev = Some(text(c)?),
            9 => v.refs = Some(refs(c)?),
            10 => v.seq = uint(c, MAX_SAFE_INT)?,
            11 => v.session = Some(session(c)?),
            12 => target(c, t)?,
            13 => v.ts = text(c)?,
            _ => v.v = u32::try_from(uint(c, u64::from(u32::MAX))?).ok()?,
        }
        Some(())
    })?;
    Some(v)
}

fn actor<'a, T: Sink<'a>>(c: &mut Cursor<'a>, t: &mut T) -> Option<()> {
    object(c, &ACTOR_KEYS, mask(&[0, 1, 2]), |c, at| match at {
        // Absent when there are none: `[]` is not the writer's spelling.
        3 => list(c).filter(|&(n, _)| n > 0).map(|(_, l)| t.teams(l)),
        _ => content(c).map(|s| t.actor(at, s)),
    })
    .map(|_| ())
}

fn decision<'a, T: Sink<'a>>(c: &mut Cursor<'a>, t: &mut T) -> Option<()> {
    t.decision_begin();
    // `policies` is always written, possibly empty.
    object(c, &DECISION_KEYS, mask(&[0, 1, 3]), |c, at| match at {
        1 => {
            let e = match c
                .peek()
                .filter(|b| *b == b'"')
                .and_then(|_| c.string().ok())?
            {
                b"allow" => Effect::Allow,
                b"deny" => Effect::Deny,
                b"ask" => Effect::Ask,
                _ => return None,
            };
            t.effect(e);
            Some(())
        }
        3 => list(c).map(|(_, l)| t.policies(l)),
        _ => content(c).map(|s| t.decision(at, s)),
    })
    .map(|_| ())
}

fn outcome<'a, T: Sink<'a>>(c: &mut Cursor<'a>, t: &mut T) -> Option<()> {
    object(c, &OUTCOME_KEYS, mask(&[5]), |c, at| match at {
        2 => int(c),
        3 => content(c).map(|s| t.detail(s)),
        5 => {
            let s = match c
                .peek()
                .filter(|b| *b == b'"')
                .and_then(|_| c.string().ok())?
            {
                b"ok" => Status::Ok,
                b"error" => Status::Error,
                b"denied" => Status::Denied,
                b"interrupted" => Status::Interrupted,
                b"timeout" => Status::Timeout,
                _ => return None,
            };
            t.status(s);
            Some(())
        }
        _ => uint(c, MAX_SAFE_INT).map(|_| ()),
    })
    .map(|_| ())
}

fn target<'a, T: Sink<'a>>(c: &mut Cursor<'a>, t: &mut T) -> Option<()> {
    t.target_begin();
    object(c, &TARGET_KEYS, 0, |c, at| match at {
        0 => list(c).map(|(_, l)| t.argv(l)),
        4 => uint(c, u64::from(u16::MAX)).map(|p| t.port(p)),
        _ => content(c).map(|s| t.target(at, s)),
    })
    .map(|_| ())
}

fn refs<'a>(c: &mut Cursor<'a>) -> Option<RefsView<'a>> {
    let mut r = RefsView {
        intent_leaf: "",
        intent_seq: 0,
    };
    object(c, &REFS_KEYS, mask(&[0, 1]), |c, at| {
        match at {
            0 => r.intent_leaf = text(c)?,
            _ => r.intent_seq = uint(c, MAX_SAFE_INT)?,
        }
        Some(())
    })?;
    Some(r)
}

fn session<'a>(c: &mut Cursor<'a>) -> Option<SessionView<'a>> {
    let mut s = SessionView {
        id: "",
        n: 0,
        prev: None,
    };
    object(c, &SESSION_KEYS, mask(&[0, 1]), |c, at| {
        match at {
            0 => s.id = text(c)?,
            1 => s.n = uint(c, MAX_SAFE_INT)?,
            _ => s.prev = Some(text(c)?),
        }
        Some(())
    })?;
    Some(s)
}

/// The `payload` array (absent when empty: `[]` is not the writer's
/// spelling); returns its bytes.
fn payload<'a>(c: &mut Cursor<'a>) -> Option<&'a [u8]> {
    let start = c.i;
    if !c.eat(b'[') || c.peek() == Some(b']') {
        return None;
    }
    loop {
        object(c, &PAYLOAD_KEYS, mask(&[0, 1, 2, 4]), |c, at| match at {
            0 => text(c).map(|_| ()),
            3 => text(c).filter(|h| is_sha256_hex(h)).map(|_| ()),
            4 => uint(c, MAX_SAFE_INT).map(|_| ()),
            _ => any_string(c),
        })?;
        if c.eat(b']') {
            break;
        }
        if !c.eat(b',') {
            return None;
        }
    }
    Some(&c.b[start..c.i])
}

/// A payload's plain digest: 64 lowercase hex digits.
pub fn is_sha256_hex(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(crate::rules::is_lower_hex)
}

/// The `data` value, an object: canonical, integers below 2^53.
fn data<'a>(c: &mut Cursor<'a>) -> Option<&'a [u8]> {
    let start = c.i;
    if c.peek() != Some(b'{') {
        return None;
    }
    c.set_ints(Ints::Safe);
    let r = c.value(1);
    c.set_ints(Ints::Any);
    r.ok()?;
    Some(&c.b[start..c.i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back() {
        for k in EventKind::ALL {
            assert_eq!(kind_from_wire(k.as_str().as_bytes()), Some(k));
        }
        assert_eq!(kind_from_wire(b"log.genesiS"), None);
    }
}
