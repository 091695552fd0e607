//! A loaded, validated policy bundle, and deciding with it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use cedar_policy::{EntityUid, Policy, Schema};

use crate::ask::{ask_spelling, AskSpelling, Asked};
use crate::cedar_req::{cedar_input, facts, Names};
use crate::decision::{
    combine, Decision, Effect, EvalError, LayerResult, PolicyEffect, PolicyInfo,
};
use crate::digest::BundleDigest;
use crate::error::PolicyError;
use crate::layer::{Layer, LayerKind, LazyInput, Mode, Part, PartOutcome};
use crate::layout::{read_bundle, BundleFiles, TextFile};
use crate::lint::{policy_lints, team_lints, ActionScope, Lint, PolicyFacts};
use crate::members::{Members, MEMBERS_FILE};
use crate::request::{Approval, Request};
use crate::schema::{check_bundle_schema, stele_schema, SCHEMA_VERSION};
use crate::source::{parse_file, SourcePolicy};

/// A policy bundle, loaded whole or not at all. Immutable once loaded: its
/// digest is fixed for the life of the value (load it once per session).
#[derive(Debug)]
pub struct Bundle {
    root: PathBuf,
    pub(crate) digest: BundleDigest,
    pub(crate) schema: Schema,
    pub(crate) names: Names,
    pub(crate) org: Part,
    pub(crate) teams: BTreeMap<String, Part>,
    pub(crate) project: Option<Part>,
    members: Members,
    team_uids: HashMap<String, Vec<EntityUid>>,
    pub(crate) info: HashMap<String, PolicyInfo>,
    tests: Vec<TextFile>,
    lints: Vec<Lint>,
}

impl Bundle {
    /// Load and strictly validate the bundle in `dir`. Any problem (syntax,
    /// schema, unknown types, duplicate ids, missing org layer, unknown teams
    /// in the members file, stray files, symlinks) refuses the whole bundle.
    pub fn load(dir: impl AsRef<Path>) -> Result<Bundle, PolicyError> {
        let root = dir.as_ref().to_path_buf();
        let files = read_bundle(&root)?;
        Self::compile(root, files)
    }

