//! `stele policy validate|test|explain|schema|bench`: tools for policy
//! authors, over the `stele-policy` crate.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::terminal_safe as safe;
use anyhow::Context as _;
use stele_policy::context_json::context_from_json;
use stele_policy::request::parse_principal;
use stele_policy::tests_format::{run_tests, CaseOutcome};
use stele_policy::{
    explain, synthetic, Action, Bundle, ConnectStep, Decision, Effect, Request, Resource, Severity,
    SystemResolver, UidForm,
};

/// `stele policy explain` exit codes (documented in docs/policy-guide.md).
pub mod exit {
    /// The request is allowed.
    pub const ALLOW: u8 = 0;
    /// The request is denied (including a name that does not resolve).
    pub const DENY: u8 = 1;
    /// The request needs a human's approval.
    pub const ASK: u8 = 3;
    /// The request could not be built (unknown action, a resource the
    /// action does not apply to, a value that cannot be canonicalised, bad
    /// context JSON).
    pub const INVALID_REQUEST: u8 = 4;
    /// The bundle does not load (it would be refused at run time too).
    pub const BUNDLE_REFUSED: u8 = 5;
}

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
    /// Load a bundle with strict validation (and parse its tests); print a
    /// summary and the lints (rules that load but are probably mistakes).
    Validate {
        /// Bundle folder.
        bundle: PathBuf,
        /// Exit 1 when a lint of severity warning is found.
        #[arg(long)]
        deny_warnings: bool,
        /// Print the result as JSON (docs/json/policy-validate.schema.json).
        #[arg(long)]
        json: bool,
    },
    /// Run the bundle's tests/*.json (Cedar JSON test format: decision and reasons).
    Test {
        /// Bundle folder.
        bundle: PathBuf,
        /// Print the results as JSON (docs/json/policy-test.schema.json).
        #[arg(long)]
        json: bool,
    },
    /// Decide one request and explain why.
    Explain {
        /// Bundle folder.
        bundle: PathBuf,
        /// User, e.g. `alice` or `User::"alice"`.
        #[arg(long)]
        principal: String,
        /// Action, e.g. `file.read`, or one of the server's own (`session.view`,
        /// `audit.export`, …; its account and resource go in --context: docs/policy-guide.md).
        #[arg(long)]
        action: String,
        /// Resource uid, e.g. `File::"receipts/a.pdf"`, `Host::"https://pypi.org:443"`;
        /// paths and hosts are canonicalised as stele's enforcement points do
        /// (`Host::"https://0x7f.1:443"` is `https://127.0.0.1:443`).
        #[arg(long)]
        resource: String,
        /// For `net.connect` to a name: decide as if it resolved to this
        /// address instead of asking the system resolver.
        #[arg(long)]
        address: Option<String>,
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
        /// Print the figures as JSON (docs/json/policy-bench.schema.json).
        #[arg(long)]
        json: bool,
    },
}

/// Run `stele policy`.
pub fn run(args: PolicyArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        PolicyCommand::Validate {
            bundle,
            deny_warnings,
            json: true,
        } => super::policy_json::validate(&bundle, deny_warnings),
        PolicyCommand::Validate {
            bundle,
            deny_warnings,
            json: false,
        } => validate(&bundle, deny_warnings),
        PolicyCommand::Test { bundle, json: true } => super::policy_json::test(&bundle),
        PolicyCommand::Test {
            bundle,
            json: false,
        } => test(&bundle),
        PolicyCommand::Explain {
            bundle,
            principal,
            action,
            resource,
            address,
            context,
            json,
        } => {
            let b = match Bundle::load(&bundle) {
                Ok(b) => b,
                Err(e) => {
                    crate::errln!("error: {}", safe::line(&e.to_string()));
                    crate::errln!("bundle refused: {}", safe::path(&bundle));
                    return Ok(ExitCode::from(exit::BUNDLE_REFUSED));
                }
            };
            if stele_policy::server_request_json::is_server_action(&action) {
                return explain_server(
                    &b,
                    &principal,
                    &action,
                    &resource,
                    address.as_deref(),
                    context.as_deref(),
                    json,
                );
            }
            let parts = Parts {
                principal: &principal,
                action: &action,
                resource: &resource,
                address: address.as_deref(),
                context: context.as_deref(),
            };
            let request = match parts.request(&b) {
                Ok(r) => r,
                Err(e) => {
                    crate::errln!("error: {}", safe::line(&format!("{e:#}")));
                    return Ok(ExitCode::from(exit::INVALID_REQUEST));
                }
            };
            explain_request(&b, &request, json)
        }
        PolicyCommand::Schema => {
            crate::out!("{}", stele_policy::STELE_SCHEMA);
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Bench {
            policies,
            decisions,
            json,
        } => {
            let ticker = super::ticker::Ticker::start(&format!(
                "policy bench: {policies} policies, {decisions} decisions"
            ));
            let r = synthetic::run_in_temp_dir(policies, decisions);
            drop(ticker);
            super::policy_json::bench(&r?, json)
        }
    }
}

