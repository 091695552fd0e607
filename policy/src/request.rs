//! Typed requests: what the runtime asks the policy about. Every value in a
//! [`Request`] is canonical by construction (see [`crate::canonical`]).

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use crate::canonical::{canonical_path, program_name, CanonicalHost, CanonicalPath, ProgramRef};
use crate::error::PolicyError;
pub use crate::tool_args::{ArgValue, ToolArgs};

/// The actions of the stele schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// A request to a language model.
    ModelRequest,
    /// The model calls a tool (built-in or MCP).
    ToolCall,
    /// Read a file.
    FileRead,
    /// Create or modify a file.
    FileWrite,
    /// List a directory.
    FileList,
    /// Delete a file.
    FileDelete,
    /// Run a program in the sandbox.
    Exec,
    /// Open a network connection through the egress proxy.
    NetConnect,
    /// Start an MCP server and list its tools (resource: the server), or
    /// offer one of its tools to the model (resource: the tool).
    McpList,
    /// Call an MCP tool.
    McpCall,
}

impl Action {
    /// Every action, in a fixed order (used for indexing).
    pub const ALL: [Action; 10] = [
        Action::ModelRequest,
        Action::ToolCall,
        Action::FileRead,
        Action::FileWrite,
        Action::FileList,
        Action::FileDelete,
        Action::Exec,
        Action::NetConnect,
        Action::McpList,
        Action::McpCall,
    ];

    /// The Cedar action id, e.g. `file.read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ModelRequest => "model.request",
            Action::ToolCall => "tool.call",
            Action::FileRead => "file.read",
            Action::FileWrite => "file.write",
            Action::FileList => "file.list",
            Action::FileDelete => "file.delete",
            Action::Exec => "exec",
            Action::NetConnect => "net.connect",
            Action::McpList => "mcp.list",
            Action::McpCall => "mcp.call",
        }
    }

    /// Position in [`Action::ALL`].
    pub fn index(self) -> usize {
        match self {
            Action::ModelRequest => 0,
            Action::ToolCall => 1,
            Action::FileRead => 2,
            Action::FileWrite => 3,
            Action::FileList => 4,
            Action::FileDelete => 5,
            Action::Exec => 6,
            Action::NetConnect => 7,
            Action::McpList => 8,
            Action::McpCall => 9,
        }
    }

    /// Whether `resource` is a valid resource kind for this action (as the
    /// schema's `appliesTo` says).
    pub fn accepts(self, resource: &Resource) -> bool {
        matches!(
            (self, resource),
            (Action::ModelRequest, Resource::Model { .. })
                | (
                    Action::ToolCall,
                    Resource::Tool { .. } | Resource::McpTool { .. }
                )
                | (
                    Action::FileRead | Action::FileWrite | Action::FileList | Action::FileDelete,
                    Resource::File(_),
                )
                | (Action::Exec, Resource::Program(_))
                | (Action::NetConnect, Resource::Host(_))
                | (
                    Action::McpList,
                    Resource::McpServer { .. } | Resource::McpTool { .. }
                )
                | (Action::McpCall, Resource::McpTool { .. })
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = PolicyError;
    /// Accepts `file.read` or `Action::"file.read"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bare = bare_action_name(s);
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == bare)
            .ok_or_else(|| PolicyError::Request(format!("unknown action `{s}`")))
    }
}

/// An action's name without Cedar's `Action::"…"` around it, if there.
pub(crate) fn bare_action_name(s: &str) -> &str {
    s.strip_prefix("Action::\"")
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(s)
}

/// The resource of a request. Construct with canonical values only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// A file or directory in the workspace.
    File(CanonicalPath),
    /// A resolved program.
    Program(ProgramRef),
    /// A network endpoint.
    Host(CanonicalHost),
    /// A model, served from an endpoint.
    Model {
        /// Provider, e.g. `anthropic`.
        provider: String,
        /// Model name, e.g. `claude-sonnet-4`.
        name: String,
        /// Where it is served (scheme, host, port of the base URL).
        endpoint: crate::model_endpoint::ModelEndpoint,
    },
    /// An MCP server, by its configured name.
    McpServer {
        /// Server name.
        name: String,
    },
    /// A tool of an MCP server (its origin name, not a model-facing alias).
    McpTool {
        /// Server name.
        server: String,
        /// Tool name as the server reports it.
        tool: String,
    },
    /// A built-in stele tool.
    Tool {
        /// Tool name, e.g. `file_read`.
        name: String,
    },
}

