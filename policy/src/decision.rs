//! Decisions with reasons, and how the layers' outcomes combine.
//!
//! Combination (intersection of layers, forbids global):
//! 1. A satisfied `forbid` in any layer denies. Nothing can lift it.
//! 2. An evaluation error in any layer denies (fail closed; Cedar alone
//!    would skip an erroring forbid).
//! 3. A layer whose permits cover the request's scope but none of which is
//!    satisfied denies: that layer speaks to the request and does not allow it.
//! 4. Otherwise, if at least one layer has a satisfied permit, allow.
//! 5. Otherwise deny (deny by default).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::digest::BundleDigest;
use crate::error::Location;
use crate::layer::{Layer, LayerKind};

/// The outcome the runtime acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Go ahead.
    Allow,
    /// Refuse.
    Deny,
    /// Ask a human (or configured approver), then decide again with the
    /// recorded approval via [`crate::Bundle::decide_with_approval`].
    Ask,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
            Effect::Ask => "ask",
        })
    }
}

/// A policy's own effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyEffect {
    /// `permit`.
    Permit,
    /// `forbid`.
    Forbid,
}

/// A policy that determined a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeterminingPolicy {
    /// Its `@id`.
    pub id: String,
    /// Its layer.
    #[serde(serialize_with = "display")]
    pub layer: Layer,
    /// permit or forbid.
    pub effect: PolicyEffect,
    /// Bundle-relative file.
    pub file: String,
    /// 1-based line of its first annotation.
    pub line: u32,
    /// Its annotations (`@id`, `@ask`, `@severity`, …).
    pub annotations: BTreeMap<String, String>,
}

/// A policy that failed to evaluate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvalError {
    /// The policy id.
    pub policy: String,
    /// Cedar's message.
    pub message: String,
}

/// What a layer said about the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A permit was satisfied and no forbid.
    Allow,
    /// A forbid was satisfied.
    Forbid,
    /// Permits cover the request, none satisfied.
    NoPermit,
    /// A policy failed to evaluate.
    Error,
    /// No policy of this layer speaks to the request.
    Abstain,
}

/// One layer's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerVerdict {
    /// Which layer.
    #[serde(serialize_with = "display")]
    pub layer: LayerKind,
    /// What it said.
    pub verdict: Verdict,
}

/// A decision, with everything the audit log needs to say why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Allow, Deny or Ask.
    pub effect: Effect,
    /// The policies that determined it: satisfied permits for Allow, satisfied
    /// forbids for Deny and Ask (empty when nothing permitted: default deny).
    pub determining: Vec<DeterminingPolicy>,
    /// The deciding layer: for Deny the first denying layer (org, team,
    /// project); for Allow and Ask the most specific layer that allowed or
    /// asks; `None` for a default deny.
    #[serde(serialize_with = "display_opt")]
    pub layer: Option<LayerKind>,
    /// Each layer's verdict, org first.
    pub layers: Vec<LayerVerdict>,
    /// Evaluation errors (any error denies).
    pub errors: Vec<EvalError>,
    /// Digest of the bundle that decided.
    #[serde(serialize_with = "display")]
    pub bundle_digest: BundleDigest,
    /// Version of the stele schema.
    pub schema_version: &'static str,
}

impl Decision {
    /// The ids of the determining policies.
    pub fn reasons(&self) -> impl Iterator<Item = &str> {
        self.determining.iter().map(|d| d.id.as_str())
    }
}

fn display<T: fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn display_opt<T: fmt::Display, S: serde::Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// Provenance of a policy, kept by the bundle.
#[derive(Debug, Clone)]
pub(crate) struct PolicyInfo {
    pub layer: Layer,
    pub effect: PolicyEffect,
    pub location: Location,
    pub annotations: BTreeMap<String, String>,
    /// For an `@ask` forbid: the strings, pattern instances, users and
    /// teams its conditions hold, from which candidate approvals are built.
    pub approval_literals: crate::ask::AskLiterals,
}

impl PolicyInfo {
    pub fn determining(&self, id: &str) -> DeterminingPolicy {
        DeterminingPolicy {
            id: id.to_owned(),
            layer: self.layer.clone(),
            effect: self.effect,
            file: self.location.file.clone(),
            line: self.location.line.unwrap_or(0),
            annotations: self.annotations.clone(),
        }
    }
}

/// A layer's combined outcome (its parts' union).
#[derive(Debug, Default)]
pub(crate) struct LayerResult {
    pub forbids: Vec<String>,
    pub permits: Vec<String>,
    pub permit_in_scope: bool,
    pub errors: Vec<EvalError>,
}

impl LayerResult {
    pub fn verdict(&self) -> Verdict {
        if !self.forbids.is_empty() {
            Verdict::Forbid
        } else if !self.errors.is_empty() {
            Verdict::Error
        } else if !self.permits.is_empty() {
            Verdict::Allow
        } else if self.permit_in_scope {
            Verdict::NoPermit
        } else {
            Verdict::Abstain
        }
    }
}

/// The combination before the Ask check: Allow or Deny, reasons, layer.
pub(crate) struct Combined {
    pub allowed: bool,
    pub reasons: Vec<String>,
    pub layer: Option<LayerKind>,
    pub layers: Vec<LayerVerdict>,
    pub errors: Vec<EvalError>,
}

/// Combine the layers (given org, team, project order) per the module rules.
pub(crate) fn combine(layers: Vec<(LayerKind, LayerResult)>) -> Combined {
    let verdicts: Vec<LayerVerdict> = layers
        .iter()
        .map(|(k, r)| LayerVerdict {
            layer: *k,
            verdict: r.verdict(),
        })
        .collect();
    let denies = |v: Verdict| matches!(v, Verdict::Forbid | Verdict::NoPermit | Verdict::Error);
    let first_deny = verdicts.iter().find(|v| denies(v.verdict)).map(|v| v.layer);
    let errors: Vec<EvalError> = layers.iter().flat_map(|(_, r)| r.errors.clone()).collect();
    match first_deny {
        Some(layer) => {
            let forbids: Vec<String> = layers.iter().flat_map(|(_, r)| r.forbids.clone()).collect();
            // Name the first *forbidding* layer when there is one: a
            // forbid is a stronger reason than a missing permit.
            let layer = verdicts
                .iter()
                .find(|v| v.verdict == Verdict::Forbid)
                .map_or(layer, |v| v.layer);
            Combined {
                allowed: false,
                reasons: forbids,
                layer: Some(layer),
                layers: verdicts,
                errors,
            }
        }
        None => {
            let allowing: Vec<&(LayerKind, LayerResult)> = layers
                .iter()
                .filter(|(_, r)| r.verdict() == Verdict::Allow)
                .collect();
            Combined {
                allowed: !allowing.is_empty(),
                reasons: allowing
                    .iter()
                    .flat_map(|(_, r)| r.permits.clone())
                    .collect(),
                layer: allowing.last().map(|(k, _)| *k),
                layers: verdicts,
                errors,
            }
        }
    }
}
