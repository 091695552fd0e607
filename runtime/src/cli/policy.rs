//! `stele policy validate|test|explain|schema|bench`: tools for policy
//! authors, over the `stele-policy` crate.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use stele_policy::tests_format::{request_from_parts, run_tests, CaseOutcome};
use stele_policy::{explain, synthetic, Bundle, Effect};

use crate::terminal_safe as safe;

/// Arguments of `stele policy`.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: PolicyCommand,
}

/// `stele policy` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Load a bundle with strict validation (and parse its tests); print a summary.
    Validate {
        /// Bundle folder.
        bundle: PathBuf,
    },
    /// Run the bundle's tests/*.json (Cedar JSON test format: decision and reasons).
    Test {
        /// Bundle folder.
        bundle: PathBuf,
    },
    /// Decide one request and explain why.
    Explain {
        /// Bundle folder.
        bundle: PathBuf,
        /// User, e.g. `alice` or `User::"alice"`.
        #[arg(long)]
        principal: String,
        /// Action, e.g. `file.read`.
        #[arg(long)]
        action: String,
        /// Resource uid, e.g. `File::"receipts/a.pdf"`, `Host::"https://pypi.org:443"`.
        #[arg(long)]
        resource: String,
        /// Context as JSON, e.g. `{"sandbox":{"backend":"process","network":false}}`.
        #[arg(long)]
        context: Option<String>,
        /// Print the decision as JSON (as the audit log records it).
        #[arg(long)]
        json: bool,
    },
    /// Print the stele Cedar schema (copy it into a bundle as schema.cedarschema).
    Schema,
    /// Benchmark decisions and loading on a synthetic bundle in a temp dir.
    Bench {
        /// Policies in the synthetic bundle (org, 20 teams, project).
        #[arg(long, default_value_t = 1000)]
        policies: usize,
        /// Decisions to time.
        #[arg(long, default_value_t = 100_000)]
        decisions: usize,
    },
}