impl Resource {
    /// The Cedar entity type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Resource::File(_) => "File",
            Resource::Program(_) => "Program",
            Resource::Host(_) => "Host",
            Resource::Model { .. } => "Model",
            Resource::McpServer { .. } => "McpServer",
            Resource::McpTool { .. } => "McpTool",
            Resource::Tool { .. } => "Tool",
        }
    }

    /// The Cedar entity id (see the schema for each form).
    pub fn entity_id(&self) -> String {
        match self {
            Resource::File(p) => p.as_str().to_owned(),
            Resource::Program(p) => p.path().to_owned(),
            Resource::Host(h) => h.to_string(),
            Resource::Model { provider, name, .. } => format!("{provider}/{name}"),
            Resource::McpServer { name } => name.clone(),
            Resource::McpTool { server, tool } => format!("{server}/{tool}"),
            Resource::Tool { name } => name.clone(),
        }
    }

    /// Parse a Cedar entity uid such as `File::"receipts/a.pdf"` (used by
    /// tests). Attributes are derived from the id; the id must already be
    /// canonical.
    pub fn from_uid(uid: &str) -> Result<Self, PolicyError> {
        Self::parse_uid(uid, UidForm::Canonical)
    }

    /// Parse a Cedar entity uid; with [`UidForm::Canonicalise`], file paths
    /// and hosts are canonicalised the way an enforcement point would
    /// (`stele policy explain` shows what a spelling becomes).
    pub fn parse_uid(uid: &str, form: UidForm) -> Result<Self, PolicyError> {
        if uid.starts_with("Model::\"") {
            // A model needs its endpoint, written after the uid: see `model_endpoint`.
            return crate::model_endpoint::model_from_uid(uid);
        }
        let bad = |why: &str| PolicyError::Request(format!("resource `{uid}`: {why}"));
        let (ty, rest) = uid
            .split_once("::\"")
            .ok_or_else(|| bad("expected Type::\"id\""))?;
        let id = rest
            .strip_suffix('"')
            .ok_or_else(|| bad("missing closing quote"))?;
        if id.contains('"') || id.contains('\\') {
            return Err(bad("quotes and escapes are not supported in ids"));
        }
        let split2 = |what: &str| {
            id.split_once('/')
                .filter(|(a, b)| !a.is_empty() && !b.is_empty())
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| bad(what))
        };
        let resource = match ty {
            "File" => {
                let p = canonical_path(id)?;
                if form == UidForm::Canonical && p.as_str() != id {
                    return Err(bad(&format!("not canonical (canonical form: `{p}`)")));
                }
                Resource::File(p)
            }
            "Program" => Resource::Program(ProgramRef::from_resolved_path(id)?),
            "Host" => {
                let h = CanonicalHost::parse(id)?;
                if form == UidForm::Canonical && h.to_string() != id {
                    return Err(bad(&format!("not canonical (canonical form: `{h}`)")));
                }
                Resource::Host(h)
            }
            "McpServer" => Resource::McpServer {
                name: program_name(id).map_err(|_| bad("invalid server name"))?,
            },
            "McpTool" => {
                let (server, tool) = split2("MCP tool ids are \"server/tool\"")?;
                Resource::McpTool { server, tool }
            }
            "Tool" => Resource::Tool {
                name: program_name(id).map_err(|_| bad("invalid tool name"))?,
            },
            other => return Err(bad(&format!("unknown resource type `{other}`"))),
        };
        Ok(resource)
    }
}

/// Whether a uid must already be canonical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UidForm {
    /// The id must be exactly its canonical form (policy tests).
    Canonical,
    /// The id is canonicalised (paths normalised, hosts through IDNA and
    /// address canonicalisation) as an enforcement point would.
    Canonicalise,
}

/// Which sandbox backend runs the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxBackend {
    /// Namespaces + Landlock + seccomp.
    Process,
    /// QEMU micro-VM.
    Microvm,
}

impl SandboxBackend {
    /// Value seen by policies in `context.sandbox.backend`.
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxBackend::Process => "process",
            SandboxBackend::Microvm => "microvm",
        }
    }
}

/// Whether the sandbox can reach the network (only ever through stele's proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// No route out at all.
    Disabled,
    /// Connections go through the egress proxy (each one a `net.connect`).
    ViaProxy,
}

/// Facts about the sandbox the action runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxFacts {
    /// Backend.
    pub backend: SandboxBackend,
    /// Network reachability.
    pub network: Network,
}

impl Default for SandboxFacts {
    fn default() -> Self {
        Self {
            backend: SandboxBackend::Process,
            network: Network::Disabled,
        }
    }
}

/// A recorded human (or configured approver) decision on an `Ask`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// Granted or refused.
    pub outcome: ApprovalOutcome,
    /// Who decided: a user id (`User::"…"` in policies).
    pub approver: String,
    /// How the answer was given (`tty`, `flag`, …).
    pub method: String,
    /// Ticket or reference, may be empty.
    pub ticket: String,
}

/// The approver's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalOutcome {
    /// Approved.
    Granted,
    /// Refused.
    Refused,
}

