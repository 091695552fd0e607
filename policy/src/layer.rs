//! Layers and their evaluation. Each layer part (org, one team, project) is
//! its own Cedar `PolicySet`, pre-split by action so a decision only
//! evaluates the policies that can apply to its action.
//!
//! A part's outcome for a request is one of: a satisfied `forbid`, a
//! satisfied `permit`, an in-scope permit that is not satisfied ("this layer
//! speaks to the request and does not allow it"), evaluation errors, or
//! nothing at all (the layer abstains).

use std::fmt;

use cedar_policy::{
    ActionConstraint, Authorizer, Decision as CedarDecision, EntityTypeName, EntityUid, Policy,
    PolicySet, PrincipalConstraint, ResourceConstraint,
};

use crate::cedar_req::{Names, Prepared};
use crate::decision::EvalError;
use crate::error::PolicyError;
use crate::request::Action;

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

#[derive(Debug, Default)]
struct ActionSlot {
    set: PolicySet,
    permit_scopes: Vec<(EntityMatch, EntityMatch)>,
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
    /// Satisfied permits (only known when no forbid is satisfied).
    pub permits: Vec<String>,
    /// Some permit's scope covers the request.
    pub permit_in_scope: bool,
    /// Evaluation errors.
    pub errors: Vec<EvalError>,
}

impl Part {
    /// Index `policies` by the actions their scope can match.
    pub fn new(names: &Names, policies: &[Policy]) -> Result<Self, PolicyError> {
        let mut slots: Vec<ActionSlot> = Action::ALL.iter().map(|_| ActionSlot::default()).collect();
        for p in policies {
            let actions: Vec<Action> = match p.action_constraint() {
                ActionConstraint::Any => Action::ALL.to_vec(),
                ActionConstraint::Eq(a) => names.action_of(&a).into_iter().collect(),
                ActionConstraint::In(list) => {
                    list.iter().filter_map(|a| names.action_of(a)).collect()
                }
            };
            for a in actions {
                let slot = slots
                    .get_mut(a.index())
                    .ok_or_else(|| PolicyError::Internal("action slot".into()))?;
                slot.set
                    .add(p.clone())
                    .map_err(|e| PolicyError::Internal(e.to_string()))?;
                if matches!(p.effect(), cedar_policy::Effect::Permit) {
                    slot.permit_scopes.push((
                        principal_match(p.principal_constraint()),
                        resource_match(p.resource_constraint()),
                    ));
                }
            }
        }
        Ok(Self {
            slots,
            len: policies.len(),
        })
    }

    /// Number of policies in this part.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Evaluate the part for a prepared request.
    pub fn evaluate(&self, action: Action, prepared: &Prepared) -> PartOutcome {
        let mut out = PartOutcome::default();
        let Some(slot) = self.slots.get(action.index()) else {
            return out;
        };
        if slot.set.is_empty() {
            return out;
        }
        out.permit_in_scope = slot.permit_scopes.iter().any(|(p, r)| {
            p.matches(&prepared.principal, &prepared.principal_ancestors)
                && r.matches(&prepared.resource, &prepared.resource_ancestors)
        });
        let response =
            Authorizer::new().is_authorized(&prepared.request, &slot.set, &prepared.entities);
        let reasons = response
            .diagnostics()
            .reason()
            .map(|id| id.to_string())
            .collect::<Vec<_>>();
        match response.decision() {
            CedarDecision::Allow => out.permits = reasons,
            CedarDecision::Deny => out.forbids = reasons,
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
        out
    }
}