    fn compile(root: PathBuf, files: BundleFiles) -> Result<Bundle, PolicyError> {
        check_bundle_schema(files.schema.as_ref().map(|f| f.text.as_str()))?;
        let schema = stele_schema()?;
        // One validator for every file: building one copies the schema.
        let validator = cedar_policy::Validator::new(schema.clone());
        let names = Names::new()?;

        let known_teams: BTreeSet<String> = files.teams.keys().cloned().collect();
        let mut info: HashMap<String, PolicyInfo> = HashMap::new();
        let mut facts: Vec<PolicyFacts> = Vec::new();
        let mut load_layer = |layer: Layer,
                              layer_files: &[TextFile],
                              info: &mut HashMap<String, PolicyInfo>|
         -> Result<Vec<(String, Policy)>, PolicyError> {
            let mut policies = Vec::new();
            for f in layer_files {
                let parsed = parse_file(&f.rel, &f.text, &validator)?;
                if parsed.is_empty() {
                    return Err(PolicyError::Layout {
                        location: crate::error::Location::file(&f.rel),
                        message: "this policy file holds no policies (empty, or only \
                                  comments): a file in a layer folder must hold at least one \
                                  policy; delete it if it is not needed"
                            .into(),
                    });
                }
                for sp in parsed {
                    let SourcePolicy {
                        policy,
                        id,
                        location,
                        annotations,
                    } = sp;
                    // A misspelt team in a forbid would be a ceiling that
                    // never applies: refuse teams without a folder.
                    for uid in policy.entity_literals() {
                        let ty = uid.type_name().to_string();
                        let name = uid.id().unescaped().to_owned();
                        if ty == "Team" && !known_teams.contains(&name) {
                            return Err(PolicyError::Schema {
                                location,
                                policy: id,
                                message: format!(
                                    "unknown team `{name}` (no teams/{name}/ folder in the bundle)"
                                ),
                            });
                        }
                        // Likewise a misspelt role would never match anyone.
                        if ty == "Role" && !crate::server_action::ROLES.contains(&name.as_str()) {
                            return Err(PolicyError::Schema {
                                location,
                                policy: id,
                                message: format!(
                                    "unknown role `{name}` (the server's roles: {})",
                                    crate::server_action::ROLES.join(", ")
                                ),
                            });
                        }
                    }
                    if let Some(first) = info.get(&id) {
                        return Err(PolicyError::DuplicatePolicyId {
                            location,
                            id,
                            first: first.location.clone(),
                        });
                    }
                    let effect = match policy.effect() {
                        cedar_policy::Effect::Permit => PolicyEffect::Permit,
                        cedar_policy::Effect::Forbid => PolicyEffect::Forbid,
                    };
                    let spellings: Vec<(&String, AskSpelling)> =
                        annotations.keys().map(|k| (k, ask_spelling(k))).collect();
                    if effect == PolicyEffect::Permit {
                        if let Some((key, _)) = spellings
                            .iter()
                            .find(|(_, a)| matches!(a, AskSpelling::Exact | AskSpelling::Variant))
                        {
                            return Err(PolicyError::Annotation {
                                location,
                                policy: id,
                                message: format!(
                                    "`@{key}` on a permit: a permit allows without asking, so \
                                     this would never ask; to ask first, add a forbid with \
                                     `@ask` and `unless {{ context has approval && \
                                     context.approval.granted }}` next to the permit"
                                ),
                            });
                        }
                    }
                    let ask = annotations.contains_key("ask") && effect == PolicyEffect::Forbid;
                    // Only a forbid with conditions can read the approval.
                    let est = match effect {
                        PolicyEffect::Forbid if policy.has_non_scope_constraint() => {
                            crate::guard::est(&policy)
                        }
                        PolicyEffect::Forbid | PolicyEffect::Permit => None,
                    };
                    let approval_literals = match (&est, ask) {
                        (Some(e), true) => crate::ask::literals(e),
                        _ => crate::ask::AskLiterals::default(),
                    };
                    facts.push(PolicyFacts {
                        actions: action_scope(&names, &policy),
                        id: id.clone(),
                        org: layer == Layer::Org,
                        forbid: effect == PolicyEffect::Forbid,
                        location: location.clone(),
                        ask,
                        misspelt_ask: spellings
                            .iter()
                            .find(|(_, a)| matches!(a, AskSpelling::Variant | AskSpelling::Near))
                            .map(|(k, _)| (*k).clone()),
                        mentions_approval: est.as_ref().is_some_and(crate::ask::mentions_approval),
                    });
                    info.insert(
                        id.clone(),
                        PolicyInfo {
                            layer: layer.clone(),
                            effect,
                            location,
                            annotations,
                            approval_literals,
                        },
                    );
                    policies.push((id, policy));
                }
            }
            Ok(policies)
        };

        let org_policies = load_layer(Layer::Org, &files.org, &mut info)?;
        if org_policies.is_empty() {
            return Err(PolicyError::Layout {
                location: crate::error::Location::file("org/"),
                message: "the required org layer has no policies; refusing the bundle".into(),
            });
        }
        let org = Part::new(&names, &org_policies)?;
        let mut teams = BTreeMap::new();
        for (team, tfiles) in &files.teams {
            let ps = load_layer(Layer::Team(team.clone()), tfiles, &mut info)?;
            teams.insert(team.clone(), Part::new(&names, &ps)?);
        }
        let project = if files.project.is_empty() {
            None
        } else {
            let ps = load_layer(Layer::Project, &files.project, &mut info)?;
            Some(Part::new(&names, &ps)?)
        };

        let members_text = files.members.as_ref().map_or("", |m| m.text.as_str());
        if files.members.is_none() {
            return Err(PolicyError::Members {
                location: crate::error::Location::file(MEMBERS_FILE),
                message: "missing (list users and their teams; `[users]` alone if none)".into(),
            });
        }
        let members = Members::parse(members_text, &known_teams)?;
        let team_uids = members
            .users()
            .map(|u| {
                let uids = members.teams_of(u).map(|t| names.team_uid(t)).collect();
                (u.to_owned(), uids)
            })
            .collect();

        // Every file the bundle was read from: nothing in it can change
        // without changing the digest.
        let digest_input: Vec<(String, Vec<u8>)> = files
            .all()
            .map(|f| (f.rel.clone(), f.text.as_bytes().to_vec()))
            .collect();
        let digest = BundleDigest::of_files(&digest_input);
        let mut lints: Vec<Lint> = facts.iter().flat_map(policy_lints).collect();
        lints.extend(team_lints(teams.keys().map(String::as_str), |t| {
            members.users().any(|u| members.teams_of(u).any(|x| x == t))
        }));

        Ok(Bundle {
            root,
            digest,
            schema,
            names,
            org,
            teams,
            project,
            members,
            team_uids,
            info,
            tests: files.tests,
            lints,
        })
    }