/// The parts of an explained request, as given on the command line.
struct Parts<'a> {
    principal: &'a str,
    action: &'a str,
    resource: &'a str,
    address: Option<&'a str>,
    context: Option<&'a str>,
}

impl Parts<'_> {
    fn request(&self, b: &Bundle) -> anyhow::Result<Request> {
        let context = match self.context {
            Some(c) => serde_json::from_str::<serde_json::Value>(c)
                .context("--context is not valid JSON")?,
            None => serde_json::json!({}),
        };
        let action: Action = self.action.parse()?;
        let resource = Resource::parse_uid(self.resource, UidForm::Canonicalise)?;
        let mut request = Request::builder(parse_principal(self.principal)?, action, resource)
            .context(context_from_json(&context)?)
            .build()?;
        if let Some(a) = self.address {
            request = request.with_address(a)?;
        }
        b.check_request(&request)?;
        Ok(request)
    }
}

/// Decide one of the server's own requests (never Ask) and print it.
fn explain_server(
    b: &Bundle,
    principal: &str,
    action: &str,
    resource: &str,
    address: Option<&str>,
    context: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let request = (|| -> anyhow::Result<_> {
        if address.is_some() {
            anyhow::bail!("--address is for net.connect, not a server action");
        }
        let context = match context {
            Some(c) => Some(
                serde_json::from_str::<serde_json::Value>(c)
                    .context("--context is not valid JSON")?,
            ),
            None => None,
        };
        let r = stele_policy::server_request_json::server_request_from_parts(
            b,
            principal,
            action,
            resource,
            context.as_ref(),
        )?;
        b.check_server_request(&r)?;
        Ok(r)
    })();
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            crate::errln!("error: {}", safe::line(&format!("{e:#}")));
            return Ok(ExitCode::from(exit::INVALID_REQUEST));
        }
    };
    let d = b.decide_server(&request);
    if json {
        crate::outln!("{}", safe::json_pretty(&serde_json::to_value(&d)?));
    } else {
        crate::out!("{}", safe::block(&explain::render_server(&request, &d)));
    }
    Ok(ExitCode::from(match d.effect {
        Effect::Allow => exit::ALLOW,
        Effect::Deny => exit::DENY,
        // The server never asks; a bundle cannot make it.
        Effect::Ask => exit::ASK,
    }))
}

/// Decide and print; a connection to a name goes through the same steps as
/// at run time (decided by name, resolved once, decided with the address).
fn explain_request(b: &Bundle, request: &Request, json: bool) -> anyhow::Result<ExitCode> {
    let (request, decision, destination) = if request.action() == Action::NetConnect {
        match b.connect_step(request, &SystemResolver)? {
            ConnectStep::Decide {
                request,
                resolution,
                by_name,
            } => {
                let d = b.decide(&request);
                let dest = serde_json::json!({
                    "address": resolution.host.address().map(|a| a.to_string()),
                    "class": resolution.host.class().map(|c| c.as_str()),
                    "resolved": resolution.all.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "by_name": by_name.as_ref().map(|d| d.effect),
                });
                (*request, d, Some(dest))
            }
            ConnectStep::RefusedByName(d) => {
                let dest = serde_json::json!({
                    "address": null, "class": null, "resolved": [], "by_name": d.effect,
                });
                (request.clone(), *d, Some(dest))
            }
            ConnectStep::Unresolvable { by_name, error } => {
                let dest = serde_json::json!({
                    "address": null, "class": null, "resolved": [],
                    "by_name": by_name.effect, "error": error.to_string(),
                });
                if json {
                    let mut v = serde_json::to_value(&by_name)?;
                    v["effect"] = serde_json::json!("deny");
                    v["destination"] = dest;
                    crate::outln!("{}", safe::json_pretty(&v));
                } else {
                    crate::out!("{}", safe::block(&explain::render(request, &by_name)));
                    crate::outln!(
                        "decision: deny — {error}: the proxy would refuse the connection"
                    );
                }
                return Ok(ExitCode::from(exit::DENY));
            }
        }
    } else {
        (request.clone(), b.decide(request), None)
    };
    print_decision(&request, &decision, destination, json)?;
    Ok(ExitCode::from(match decision.effect {
        Effect::Allow => exit::ALLOW,
        Effect::Deny => exit::DENY,
        Effect::Ask => exit::ASK,
    }))
}

