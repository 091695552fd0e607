//! `stele policy validate --json` and `stele policy test --json`: the same
//! checks and exit codes as the text forms (0 valid / all passed, 1 not),
//! as one JSON document each (docs/json/policy-validate.schema.json,
//! policy-test.schema.json); and `stele policy bench`'s figures, as text or
//! JSON (policy-bench.schema.json).

use std::path::Path;
use std::process::ExitCode;

use schemars::JsonSchema;
use serde::Serialize;
use stele_policy::synthetic::{self, BenchReport};
use stele_policy::tests_format::{run_tests, CaseOutcome};
use stele_policy::{Bundle, Severity};

/// `stele policy validate --json`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateReport {
    /// The bundle loads, its tests parse (and, with `--deny-warnings`, no warning).
    pub ok: bool,
    /// Why it does not (the file, line and what is wrong).
    pub error: Option<String>,
    /// The bundle's digest (in every decision of the log).
    pub digest: Option<String>,
    /// Policies loaded.
    pub policies: usize,
    /// Teams.
    pub teams: usize,
    /// Users in members.toml.
    pub users: usize,
    /// Test cases in tests/*.json.
    pub tests: usize,
    /// Rules that load but are probably mistakes.
    pub lints: Vec<LintReport>,
}

/// One lint.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LintReport {
    /// The lint's id, e.g. `ask-misspelt`.
    pub id: String,
    /// `note` or `warning`.
    pub severity: LintSeverity,
    /// Where (file:line).
    pub location: String,
    /// The policy concerned.
    pub policy: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
}

/// How serious a lint is.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LintSeverity {
    /// Worth knowing.
    Note,
    /// Probably a mistake (fatal with `--deny-warnings`).
    Warning,
}

/// `stele policy test --json`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestReport {
    /// Every case passed (and there was at least one).
    pub ok: bool,
    /// Why the tests could not run.
    pub error: Option<String>,
    /// Cases passed.
    pub passed: usize,
    /// Cases failed.
    pub failed: usize,
    /// Each case.
    pub cases: Vec<CaseReport>,
}

/// One test case.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseReport {
    /// Its name.
    pub name: String,
    /// Where it is written.
    pub location: String,
    /// `pass` or `fail`.
    pub result: CaseResultName,
    /// Why it failed.
    pub why: Option<String>,
}

/// A case's result.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CaseResultName {
    /// As expected.
    Pass,
    /// Not as expected.
    Fail,
}

fn code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `stele policy validate --json`.
pub fn validate(bundle: &Path, deny_warnings: bool) -> anyhow::Result<ExitCode> {
    let mut r = ValidateReport {
        ok: false,
        error: None,
        digest: None,
        policies: 0,
        teams: 0,
        users: 0,
        tests: 0,
        lints: Vec::new(),
    };
    match Bundle::load(bundle) {
        Err(e) => r.error = Some(e.to_string()),
        Ok(b) => {
            r.digest = Some(b.digest().to_string());
            r.policies = b.policy_count();
            r.teams = b.teams().count();
            r.users = b.members().users().count();
            r.lints = b
                .lints()
                .iter()
                .map(|l| LintReport {
                    id: l.id.as_str().to_string(),
                    severity: match l.id.severity() {
                        Severity::Note => LintSeverity::Note,
                        Severity::Warning => LintSeverity::Warning,
                    },
                    location: l.location.to_string(),
                    policy: l.policy.clone(),
                    message: l.message.clone(),
                })
                .collect();
            match run_tests(&b) {
                Ok(t) => {
                    r.tests = t.cases.len();
                    let warnings = r
                        .lints
                        .iter()
                        .filter(|l| matches!(l.severity, LintSeverity::Warning))
                        .count();
                    r.ok = !(deny_warnings && warnings > 0);
                    if !r.ok {
                        r.error = Some(format!("{warnings} warning(s) and --deny-warnings"));
                    }
                }
                Err(e) => r.error = Some(e.to_string()),
            }
        }
    }
    super::json::pretty(&r)?;
    Ok(code(r.ok))
}

/// `stele policy test --json`.
pub fn test(bundle: &Path) -> anyhow::Result<ExitCode> {
    let mut r = TestReport {
        ok: false,
        error: None,
        passed: 0,
        failed: 0,
        cases: Vec::new(),
    };
    match Bundle::load(bundle)
        .map_err(|e| e.to_string())
        .and_then(|b| run_tests(&b).map_err(|e| e.to_string()))
    {
        Err(e) => r.error = Some(e),
        Ok(report) => {
            r.passed = report.passed();
            r.failed = report.failed();
            r.cases = report
                .cases
                .iter()
                .map(|c| CaseReport {
                    name: c.name.clone(),
                    location: c.location.to_string(),
                    result: match c.outcome {
                        CaseOutcome::Pass => CaseResultName::Pass,
                        CaseOutcome::Fail(_) => CaseResultName::Fail,
                    },
                    why: match &c.outcome {
                        CaseOutcome::Pass => None,
                        CaseOutcome::Fail(w) => Some(w.clone()),
                    },
                })
                .collect();
            r.ok = r.failed == 0 && !r.cases.is_empty();
            if r.cases.is_empty() {
                r.error = Some(format!("no tests in {}/tests/*.json", bundle.display()));
            }
        }
    }
    super::json::pretty(&r)?;
    Ok(code(r.ok))
}

/// `stele policy bench --json`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBench {
    /// Policies in the synthetic bundle (org, teams, project).
    pub policies: usize,
    /// Teams in it.
    pub teams: usize,
    /// First load (read, parse, validate, index, digest), in ms.
    pub load_ms: f64,
    /// Median of five further loads, in ms.
    pub load_median_ms: f64,
    /// Decisions timed.
    pub decisions: usize,
    /// Median decision, in µs.
    pub p50_us: f64,
    /// 99th percentile, in µs.
    pub p99_us: f64,
    /// Slowest decision, in µs.
    pub max_us: f64,
    /// Decisions that allowed.
    pub allow: usize,
    /// Decisions that denied.
    pub deny: usize,
    /// Decisions that would ask a person.
    pub ask: usize,
}

/// Print `stele policy bench`'s figures.
pub fn bench(r: &BenchReport, json: bool) -> anyhow::Result<ExitCode> {
    let us = |d: std::time::Duration| d.as_secs_f64() * 1e6;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    if json {
        super::json::pretty(&PolicyBench {
            policies: r.policies,
            teams: synthetic::TEAMS,
            load_ms: ms(r.load),
            load_median_ms: ms(r.load_median),
            decisions: r.decisions,
            p50_us: us(r.p50),
            p99_us: us(r.p99),
            max_us: us(r.max),
            allow: r.effects[0],
            deny: r.effects[1],
            ask: r.effects[2],
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    crate::outln!(
        "policies:  {} (org, {} teams, project)",
        r.policies,
        synthetic::TEAMS
    );
    crate::outln!(
        "load:      {:.1} ms first, {:.1} ms median of 5",
        ms(r.load),
        ms(r.load_median)
    );
    crate::outln!("decisions: {}", r.decisions);
    crate::outln!("p50:       {:.2} µs", us(r.p50));
    crate::outln!("p99:       {:.2} µs", us(r.p99));
    crate::outln!("max:       {:.2} µs", us(r.max));
    crate::outln!(
        "effects:   {} allow, {} deny, {} ask",
        r.effects[0],
        r.effects[1],
        r.effects[2]
    );
    Ok(ExitCode::SUCCESS)
}
