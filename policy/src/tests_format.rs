//! Policy tests in Cedar's JSON test format (as run by `cedar run-tests`),
//! evaluated with stele's layered semantics. A bundle's `tests/*.json` each
//! hold an array of cases:
//!
//! ```json
//! [{
//!   "name": "alice reads a receipt",
//!   "request": {
//!     "principal": "User::\"alice\"",
//!     "action": "Action::\"file.read\"",
//!     "resource": "File::\"receipts/2025/03.pdf\"",
//!     "context": {}
//!   },
//!   "entities": [],
//!   "decision": "allow",
//!   "reason": ["finance.read-receipts"],
//!   "num_errors": 0
//! }]
//! ```
//!
//! Differences from `cedar run-tests`, all in the direction of strictness:
//! `reason` must equal the determining policy ids exactly (Cedar checks a
//! subset); `decision` may also be `"ask"`; `entities` must be empty or
//! absent, because stele derives entities itself (teams from `members.toml`,
//! attributes from the canonical resource id), so tests exercise the real
//! membership. `context` uses the JSON form in [`crate::context_json`].
//! A `net.connect` case whose host is a name may give `"address"` (next to
//! `resource`): the address the name resolved to, so the case checks the
//! decision after resolution (with `resource.address` and `resource.class`);
//! without it, the case checks the decision by name alone.
//!
//! A case may also decide one of the server's own actions (`session.view`,
//! `session.approve`, `audit.export`, `admin`, …): its context then
//! describes the server account and the resource, as
//! [`crate::server_request_json`] says.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::bundle::Bundle;
use crate::context_json::context_from_json;
use crate::decision::{Decision, Effect};
use crate::error::{Location, PolicyError};
use crate::request::{parse_principal, Action, Request, Resource};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: Option<String>,
    request: CaseRequest,
    #[serde(default)]
    entities: Vec<serde_json::Value>,
    decision: Effect2,
    reason: Vec<String>,
    #[serde(default)]
    num_errors: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseRequest {
    principal: String,
    action: String,
    resource: String,
    #[serde(default)]
    context: Option<serde_json::Value>,
    /// For a `Host` that is a name: the address it resolved to (the
    /// decision after resolution). Absent: the decision by name alone.
    #[serde(default)]
    address: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Effect2 {
    Allow,
    Deny,
    Ask,
}

impl From<Effect2> for Effect {
    fn from(e: Effect2) -> Self {
        match e {
            Effect2::Allow => Effect::Allow,
            Effect2::Deny => Effect::Deny,
            Effect2::Ask => Effect::Ask,
        }
    }
}

/// The result of one test case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseOutcome {
    /// Decision, reasons and error count as expected.
    Pass,
    /// What differed, or why the case could not run.
    Fail(String),
}

/// One test case's result.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// Where the case is.
    pub location: Location,
    /// Its name (or `#index`).
    pub name: String,
    /// Pass or fail.
    pub outcome: CaseOutcome,
}

/// All results of a bundle's tests.
#[derive(Debug, Clone, Default)]
pub struct TestReport {
    /// One entry per case, in file and case order.
    pub cases: Vec<CaseResult>,
}

impl TestReport {
    /// Cases that passed.
    pub fn passed(&self) -> usize {
        self.cases
            .iter()
            .filter(|c| c.outcome == CaseOutcome::Pass)
            .count()
    }
    /// Cases that failed.
    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }
}

/// Build a request from the uid strings of a test or of `explain`.
pub fn request_from_parts(
    principal: &str,
    action: &str,
    resource: &str,
    context: Option<&serde_json::Value>,
) -> Result<Request, PolicyError> {
    let principal = parse_principal(principal)?;
    let action: Action = action.parse()?;
    let resource = Resource::from_uid(resource)?;
    let context = match context {
        Some(v) => context_from_json(v)?,
        None => context_from_json(&serde_json::json!({}))?,
    };
    Request::builder(principal, action, resource)
        .context(context)
        .build()
}