    /// What `stele policy validate` points out: rules that load but are
    /// probably not what their author meant (see [`crate::lint`]).
    pub fn lints(&self) -> &[Lint] {
        &self.lints
    }

    /// The bundle digest, `sha256:…` when displayed.
    pub fn digest(&self) -> &BundleDigest {
        &self.digest
    }

    /// The folder it was loaded from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Users and teams.
    pub fn members(&self) -> &Members {
        &self.members
    }

    /// Total number of policies.
    pub fn policy_count(&self) -> usize {
        self.org.len()
            + self.teams.values().map(Part::len).sum::<usize>()
            + self.project.as_ref().map_or(0, Part::len)
    }

    /// Team names (from `teams/`).
    pub fn teams(&self) -> impl Iterator<Item = &str> {
        self.teams.keys().map(String::as_str)
    }

    pub(crate) fn test_files(&self) -> &[TextFile] {
        &self.tests
    }

    /// Decide a request. Never fails: an internal error becomes a Deny
    /// carrying the error (fail closed).
    pub fn decide(&self, request: &Request) -> Decision {
        self.decide_in(request, Mode::Indexed)
    }

    /// [`Bundle::decide`] without guards and shortcuts: Cedar evaluates every
    /// policy of the action's slots. Same answers, slower; exists so tests can
    /// check the indexed path against it.
    #[doc(hidden)]
    pub fn decide_reference(&self, request: &Request) -> Decision {
        self.decide_in(request, Mode::Reference)
    }

    fn decide_in(&self, request: &Request, mode: Mode) -> Decision {
        let first = match self.evaluate(request, mode) {
            Ok(d) => d,
            Err(e) => return self.internal_deny(e),
        };
        if first.effect != Effect::Deny || !self.is_ask_candidate(request, &first) {
            return first;
        }
        // @ask rule (c): only ask if some granted approval would actually
        // allow (see crate::ask for the candidates tried).
        match self.some_candidate_allows(request, &first, Asked::Anyone, mode) {
            Ok(true) => Decision {
                effect: Effect::Ask,
                layer: first
                    .determining
                    .iter()
                    .map(|d| d.layer.kind())
                    .max()
                    .or(first.layer),
                ..first
            },
            Ok(false) => first,
            Err(e) => self.internal_deny(e),
        }
    }