fn print_decision(
    request: &Request,
    d: &Decision,
    destination: Option<serde_json::Value>,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let mut v = serde_json::to_value(d)?;
        if let Some(dest) = destination {
            v["destination"] = dest;
        }
        crate::outln!("{}", safe::json_pretty(&v));
        return Ok(());
    }
    crate::out!("{}", safe::block(&explain::render(request, d)));
    if let Some(by_name) = destination
        .as_ref()
        .and_then(|v| v["by_name"].as_str().map(str::to_owned))
    {
        let what = match by_name.as_str() {
            "deny" => "refused by name alone: the name was not resolved",
            _ => "not refused by name alone, so the name was resolved once",
        };
        crate::outln!("by name:  {by_name} ({what})");
    }
    Ok(())
}

fn validate(bundle: &std::path::Path, deny_warnings: bool) -> anyhow::Result<ExitCode> {
    let b = match Bundle::load(bundle) {
        Ok(b) => b,
        Err(e) => {
            crate::errln!("error: {}", safe::line(&e.to_string()));
            crate::errln!("bundle refused: {}", safe::path(bundle));
            return Ok(ExitCode::from(1));
        }
    };
    // Malformed test files are an authoring error too.
    let tests = match run_tests(&b) {
        Ok(r) => r.cases.len(),
        Err(e) => {
            crate::errln!("error: {}", safe::line(&e.to_string()));
            return Ok(ExitCode::from(1));
        }
    };
    for lint in b.lints() {
        crate::errln!("{}", safe::line(&lint.to_string()));
    }
    let warnings = b
        .lints()
        .iter()
        .filter(|l| l.id.severity() == Severity::Warning)
        .count();
    crate::outln!(
        "ok: {} policies, {} teams, {} users, {} tests, {} warnings",
        b.policy_count(),
        b.teams().count(),
        b.members().users().count(),
        tests,
        warnings
    );
    crate::outln!("digest: {}", b.digest());
    if deny_warnings && warnings > 0 {
        crate::errln!("error: {warnings} warning(s) and --deny-warnings");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn test(bundle: &std::path::Path) -> anyhow::Result<ExitCode> {
    let b = match Bundle::load(bundle) {
        Ok(b) => b,
        Err(e) => {
            crate::errln!("error: {}", safe::line(&e.to_string()));
            return Ok(ExitCode::from(1));
        }
    };
    let report = match run_tests(&b) {
        Ok(r) => r,
        Err(e) => {
            crate::errln!("error: {}", safe::line(&e.to_string()));
            return Ok(ExitCode::from(1));
        }
    };
    for c in &report.cases {
        match &c.outcome {
            CaseOutcome::Pass => crate::outln!("  test {} ... ok", safe::line(&c.name)),
            CaseOutcome::Fail(why) => {
                crate::outln!(
                    "  test {} ... FAIL ({}): {}",
                    safe::line(&c.name),
                    safe::line(&c.location.to_string()),
                    safe::line(why)
                )
            }
        }
    }
    crate::outln!("{} passed, {} failed", report.passed(), report.failed());
    if report.cases.is_empty() {
        crate::errln!("error: no tests in {}/tests/*.json", safe::path(bundle));
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

    fn exit(code: u8) -> String {
        format!("{:?}", ExitCode::from(code))
    }

    fn explain_as(
        bundle: PathBuf,
        action: &str,
        resource: &str,
        address: Option<&str>,
        context: Option<&str>,
    ) -> String {
        code(PolicyCommand::Explain {
            bundle,
            principal: "alice".into(),
            action: action.into(),
            resource: resource.into(),
            address: address.map(str::to_owned),
            context: context.map(str::to_owned),
            json: false,
        })
    }

    fn explain(resource: &str, context: Option<&str>) -> String {
        explain_as(template("finance"), "mcp.call", resource, None, context)
    }

    #[test]
    fn validate_and_test_the_templates() {
        let ok = format!("{:?}", ExitCode::SUCCESS);
        for name in ["finance", "strict-default", "minimal", "desktop"] {
            for deny_warnings in [false, true] {
                assert_eq!(
                    code(PolicyCommand::Validate {
                        bundle: template(name),
                        deny_warnings,
                        json: false,
                    }),
                    ok,
                    "{name}: the templates have no warnings"
                );
            }
            assert_eq!(
                code(PolicyCommand::Test {
                    bundle: template(name),
                    json: false,
                }),
                ok
            );
        }
        let missing = template("does-not-exist");
        assert_ne!(
            code(PolicyCommand::Validate {
                bundle: missing,
                deny_warnings: false,
                json: false,
            }),
            ok
        );
    }

    #[test]
    fn explain_decides_the_servers_own_actions_with_the_account_and_resource_from_context() {
        let f = || template("finance");
        let own = r#"{"resource":{"owner":"alice","workspace":"w","teams":["finance"]}}"#;
        let other = r#"{"resource":{"owner":"bob","workspace":"w","teams":["finance"]}}"#;
        let as_approver = r#"{"account":{"role":"approver"},
            "resource":{"owner":"bob","workspace":"w","teams":["finance"]}}"#;
        let s = "Session::\"s1\"";
        let view = |ctx| explain_as(f(), "session.view", s, None, Some(ctx));
        assert_eq!(view(own), exit(exit::ALLOW));
        assert_eq!(view(other), exit(exit::DENY));
        assert_eq!(view(as_approver), exit(exit::ALLOW));
        // Invalid: attributes missing or unknown, a resource the action does not
        // take, a role the server does not know, --address on a server action.
        for (action, resource, address, ctx) in [
            ("session.view", s, None, None),
            (
                "session.view",
                s,
                None,
                Some(r#"{"resource":{"owner":"a"}}"#),
            ),
            ("session.view", s, None, Some(r#"{"extra":1}"#)),
            ("admin", "AuditLog::\"log\"", None, None),
            ("audit.hold", "AuditLog::\"other\"", None, None),
            (
                "admin",
                "Server::\"stele\"",
                None,
                Some(r#"{"account":{"role":"root"}}"#),
            ),
            ("admin", "Server::\"stele\"", Some("10.0.0.1"), None),
            ("session.start", "File::\"a\"", None, None),
        ] {
            assert_eq!(
                explain_as(f(), action, resource, address, ctx),
                exit(exit::INVALID_REQUEST),
                "{action} {resource} {ctx:?}"
            );
        }
    }

    #[test]
    fn explain_exit_codes_are_distinct() {
        assert_eq!(
            explain("McpTool::\"gmail/read_inbox\"", None),
            exit(exit::ALLOW)
        );
        assert_eq!(
            explain("McpTool::\"gmail/send_email\"", None),
            exit(exit::ASK)
        );
        assert_eq!(explain("McpTool::\"slack/post\"", None), exit(exit::DENY));
        let approved = r#"{"approval":{"granted":true,"approver":"m","ticket":"T"}}"#;
        assert_eq!(
            explain("McpTool::\"gmail/send_email\"", Some(approved)),
            exit(exit::ALLOW)
        );
        // Invalid requests: a resource the action does not apply to, an
        // unknown action, bad context JSON, an uncanonicalisable host.
        assert_eq!(explain("File::\"x\"", None), exit(exit::INVALID_REQUEST));
        assert_eq!(
            explain_as(
                template("finance"),
                "file.rename",
                "File::\"x\"",
                None,
                None
            ),
            exit(exit::INVALID_REQUEST)
        );
        assert_eq!(
            explain("McpTool::\"gmail/send_email\"", Some("{not json")),
            exit(exit::INVALID_REQUEST)
        );
        assert_eq!(
            explain_as(
                template("finance"),
                "net.connect",
                "Host::\"https://1.2.3.4.5:443\"",
                None,
                None
            ),
            exit(exit::INVALID_REQUEST)
        );
        // A bundle that does not load.
        let broken = tempfile::tempdir().unwrap();
        std::fs::create_dir(broken.path().join("org")).unwrap();
        assert_eq!(
            explain_as(
                broken.path().to_path_buf(),
                "mcp.call",
                "McpTool::\"a/b\"",
                None,
                None
            ),
            exit(exit::BUNDLE_REFUSED)
        );
        let codes = [
            exit::ALLOW,
            exit::DENY,
            exit::ASK,
            exit::INVALID_REQUEST,
            exit::BUNDLE_REFUSED,
            2, // clap's usage error
        ];
        let unique: std::collections::BTreeSet<u8> = codes.into_iter().collect();
        assert_eq!(unique.len(), codes.len());
    }
}