fn check(case: &Case, bundle: &Bundle) -> Result<CaseOutcome, PolicyError> {
    if !case.entities.is_empty() {
        return Err(PolicyError::Request(
            "`entities` must be empty: stele derives entities from members.toml and the \
             resource id"
                .into(),
        ));
    }
    let r = &case.request;
    if crate::server_request_json::is_server_action(&r.action) {
        if r.address.is_some() {
            return Err(PolicyError::Request(
                "`address` is for net.connect, not a server action".into(),
            ));
        }
        let request = crate::server_request_json::server_request_from_parts(
            bundle,
            &r.principal,
            &r.action,
            &r.resource,
            r.context.as_ref(),
        )?;
        bundle.check_server_request(&request)?;
        return Ok(compare(case, &bundle.decide_server(&request)));
    }
    let mut request = request_from_parts(&r.principal, &r.action, &r.resource, r.context.as_ref())?;
    if let Some(a) = &r.address {
        request = request.with_address(a)?;
    }
    bundle.check_request(&request)?;
    let d = bundle.decide(&request);
    Ok(compare(case, &d))
}

fn compare(case: &Case, d: &Decision) -> CaseOutcome {
    let mut problems = Vec::new();
    let expected: Effect = case.decision.into();
    if d.effect != expected {
        problems.push(format!("expected {expected}, got {}", d.effect));
    }
    let want: BTreeSet<&str> = case.reason.iter().map(String::as_str).collect();
    let got: BTreeSet<&str> = d.reasons().collect();
    if want != got {
        problems.push(format!(
            "expected reason [{}], got [{}]",
            want.into_iter().collect::<Vec<_>>().join(", "),
            got.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    if d.errors.len() != case.num_errors {
        let msgs: Vec<String> = d
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.policy, e.message))
            .collect();
        problems.push(format!(
            "expected {} error(s), got {} [{}]",
            case.num_errors,
            d.errors.len(),
            msgs.join("; ")
        ));
    }
    if problems.is_empty() {
        CaseOutcome::Pass
    } else {
        CaseOutcome::Fail(problems.join("; "))
    }
}

/// Run every test file of the bundle (`tests/*.json`). A file that is not a
/// JSON array of well-formed cases is an error; a case whose request cannot
/// be built counts as a failure with the reason.
pub fn run_tests(bundle: &Bundle) -> Result<TestReport, PolicyError> {
    let mut report = TestReport::default();
    for file in bundle.test_files() {
        let loc_err = |e: serde_json::Error| PolicyError::TestFile {
            location: Location::at(
                &file.rel,
                u32::try_from(e.line()).unwrap_or(0),
                u32::try_from(e.column()).unwrap_or(0),
            ),
            message: e.to_string(),
        };
        crate::depth::check(&file.rel, &file.text, crate::depth::Syntax::Json)?;
        let cases: Vec<Case> = serde_json::from_str(&file.text).map_err(loc_err)?;
        let mut cursor = 0;
        for (i, case) in cases.iter().enumerate() {
            let name = case.name.clone().unwrap_or_else(|| format!("#{}", i + 1));
            // serde_json gives no spans for values: find the case's name in
            // the text to point at its line.
            let needle = serde_json::to_string(&name).unwrap_or_default();
            let location = match file.text.get(cursor..).and_then(|t| t.find(&needle)) {
                Some(at) => {
                    cursor += at + needle.len();
                    let (l, c) = crate::source::line_col(&file.text, cursor - needle.len());
                    Location::at(&file.rel, l, c)
                }
                None => Location::file(&file.rel),
            };
            let outcome = match check(case, bundle) {
                Ok(o) => o,
                Err(e) => CaseOutcome::Fail(format!("cannot run: {e}")),
            };
            report.cases.push(CaseResult {
                location,
                name,
                outcome,
            });
        }
    }
    Ok(report)
}