    /// Whether one of the candidate approvals for `denied`'s determining
    /// `@ask` rules makes the bundle allow `request`.
    fn some_candidate_allows(
        &self,
        request: &Request,
        denied: &Decision,
        asked: Asked<'_>,
        mode: Mode,
    ) -> Result<bool, PolicyError> {
        let literals = denied
            .determining
            .iter()
            .filter_map(|d| self.info.get(&d.id))
            .map(|i| &i.approval_literals);
        let members = |t: &str| {
            self.members
                .members_of(t)
                .map(str::to_owned)
                .collect::<Vec<_>>()
                .into_iter()
        };
        for approval in crate::ask::candidates(literals, members, asked) {
            if self
                .evaluate(&request.with_approval(approval), mode)?
                .effect
                == Effect::Allow
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether `approver`, answering through `method`, could lift an
    /// [`Effect::Ask`] decision on `request` by granting it (with some
    /// ticket the rules name, or none). The runtime asks this of the
    /// approvers it can reach before asking one: a rule that needs someone
    /// other than the requester is refused, not asked, when the requester
    /// is the only person there. False for any other decision.
    pub fn could_grant(
        &self,
        request: &Request,
        decision: &Decision,
        approver: &str,
        method: &str,
    ) -> bool {
        decision.effect == Effect::Ask
            && self
                .some_candidate_allows(
                    request,
                    decision,
                    Asked::Only { approver, method },
                    Mode::Indexed,
                )
                .unwrap_or(false)
    }

    /// Decide again after an approver answered an `Ask`: the request with the
    /// real approval record in its context. The result is Allow or Deny
    /// (never Ask again: an approval is already present).
    pub fn decide_with_approval(&self, request: &Request, approval: Approval) -> Decision {
        self.decide(&request.with_approval(approval))
    }

    /// Check a request against the schema as Cedar sees it (for tools and
    /// tests; `decide` trusts the typed builder and skips this for speed).
    pub fn check_request(&self, request: &Request) -> Result<(), PolicyError> {
        let f = facts(&self.names, request, |u| self.teams_for(u))?;
        cedar_input(&self.names, request, &f, Some(&self.schema)).map(|_| ())
    }

    fn teams_for(&self, user: &str) -> &[EntityUid] {
        self.team_uids.get(user).map_or(&[], Vec::as_slice)
    }

    fn is_ask_candidate(&self, request: &Request, d: &Decision) -> bool {
        request.context().approval.is_none()
            && d.errors.is_empty()
            && !d.determining.is_empty()
            && d.determining
                .iter()
                .all(|p| p.effect == PolicyEffect::Forbid && p.annotations.contains_key("ask"))
    }

    pub(crate) fn internal_deny(&self, e: PolicyError) -> Decision {
        Decision {
            effect: Effect::Deny,
            determining: Vec::new(),
            layer: None,
            layers: Vec::new(),
            errors: vec![EvalError {
                policy: String::new(),
                message: e.to_string(),
            }],
            bundle_digest: self.digest,
            schema_version: SCHEMA_VERSION,
        }
    }

    fn evaluate(&self, request: &Request, mode: Mode) -> Result<Decision, PolicyError> {
        let facts = facts(&self.names, request, |u| self.teams_for(u))?;
        let build = || cedar_input(&self.names, request, &facts, None);
        let mut input = LazyInput {
            build: &build,
            input: None,
        };
        self.combine_layers(self.members.teams_of(request.principal()), |part| {
            part.evaluate(request, &facts, &mut input, mode)
        })
    }

    /// Evaluate the org layer, the layers of `teams` (the principal's, each
    /// once) and the project layer with `eval`, and combine them: the one
    /// layered decision the gate and the server's actions share.
    pub(crate) fn combine_layers<'t>(
        &self,
        teams: impl IntoIterator<Item = &'t str>,
        mut eval: impl FnMut(&Part) -> Result<PartOutcome, PolicyError>,
    ) -> Result<Decision, PolicyError> {
        let mut absorb = |acc: &mut LayerResult, part: &Part| -> Result<(), PolicyError> {
            let o = eval(part)?;
            acc.forbids.extend(o.forbids);
            acc.permits.extend(o.permits);
            acc.errors.extend(o.errors);
            acc.permit_in_scope |= o.permit_in_scope;
            Ok(())
        };
        let mut layers = Vec::with_capacity(3);
        let mut org = LayerResult::default();
        absorb(&mut org, &self.org)?;
        layers.push((LayerKind::Org, org));
        let mut team = LayerResult::default();
        for t in teams {
            if let Some(part) = self.teams.get(t) {
                absorb(&mut team, part)?;
            }
        }
        layers.push((LayerKind::Team, team));
        if let Some(p) = &self.project {
            let mut project = LayerResult::default();
            absorb(&mut project, p)?;
            layers.push((LayerKind::Project, project));
        }
        let combined = combine(layers);
        let mut determining: Vec<_> = combined
            .reasons
            .iter()
            .filter_map(|id| self.info.get(id).map(|i| i.determining(id)))
            .collect();
        determining.sort_by(|a, b| (&a.layer, &a.id).cmp(&(&b.layer, &b.id)));
        determining.dedup_by(|a, b| a.id == b.id);
        Ok(Decision {
            effect: if combined.allowed {
                Effect::Allow
            } else {
                Effect::Deny
            },
            determining,
            layer: combined.layer,
            layers: combined.layers,
            errors: combined.errors,
            bundle_digest: self.digest,
            schema_version: SCHEMA_VERSION,
        })
    }
}

/// Which kinds of action `policy`'s scope covers (for the lints).
fn action_scope(names: &Names, policy: &Policy) -> ActionScope {
    let uids: Vec<EntityUid> = match policy.action_constraint() {
        cedar_policy::ActionConstraint::Any => return ActionScope::Every,
        cedar_policy::ActionConstraint::Eq(a) => vec![a],
        cedar_policy::ActionConstraint::In(list) => list,
    };
    let server = uids
        .iter()
        .filter(|u| names.server_action_of(u).is_some())
        .count();
    match (server, uids.len() - server) {
        (0, _) => ActionScope::Gate,
        (_, 0) => ActionScope::Server,
        _ => ActionScope::Both,
    }
}
