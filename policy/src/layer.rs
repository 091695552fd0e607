//! Layers and their evaluation. Each layer part (org, one team, project) is
//! its own Cedar `PolicySet`, pre-split by action so a decision only
//! evaluates the policies that can apply to its action.
//!
//! A part's outcome for a request is one of: a satisfied `forbid`, a
//! satisfied `permit`, an in-scope permit that is not satisfied ("this layer
//! speaks to the request and does not allow it"), evaluation errors, or
//! nothing at all (the layer abstains).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use cedar_policy::{
    ActionConstraint, Authorizer, Decision as CedarDecision, Effect, EntityTypeName, EntityUid,
    Policy, PolicySet, PrincipalConstraint, ResourceConstraint,
};

use crate::cedar_req::{CedarInput, Facts, Names};
use crate::decision::EvalError;
use crate::error::PolicyError;
use crate::guard::{self, Guard};
use crate::request::{Action, Request};
use crate::server_action::ServerAction;

/// One slot per gate action, then one per server action.
const SLOTS: usize = Action::ALL.len() + ServerAction::ALL.len();

fn slot_of(names: &Names, uid: &EntityUid) -> Option<usize> {
    names.action_of(uid).map(Action::index).or_else(|| {
        names
            .server_action_of(uid)
            .map(|a| Action::ALL.len() + a.index())
    })
}

/// Where a policy lives in the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layer {
    /// `org/`: managed ceilings; its forbids bind everyone.
    Org,
    /// `teams/<name>/`: applies to members of that team only.
    Team(String),
    /// `project/`: the optional, most specific layer.
    Project,
}

impl Layer {
    /// The layer kind, with team names folded together.
    pub fn kind(&self) -> LayerKind {
        match self {
            Layer::Org => LayerKind::Org,
            Layer::Team(_) => LayerKind::Team,
            Layer::Project => LayerKind::Project,
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::Org => f.write_str("org"),
            Layer::Team(t) => write!(f, "team:{t}"),
            Layer::Project => f.write_str("project"),
        }
    }
}

/// The three layers of intersection. The team layer of a request is the
/// union of the principal's teams' policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LayerKind {
    /// `org/`.
    Org,
    /// `teams/*/` of the principal's teams.
    Team,
    /// `project/`.
    Project,
}

impl fmt::Display for LayerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayerKind::Org => "org",
            LayerKind::Team => "team",
            LayerKind::Project => "project",
        })
    }
}

/// A scope constraint on the principal or resource, in a form that can be
/// checked without Cedar (our hierarchy is shallow and known per request).
#[derive(Debug, Clone)]
enum EntityMatch {
    Any,
    Eq(EntityUid),
    In(EntityUid),
    Is(EntityTypeName),
    IsIn(EntityTypeName, EntityUid),
}

impl EntityMatch {
    fn matches(&self, uid: &EntityUid, ancestors: &[EntityUid]) -> bool {
        let is_in = |e: &EntityUid| e == uid || ancestors.contains(e);
        match self {
            EntityMatch::Any => true,
            EntityMatch::Eq(e) => e == uid,
            EntityMatch::In(e) => is_in(e),
            EntityMatch::Is(t) => uid.type_name() == t,
            EntityMatch::IsIn(t, e) => uid.type_name() == t && is_in(e),
        }
    }
}

fn principal_match(c: PrincipalConstraint) -> EntityMatch {
    match c {
        PrincipalConstraint::Any => EntityMatch::Any,
        PrincipalConstraint::Eq(e) => EntityMatch::Eq(e),
        PrincipalConstraint::In(e) => EntityMatch::In(e),
        PrincipalConstraint::Is(t) => EntityMatch::Is(t),
        PrincipalConstraint::IsIn(t, e) => EntityMatch::IsIn(t, e),
    }
}

fn resource_match(c: ResourceConstraint) -> EntityMatch {
    match c {
        ResourceConstraint::Any => EntityMatch::Any,
        ResourceConstraint::Eq(e) => EntityMatch::Eq(e),
        ResourceConstraint::In(e) => EntityMatch::In(e),
        ResourceConstraint::Is(t) => EntityMatch::Is(t),
        ResourceConstraint::IsIn(t, e) => EntityMatch::IsIn(t, e),
    }
}

