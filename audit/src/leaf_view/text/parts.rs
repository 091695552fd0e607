//! What the checks' one-pass scanner keeps of a leaf's text for the
//! derived views ([`crate::leaf_view::LeafView::scan_text`]).

use crate::event::{Effect, Status};
use crate::leaf_view::LeafView;

use super::{
    ActorText, DecisionText, JsonStr, LeafText, OutcomeText, StrList, TargetText, NO_TEAMS,
};

/// What the one-pass scanner ([`LeafView::scan`]) tells about the
/// text fields it checks: nothing is kept for `()` (the checks alone), the
/// text for [`TextParts`] ([`LeafView::scan_text`]). Positions are
/// those of the fields in each object's sorted key list.
pub(in crate::leaf_view) trait Sink<'a> {
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

/// The text fields kept by [`LeafView::scan_text`].
#[derive(Debug, Default)]
pub(in crate::leaf_view) struct TextParts<'a> {
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
    pub(in crate::leaf_view) fn into_text(self, v: &LeafView<'a>) -> Option<LeafText<'a>> {
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