/// The request context (`context` in policies).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// Session id.
    pub session_id: String,
    /// Sandbox facts.
    pub sandbox: SandboxFacts,
    /// Program arguments (argv\[1..\], for `exec`).
    pub argv: Vec<String>,
    /// Tool arguments.
    pub args: ToolArgs,
    /// An approval, if one has been recorded for this action.
    pub approval: Option<Approval>,
}

impl RequestContext {
    /// The `command` string policies see: program name and argv,
    /// each word shell-quoted when needed, joined by single spaces.
    pub fn command_line(&self, resource: &Resource) -> String {
        let mut words: Vec<String> = Vec::with_capacity(self.argv.len() + 1);
        if let Resource::Program(p) = resource {
            words.push(shell_quote(p.name()));
        }
        words.extend(self.argv.iter().map(|a| shell_quote(a)));
        words.join(" ")
    }
}

fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// A complete, canonical policy question: may `principal` do `action` on
/// `resource` in `context`?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub(crate) principal: String,
    pub(crate) action: Action,
    pub(crate) resource: Resource,
    pub(crate) context: RequestContext,
}

impl Request {
    /// Start building a request. The action/resource pairing is checked by
    /// [`RequestBuilder::build`].
    pub fn builder(
        principal: impl Into<String>,
        action: Action,
        resource: Resource,
    ) -> RequestBuilder {
        RequestBuilder {
            request: Request {
                principal: principal.into(),
                action,
                resource,
                context: RequestContext::default(),
            },
        }
    }

    /// The user id.
    pub fn principal(&self) -> &str {
        &self.principal
    }
    /// The action.
    pub fn action(&self) -> Action {
        self.action
    }
    /// The resource.
    pub fn resource(&self) -> &Resource {
        &self.resource
    }
    /// The context.
    pub fn context(&self) -> &RequestContext {
        &self.context
    }

    /// The same `net.connect` request with its host resolved to `address`
    /// (any spelling of an address; canonicalised). Refused for other
    /// resources, and for an IP literal host given another address.
    pub fn with_address(&self, address: &str) -> Result<Request, PolicyError> {
        let Resource::Host(h) = &self.resource else {
            return Err(PolicyError::Request(format!(
                "an address only applies to a Host resource, not a {}",
                self.resource.type_name()
            )));
        };
        let ip = crate::canonical::canonical_host_name(address)
            .ok()
            .and_then(|a| a.parse::<std::net::IpAddr>().ok())
            .ok_or_else(|| PolicyError::Request(format!("`{address}` is not an IP address")))?;
        let mut r = self.clone();
        r.resource = Resource::Host(h.resolved(ip)?);
        Ok(r)
    }

    /// The same request with `approval` in its context (re-evaluation after
    /// a human answered an `Ask`).
    pub fn with_approval(&self, approval: Approval) -> Request {
        let mut r = self.clone();
        r.context.approval = Some(approval);
        r
    }
}

/// Builder for [`Request`].
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    request: Request,
}

impl RequestBuilder {
    /// Session id.
    pub fn session(mut self, id: impl Into<String>) -> Self {
        self.request.context.session_id = id.into();
        self
    }
    /// Sandbox facts.
    pub fn sandbox(mut self, facts: SandboxFacts) -> Self {
        self.request.context.sandbox = facts;
        self
    }
    /// Program arguments (without the program itself).
    pub fn argv<I, S>(mut self, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.request.context.argv = argv.into_iter().map(Into::into).collect();
        self
    }
    /// Tool arguments.
    pub fn args(mut self, args: ToolArgs) -> Self {
        self.request.context.args = args;
        self
    }
    /// A recorded approval.
    pub fn approval(mut self, approval: Approval) -> Self {
        self.request.context.approval = Some(approval);
        self
    }
    /// Replace the whole context.
    pub fn context(mut self, context: RequestContext) -> Self {
        self.request.context = context;
        self
    }
    /// Finish; refuses an empty principal or a resource the action does not apply to.
    pub fn build(self) -> Result<Request, PolicyError> {
        let r = self.request;
        if r.principal.is_empty() || r.principal.chars().any(char::is_control) {
            return Err(PolicyError::Request(
                "principal must be a non-empty user id".into(),
            ));
        }
        if !r.action.accepts(&r.resource) {
            return Err(PolicyError::Request(format!(
                "action `{}` does not apply to a {} resource",
                r.action,
                r.resource.type_name()
            )));
        }
        Ok(r)
    }
}

/// Strip `User::"…"` from a principal uid, or accept a bare user id.
pub fn parse_principal(s: &str) -> Result<String, PolicyError> {
    let id = match s.strip_prefix("User::\"") {
        Some(rest) => rest.strip_suffix('"').ok_or_else(|| {
            PolicyError::Request(format!("principal `{s}`: missing closing quote"))
        })?,
        None if s.contains("::") => {
            return Err(PolicyError::Request(format!(
                "principal `{s}` must be a User"
            )))
        }
        None => s,
    };
    Ok(id.to_owned())
}
