//! A loaded, validated policy bundle, and deciding with it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use cedar_policy::{EntityUid, Policy, Schema};

use crate::cedar_req::{cedar_input, facts, Names};
use crate::decision::{
    combine, Decision, Effect, EvalError, LayerResult, PolicyEffect, PolicyInfo,
};
use crate::digest::BundleDigest;
use crate::error::PolicyError;
use crate::layer::{Layer, LayerKind, LazyInput, Mode, Part};
use crate::layout::{read_bundle, BundleFiles, TextFile, SCHEMA_FILE};
use crate::members::{Members, MEMBERS_FILE};
use crate::request::{Approval, ApprovalOutcome, Request};
use crate::schema::{check_bundle_schema, stele_schema, SCHEMA_VERSION};
use crate::source::{parse_file, SourcePolicy};

/// A policy bundle, loaded whole or not at all. Immutable once loaded: its
/// digest is fixed for the life of the value (load it once per session).
#[derive(Debug)]
pub struct Bundle {
    root: PathBuf,
    digest: BundleDigest,
    schema: Schema,
    names: Names,
    org: Part,
    teams: BTreeMap<String, Part>,
    project: Option<Part>,
    members: Members,
    team_uids: HashMap<String, Vec<EntityUid>>,
    info: HashMap<String, PolicyInfo>,
    tests: Vec<TextFile>,
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
        let mut digest_input: Vec<(String, Vec<u8>)> = Vec::new();
        let mut load_layer = |layer: Layer,
                              layer_files: &[TextFile],
                              info: &mut HashMap<String, PolicyInfo>|
         -> Result<Vec<(String, Policy)>, PolicyError> {
            let mut policies = Vec::new();
            for f in layer_files {
                digest_input.push((f.rel.clone(), f.text.as_bytes().to_vec()));
                for sp in parse_file(&f.rel, &f.text, &validator)? {
                    let SourcePolicy {
                        policy,
                        id,
                        location,
                        annotations,
                    } = sp;
                    // A misspelt team in a forbid would be a ceiling that
                    // never applies: refuse teams without a folder.
                    for uid in policy.entity_literals() {
                        let is_team = uid.type_name().to_string() == "Team";
                        let team = uid.id().unescaped().to_owned();
                        if is_team && !known_teams.contains(&team) {
                            return Err(PolicyError::Schema {
                                location,
                                policy: id,
                                message: format!(
                                    "unknown team `{team}` (no teams/{team}/ folder in the bundle)"
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
                    info.insert(
                        id.clone(),
                        PolicyInfo {
                            layer: layer.clone(),
                            effect,
                            location,
                            annotations,
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

        if let Some(s) = &files.schema {
            digest_input.push((SCHEMA_FILE.to_owned(), s.text.as_bytes().to_vec()));
        }
        digest_input.push((MEMBERS_FILE.to_owned(), members_text.as_bytes().to_vec()));
        let digest = BundleDigest::of_files(&digest_input);

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
        })
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
        // @ask rule (c): only ask if a granted approval would actually allow.
        let hypothetical = request.with_approval(Approval {
            outcome: ApprovalOutcome::Granted,
            approver: "(hypothetical)".into(),
            ticket: String::new(),
        });
        match self.evaluate(&hypothetical, mode) {
            Ok(again) if again.effect == Effect::Allow => Decision {
                effect: Effect::Ask,
                layer: first
                    .determining
                    .iter()
                    .map(|d| d.layer.kind())
                    .max()
                    .or(first.layer),
                ..first
            },
            Ok(_) => first,
            Err(e) => self.internal_deny(e),
        }
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
        let teams = self.teams_for(request.principal());
        let f = facts(&self.names, request, teams)?;
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
                .all(|p| p.annotations.contains_key("ask"))
    }

    fn internal_deny(&self, e: PolicyError) -> Decision {
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
        let facts = facts(&self.names, request, self.teams_for(request.principal()))?;
        let build = || cedar_input(&self.names, request, &facts, None);
        let mut input = LazyInput {
            build: &build,
            input: None,
        };
        let mut absorb = |acc: &mut LayerResult, part: &Part| -> Result<(), PolicyError> {
            let o = part.evaluate(request, &facts, &mut input, mode)?;
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
        for t in self.members.teams_of(request.principal()) {
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
