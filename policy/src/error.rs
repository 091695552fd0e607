//! Typed errors. A bundle that produces any [`PolicyError`] is refused as a
//! whole: nothing is partly loaded (fail closed).

use std::fmt;
use std::path::PathBuf;

/// Where in a bundle something went wrong: a bundle-relative file and, when
/// known, a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Path relative to the bundle root, with `/` separators.
    pub file: String,
    /// 1-based line, if the problem can be pinned to one.
    pub line: Option<u32>,
    /// 1-based column, if known.
    pub column: Option<u32>,
}

impl Location {
    /// A location naming a whole file.
    pub fn file(file: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: None,
            column: None,
        }
    }

    /// A location at a line and column of a file.
    pub fn at(file: impl Into<String>, line: u32, column: u32) -> Self {
        Self {
            file: file.into(),
            line: Some(line),
            column: Some(column),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}", self.file),
            (Some(l), None) => write!(f, "{}:{l}", self.file),
            _ => write!(f, "{}", self.file),
        }
    }
}

/// Why a bundle (or a request built for it) was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The bundle folder or one of its files could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The bundle's layout is wrong (missing org layer, stray file, symlink…).
    #[error("{location}: {message}")]
    Layout {
        /// Where.
        location: Location,
        /// What is wrong.
        message: String,
    },
    /// A file nests brackets, `if`s or operator chains deeper than stele
    /// lets any parser see (refused before parsing: deep nesting would
    /// exhaust the stack and abort the process).
    #[error("{location}: nested too deeply: {message}")]
    TooDeep {
        /// Where the limit was crossed.
        location: Location,
        /// What was too deep, and what to do instead.
        message: String,
    },
    /// A `.cedar` file does not parse.
    #[error("{location}: syntax error: {message}")]
    Syntax {
        /// Where.
        location: Location,
        /// Cedar's message.
        message: String,
    },
    /// A policy does not validate against the stele schema (strict mode):
    /// unknown entity types, actions or attributes, type errors, impossible
    /// policies.
    #[error("{location}: policy `{policy}` does not match the schema: {message}")]
    Schema {
        /// Where.
        location: Location,
        /// The offending policy's id.
        policy: String,
        /// Cedar's message.
        message: String,
    },
    /// The bundle's `schema.cedarschema` is missing, broken, or not the stele schema.
    #[error("{location}: {message}")]
    SchemaFile {
        /// Where.
        location: Location,
        /// What is wrong.
        message: String,
    },
    /// A policy has no `@id`, or a bad one.
    #[error("{location}: {message}")]
    PolicyId {
        /// Where.
        location: Location,
        /// What is wrong.
        message: String,
    },
    /// An annotation that cannot mean what it says (`@ask` on a permit).
    #[error("{location}: policy `{policy}`: {message}")]
    Annotation {
        /// Where.
        location: Location,
        /// The policy.
        policy: String,
        /// What is wrong.
        message: String,
    },
    /// Two policies in the bundle share an `@id`.
    #[error("{location}: duplicate policy id `{id}` (first defined at {first})")]
    DuplicatePolicyId {
        /// The second definition.
        location: Location,
        /// The duplicated id.
        id: String,
        /// The first definition.
        first: Location,
    },
    /// The members file is malformed or names a team that has no folder.
    #[error("{location}: {message}")]
    Members {
        /// Where.
        location: Location,
        /// What is wrong.
        message: String,
    },
    /// A test file is malformed.
    #[error("{location}: {message}")]
    TestFile {
        /// Where.
        location: Location,
        /// What is wrong.
        message: String,
    },
    /// A request could not be built (wrong resource for the action, a
    /// non-canonical value, an unparsable entity uid…).
    #[error("invalid request: {0}")]
    Request(String),
    /// A value given for canonicalisation was refused.
    #[error(transparent)]
    Canon(#[from] CanonError),
    /// Cedar refused something the loader assembled; this indicates a bug
    /// in stele rather than in the bundle, and is still fail closed.
    #[error("internal policy engine error: {0}")]
    Internal(String),
}

/// Why a value could not be canonicalised. Enforcement points must treat
/// these as a denial: an uncanonicalisable value never reaches the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonError {
    /// Empty input.
    #[error("empty {0}")]
    Empty(&'static str),
    /// The value contains a NUL or other control character.
    #[error("{0} contains a NUL or control character")]
    ControlCharacter(&'static str),
    /// A path is absolute (it must be workspace-relative).
    #[error("path `{0}` is absolute; paths must be relative to the workspace")]
    AbsolutePath(String),
    /// A path climbs above the workspace root.
    #[error("path `{0}` escapes the workspace")]
    EscapesWorkspace(String),
    /// A host name is not a valid (internationalised) domain name or IP literal.
    #[error("invalid host name `{0}`")]
    InvalidHost(String),
    /// A scheme we do not know a default port for, and no port given.
    #[error("unknown scheme `{0}` (give an explicit port)")]
    UnknownScheme(String),
    /// Port 0 or otherwise unusable.
    #[error("invalid port in `{0}`")]
    InvalidPort(String),
    /// A program name that is not a plain basename.
    #[error("invalid program name `{0}`")]
    InvalidProgram(String),
    /// An IP literal host given a different address than its own.
    #[error("host `{host}` is an address; it cannot resolve to {address}")]
    AddressMismatch {
        /// The literal.
        host: String,
        /// The other address.
        address: String,
    },
}
