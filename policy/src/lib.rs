//! stele's policy engine (Cedar): decisions with reasons.
//!
//! A [`Bundle`] is a folder of Cedar policies in three layers (`org/`,
//! `teams/<team>/`, `project/`), a members file and the stele schema. It is
//! loaded whole or refused whole ([`PolicyError`] names file and line), and
//! its [`BundleDigest`] is fixed once loaded. [`Bundle::decide`] answers a
//! typed [`Request`] with a [`Decision`]: [`Effect::Allow`], [`Effect::Deny`]
//! or [`Effect::Ask`], the determining policies (id, layer, file, line,
//! annotations), each layer's verdict, evaluation errors and the digest.
//!
//! Layers intersect: every layer whose permits cover the request must allow
//! it, and a satisfied `forbid` in any layer denies (an org forbid can never
//! be lifted). Nothing is allowed by default. See `docs/policy-guide.md`.
//!
//! Enforcement points must canonicalise values with [`canonical`] before
//! building a request: policies only ever see canonical paths, hosts and
//! program names.
//!
//! ```no_run
//! use stele_policy::{canonical, Action, Bundle, Effect, Network, Request, Resource, SandboxFacts,
//!     SandboxBackend};
//!
//! # fn main() -> Result<(), stele_policy::PolicyError> {
//! let bundle = Bundle::load("policies/finance")?;
//! let path = canonical::canonical_path("receipts/2025/../2025/03.pdf")?;
//! let request = Request::builder("alice", Action::FileRead, Resource::File(path))
//!     .session("s-1")
//!     .sandbox(SandboxFacts { backend: SandboxBackend::Process, network: Network::Disabled })
//!     .build()?;
//! let decision = bundle.decide(&request);
//! match decision.effect {
//!     Effect::Allow => { /* act, with decision.bundle_digest and reasons in the log */ }
//!     Effect::Ask => { /* ask, then bundle.decide_with_approval(&request, approval) */ }
//!     Effect::Deny => { /* refuse, naming decision.determining */ }
//! }
//! # Ok(()) }
//! ```

mod ask;
pub mod bundle;
pub mod canonical;
mod cedar_req;
pub mod connect;
pub mod context_json;
pub mod decision;
mod depth;
pub mod digest;
pub mod error;
pub mod explain;
mod guard;
pub mod layer;
mod layout;
pub mod lint;
pub mod members;
pub mod model_endpoint;
pub mod request;
pub mod resolve;
pub mod schema;
pub mod server_action;
mod server_decide;
pub mod server_request_json;
mod source;
pub mod synthetic;
pub mod tests_format;
mod tool_args;

pub use bundle::Bundle;
pub use canonical::{AddressClass, CanonicalHost, CanonicalPath, ProgramRef};
pub use connect::ConnectStep;
pub use decision::{
    Decision, DeterminingPolicy, Effect, EvalError, LayerVerdict, PolicyEffect, Verdict,
};
pub use digest::BundleDigest;
pub use error::{CanonError, Location, PolicyError};
pub use layer::{Layer, LayerKind};
pub use layout::SCHEMA_FILE;
pub use lint::{Lint, LintId, Severity};
pub use members::{Members, MEMBERS_FILE};
pub use model_endpoint::ModelEndpoint;
pub use request::{
    Action, Approval, ApprovalOutcome, ArgValue, Network, Request, RequestBuilder, RequestContext,
    Resource, SandboxBackend, SandboxFacts, ToolArgs, UidForm,
};
pub use resolve::{resolve_host, Resolution, Resolve, ResolveError, SystemResolver};
pub use schema::{SCHEMA_VERSION, STELE_SCHEMA};
pub use server_action::{Account, ServerAction, ServerRequest, ServerResource, ROLES};