/// Run `stele policy`.
pub fn run(args: PolicyArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        PolicyCommand::Validate { bundle } => validate(&bundle),
        PolicyCommand::Test { bundle } => test(&bundle),
        PolicyCommand::Explain {
            bundle,
            principal,
            action,
            resource,
            context,
            json,
        } => {
            let b = Bundle::load(&bundle)
                .with_context(|| format!("loading {}", safe::path(&bundle)))?;
            let context = context
                .map(|c| serde_json::from_str::<serde_json::Value>(&c))
                .transpose()
                .context("--context is not valid JSON")?;
            let request = request_from_parts(&principal, &action, &resource, context.as_ref())?;
            b.check_request(&request)?;
            let d = b.decide(&request);
            // Names in the request and the bundle's ids and reasons, escaped.
            if json {
                println!("{}", safe::json_pretty(&serde_json::to_value(&d)?));
            } else {
                print!("{}", safe::block(&explain::render(&request, &d)));
            }
            Ok(match d.effect {
                Effect::Allow => ExitCode::SUCCESS,
                Effect::Deny => ExitCode::from(1),
                Effect::Ask => ExitCode::from(3),
            })
        }
        PolicyCommand::Schema => {
            print!("{}", stele_policy::STELE_SCHEMA);
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Bench {
            policies,
            decisions,
        } => {
            let r = synthetic::run_in_temp_dir(policies, decisions)?;
            println!(
                "policies:  {} (org, {} teams, project)",
                r.policies,
                synthetic::TEAMS
            );
            println!(
                "load:      {:.1} ms first, {:.1} ms median of 5",
                r.load.as_secs_f64() * 1e3,
                r.load_median.as_secs_f64() * 1e3
            );
            println!("decisions: {}", r.decisions);
            println!("p50:       {:.2} µs", r.p50.as_secs_f64() * 1e6);
            println!("p99:       {:.2} µs", r.p99.as_secs_f64() * 1e6);
            println!("max:       {:.2} µs", r.max.as_secs_f64() * 1e6);
            println!(
                "effects:   {} allow, {} deny, {} ask",
                r.effects[0], r.effects[1], r.effects[2]
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn validate(bundle: &std::path::Path) -> anyhow::Result<ExitCode> {
    let b = match Bundle::load(bundle) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {}", safe::line(&e.to_string()));
            eprintln!("bundle refused: {}", safe::path(bundle));
            return Ok(ExitCode::from(1));
        }
    };
    // Malformed test files are an authoring error too.
    let tests = match run_tests(&b) {
        Ok(r) => r.cases.len(),
        Err(e) => {
            eprintln!("error: {}", safe::line(&e.to_string()));
            return Ok(ExitCode::from(1));
        }
    };
    println!(
        "ok: {} policies, {} teams, {} users, {} tests",
        b.policy_count(),
        b.teams().count(),
        b.members().users().count(),
        tests
    );
    println!("digest: {}", b.digest());
    Ok(ExitCode::SUCCESS)
}

fn test(bundle: &std::path::Path) -> anyhow::Result<ExitCode> {
    let b = match Bundle::load(bundle) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {}", safe::line(&e.to_string()));
            return Ok(ExitCode::from(1));
        }
    };
    let report = match run_tests(&b) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}", safe::line(&e.to_string()));
            return Ok(ExitCode::from(1));
        }
    };
    for c in &report.cases {
        match &c.outcome {
            CaseOutcome::Pass => println!("  test {} ... ok", safe::line(&c.name)),
            CaseOutcome::Fail(why) => println!(
                "  test {} ... FAIL ({}): {}",
                safe::line(&c.name),
                safe::line(&c.location.to_string()),
                safe::line(why)
            ),
        }
    }
    println!("{} passed, {} failed", report.passed(), report.failed());
    if report.cases.is_empty() {
        eprintln!("error: no tests in {}/tests/*.json", safe::path(bundle));
        return Ok(ExitCode::from(1));
    }
    Ok(if report.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../policies")
            .join(name)
    }

    fn code(command: PolicyCommand) -> String {
        format!("{:?}", run(PolicyArgs { command }).unwrap())
    }

    fn explain(resource: &str, context: Option<&str>) -> String {
        code(PolicyCommand::Explain {
            bundle: template("finance"),
            principal: "alice".into(),
            action: "mcp.call".into(),
            resource: resource.into(),
            context: context.map(str::to_owned),
            json: false,
        })
    }

    #[test]
    fn validate_and_test_the_templates() {
        let ok = format!("{:?}", ExitCode::SUCCESS);
        for name in ["finance", "strict-default"] {
            assert_eq!(
                code(PolicyCommand::Validate {
                    bundle: template(name)
                }),
                ok
            );
            assert_eq!(
                code(PolicyCommand::Test {
                    bundle: template(name)
                }),
                ok
            );
        }
        let missing = template("does-not-exist");
        assert_ne!(code(PolicyCommand::Validate { bundle: missing }), ok);
    }

    #[test]
    fn explain_exit_codes_follow_the_effect() {
        assert_eq!(
            explain("McpTool::\"gmail/read_inbox\"", None),
            format!("{:?}", ExitCode::SUCCESS)
        );
        assert_eq!(
            explain("McpTool::\"gmail/send_email\"", None),
            format!("{:?}", ExitCode::from(3))
        );
        assert_eq!(
            explain("McpTool::\"slack/post\"", None),
            format!("{:?}", ExitCode::from(1))
        );
        let approved = r#"{"approval":{"granted":true,"approver":"m","ticket":"T"}}"#;
        assert_eq!(
            explain("McpTool::\"gmail/send_email\"", Some(approved)),
            format!("{:?}", ExitCode::SUCCESS)
        );
        let bad = run(PolicyArgs {
            command: PolicyCommand::Explain {
                bundle: template("finance"),
                principal: "alice".into(),
                action: "mcp.call".into(),
                resource: "File::\"x\"".into(),
                context: None,
                json: true,
            },
        });
        assert!(
            bad.is_err(),
            "a resource the action does not apply to is an error"
        );
    }
}
