//! Reading [`LeafText`] from the bytes of a leaf in a walk of its own
//! (for callers without the checks' scanner: a leaf in an unusual
//! spelling, tests), and `data` strings from raw data.

use std::borrow::Cow;

use crate::canonical::{Cursor, Ints};
use crate::event::{Effect, EventKind, Status};
use crate::leaf::MAX_SAFE_INT;
use crate::leaf_view::{kind_from_wire, uint, DataView, PayloadView};

use super::{
    ActorText, DecisionText, JsonStr, LeafText, OutcomeText, StrList, TargetText, NO_TEAMS,
};

impl<'a> LeafText<'a> {
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