/// How to evaluate: with guards and shortcuts (always, in production), or
/// by handing Cedar the whole action slot (the reference the indexed path is
/// tested against).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Indexed,
    Reference,
}

#[derive(Debug)]
struct SlotPolicy {
    policy: Policy,
    id: String,
    effect: Effect,
    principal: EntityMatch,
    resource: EntityMatch,
    guards: Vec<Guard>,
    unconditional: bool,
}

/// Sets of candidate policies built so far, keyed by candidate indices.
/// Bounded: past the cap, sets are built per decision and not kept.
type SetCache = RwLock<HashMap<Vec<u32>, Arc<PolicySet>>>;
const CACHE_CAP: usize = 4096;

#[derive(Debug, Default)]
struct ActionSlot {
    policies: Vec<SlotPolicy>,
    cache: SetCache,
}

impl ActionSlot {
    fn candidate_set(&self, candidates: Vec<u32>) -> Result<Arc<PolicySet>, PolicyError> {
        {
            let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
            if let Some(set) = cache.get(&candidates) {
                return Ok(Arc::clone(set));
            }
        }
        let set = PolicySet::from_policies(
            candidates
                .iter()
                .filter_map(|&i| self.policies.get(i as usize))
                .map(|p| p.policy.clone()),
        )
        .map_err(|e| PolicyError::Internal(e.to_string()))?;
        let set = Arc::new(set);
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() < CACHE_CAP {
            cache.insert(candidates, Arc::clone(&set));
        }
        Ok(set)
    }
}

/// One layer part (org, one team, or project), split by action.
#[derive(Debug)]
pub(crate) struct Part {
    slots: Vec<ActionSlot>,
    len: usize,
}

/// What one part says about one request.
#[derive(Debug, Default)]
pub(crate) struct PartOutcome {
    /// Satisfied forbids.
    pub forbids: Vec<String>,
    /// Satisfied permits (complete when no forbid is satisfied).
    pub permits: Vec<String>,
    /// Some permit's scope covers the request.
    pub permit_in_scope: bool,
    /// Evaluation errors.
    pub errors: Vec<EvalError>,
}

/// Builds the Cedar input on first use and keeps it for the other parts.
pub(crate) struct LazyInput<'a> {
    pub build: &'a dyn Fn() -> Result<CedarInput, PolicyError>,
    pub input: Option<CedarInput>,
}

impl LazyInput<'_> {
    fn get(&mut self) -> Result<&CedarInput, PolicyError> {
        if self.input.is_none() {
            self.input = Some((self.build)()?);
        }
        self.input
            .as_ref()
            .ok_or_else(|| PolicyError::Internal("cedar input".into()))
    }
}

impl Part {
    /// Index `policies` by the actions their scope can match.
    pub fn new(names: &Names, policies: &[(String, Policy)]) -> Result<Self, PolicyError> {
        let mut slots: Vec<ActionSlot> = (0..SLOTS).map(|_| ActionSlot::default()).collect();
        for (id, p) in policies {
            let actions: Vec<usize> = match p.action_constraint() {
                ActionConstraint::Any => (0..SLOTS).collect(),
                ActionConstraint::Eq(a) => slot_of(names, &a).into_iter().collect(),
                ActionConstraint::In(list) => {
                    list.iter().filter_map(|a| slot_of(names, a)).collect()
                }
            };
            let unconditional = !p.has_non_scope_constraint();
            // Reading guards needs the policy's JSON form, which costs a
            // re-parse: only do it for policies that have conditions.
            // Forbids are read through Cedar's own parser (a wrong guard on a
            // forbid could allow); permits, the bulk of a bundle, through the
            // cheap text reader (a wrong guard there could only deny), which
            // tests check against Cedar's form.
            let guards = match (unconditional, p.effect()) {
                (true, _) => Vec::new(),
                (false, Effect::Forbid) => guard::est(p)
                    .as_ref()
                    .map(guard::guards)
                    .unwrap_or_default(),
                (false, Effect::Permit) => {
                    guard::guards_from_text(&p.to_cedar().unwrap_or_default())
                }
            };
            for a in actions {
                let slot = slots
                    .get_mut(a)
                    .ok_or_else(|| PolicyError::Internal("action slot".into()))?;
                slot.policies.push(SlotPolicy {
                    policy: p.clone(),
                    id: id.clone(),
                    effect: p.effect(),
                    principal: principal_match(p.principal_constraint()),
                    resource: resource_match(p.resource_constraint()),
                    guards: guards.clone(),
                    unconditional,
                });
            }
        }
        Ok(Self {
            slots,
            len: policies.len(),
        })
    }

    /// Whether a permit in this part can apply to some server action.
    pub fn has_server_permit(&self) -> bool {
        self.slots
            .iter()
            .skip(Action::ALL.len())
            .flat_map(|s| &s.policies)
            .any(|p| matches!(p.effect, Effect::Permit))
    }

    /// Number of policies in this part.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Evaluate the part for a request.
    pub fn evaluate(
        &self,
        request: &Request,
        facts: &Facts,
        input: &mut LazyInput<'_>,
        mode: Mode,
    ) -> Result<PartOutcome, PolicyError> {
        self.evaluate_slot(
            request.action().index(),
            |g| g.may_hold(request.resource()),
            facts,
            input,
            mode,
        )
    }

    /// Evaluate the part for a server request (its guards are the gate's
    /// resource shortcuts, so every conditional policy goes to Cedar).
    pub fn evaluate_server(
        &self,
        action: ServerAction,
        facts: &Facts,
        input: &mut LazyInput<'_>,
    ) -> Result<PartOutcome, PolicyError> {
        self.evaluate_slot(
            Action::ALL.len() + action.index(),
            |_| true,
            facts,
            input,
            Mode::Indexed,
        )
    }

    fn evaluate_slot(
        &self,
        slot: usize,
        may_hold: impl Fn(&Guard) -> bool,
        facts: &Facts,
        input: &mut LazyInput<'_>,
        mode: Mode,
    ) -> Result<PartOutcome, PolicyError> {
        let mut out = PartOutcome::default();
        let Some(slot) = self.slots.get(slot) else {
            return Ok(out);
        };
        if slot.policies.is_empty() {
            return Ok(out);
        }
        let mut candidates: Vec<u32> = Vec::new();
        for (i, sp) in slot.policies.iter().enumerate() {
            let in_scope = sp
                .principal
                .matches(&facts.principal, &facts.principal_ancestors)
                && sp
                    .resource
                    .matches(&facts.resource, &facts.resource_ancestors);
            if !in_scope {
                continue;
            }
            if matches!(sp.effect, Effect::Permit) {
                out.permit_in_scope = true;
            }
            if mode == Mode::Reference {
                continue;
            }
            if sp.unconditional {
                // Scope matched and there is no condition: satisfied, and
                // it cannot error.
                match sp.effect {
                    Effect::Permit => out.permits.push(sp.id.clone()),
                    Effect::Forbid => out.forbids.push(sp.id.clone()),
                }
            } else if sp.guards.iter().all(&may_hold) {
                candidates.push(u32::try_from(i).unwrap_or(u32::MAX));
            }
        }
        let set: Arc<PolicySet> = match mode {
            Mode::Reference => Arc::new(
                PolicySet::from_policies(slot.policies.iter().map(|p| p.policy.clone()))
                    .map_err(|e| PolicyError::Internal(e.to_string()))?,
            ),
            Mode::Indexed if candidates.is_empty() => return Ok(out),
            Mode::Indexed => slot.candidate_set(candidates)?,
        };
        let input = input.get()?;
        let response = Authorizer::new().is_authorized(&input.request, &set, &input.entities);
        let reasons = response.diagnostics().reason().map(|id| id.to_string());
        match response.decision() {
            CedarDecision::Allow => out.permits.extend(reasons),
            CedarDecision::Deny => out.forbids.extend(reasons),
        }
        out.errors = response
            .diagnostics()
            .errors()
            .map(|e| match e {
                cedar_policy::AuthorizationError::PolicyEvaluationError(pe) => EvalError {
                    policy: pe.policy_id().to_string(),
                    message: pe.inner().to_string(),
                },
            })
            .collect();
        Ok(out)
    }
}
