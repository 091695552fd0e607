//! Bounding nesting *before* any parser sees a bundle file.
//!
//! Cedar's parser, its AST conversions and the serialisers recurse once per
//! level of nesting, and a few hundred nested brackets are enough to
//! overflow a thread's stack — which aborts the whole process, with no file
//! or line. So every file of a bundle (policies, schema, tests, members) is
//! scanned first with a flat, non-recursive tokenizer that adds up what the
//! parsers would recurse on along the deepest path, and refused with its
//! file, line and column when that exceeds [`LIMIT`].
//!
//! Costs, in units (measured on a 2 MiB thread, the smallest stele decides
//! on, in the test build: a bracket level used about 19 KiB of stack, an
//! `if` about 2 KiB, one more operator in a chain about 0.7 KiB):
//! a bracket (`(`, `[`, `{`, and `<` in the schema) [`BRACKET`] units, an
//! `if` [`IF`] units, each operator, member access or `when`/`unless`
//! clause in the current expression 1 unit. `,` and `;` end an expression.
//! [`LIMIT`] units stay under 1 MiB of stack in that build.

use crate::error::{Location, PolicyError};
use crate::source::line_col;

/// Units one bracket level costs.
pub(crate) const BRACKET: u32 = 20;
/// Units one `if` costs.
pub(crate) const IF: u32 = 2;
/// The most units any path through a file may add up to.
pub(crate) const LIMIT: u32 = 1024;

/// The syntax a file is scanned in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    /// A `.cedar` policy file.
    Cedar,
    /// The Cedar schema (`Set<…>` nests too).
    CedarSchema,
    /// A JSON test file.
    Json,
    /// `members.toml`.
    Toml,
}

/// One open bracket level: its own cost and the expression's so far.
#[derive(Debug, Clone, Copy)]
struct Level {
    ifs: u32,
    ops: u32,
}

struct Scan<'a> {
    file: &'a str,
    text: &'a str,
    levels: Vec<Level>,
    // Units of the closed part of the path (the open brackets below the top).
    total: u32,
}

impl Scan<'_> {
    fn top(&mut self) -> &mut Level {
        if self.levels.is_empty() {
            self.levels.push(Level { ifs: 0, ops: 0 });
        }
        let last = self.levels.len() - 1;
        &mut self.levels[last]
    }

    fn current(&self) -> u32 {
        let open = u32::try_from(self.levels.len().saturating_sub(1)).unwrap_or(u32::MAX);
        let top = self.levels.last().map_or(0, |l| l.ifs * IF + l.ops);
        self.total
            .saturating_add(open.saturating_mul(BRACKET))
            .saturating_add(top)
    }

    fn open(&mut self) {
        let top = *self.top();
        self.total = self.total.saturating_add(top.ifs * IF + top.ops);
        self.levels.push(Level { ifs: 0, ops: 0 });
    }

    fn close(&mut self) {
        if self.levels.len() > 1 {
            self.levels.pop();
            let below = *self.top();
            self.total = self.total.saturating_sub(below.ifs * IF + below.ops);
        }
    }

    fn end_expression(&mut self) {
        let t = self.top();
        t.ifs = 0;
        t.ops = 0;
    }

    fn check(&self, at: usize, syntax: Syntax) -> Result<(), PolicyError> {
        if self.current() <= LIMIT {
            return Ok(());
        }
        let (line, column) = line_col(self.text, at);
        let message = match syntax {
            Syntax::Cedar => format!(
                "brackets, `if`s and operator chains add up to more than {LIMIT} \
                 (a bracket counts {BRACKET}, an `if` {IF}, an operator 1); stele refuses \
                 this before parsing so it cannot exhaust the stack — split the policy, or \
                 use a set (`[\"a\", \"b\"].contains(x)`) instead of a long `||` chain"
            ),
            Syntax::CedarSchema | Syntax::Json | Syntax::Toml => format!(
                "more than {} levels of brackets; stele refuses this before parsing so it \
                 cannot exhaust the stack",
                LIMIT / BRACKET
            ),
        };
        Err(PolicyError::TooDeep {
            location: Location::at(self.file, line, column),
            message,
        })
    }
}

const CEDAR_OPS: [&str; 13] = [
    "&&", "||", "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", ".", "!",
];
const CEDAR_KEYWORD_OPS: [&str; 6] = ["in", "has", "like", "is", "when", "unless"];

/// Check that `text` (the file `file`, bundle-relative) nests within
/// [`LIMIT`]. The scan is linear and never recurses.
pub(crate) fn check(file: &str, text: &str, syntax: Syntax) -> Result<(), PolicyError> {
    let mut s = Scan {
        file,
        text,
        levels: Vec::new(),
        total: 0,
    };
    let bytes = text.as_bytes();
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        let start = i;
        match (syntax, b) {
            (Syntax::Cedar | Syntax::CedarSchema, b'/') if bytes.get(i + 1) == Some(&b'/') => {
                i = skip_line(bytes, i);
                continue;
            }
            (Syntax::Toml, b'#') => {
                i = skip_line(bytes, i);
                continue;
            }
            (_, b'"') => {
                i = skip_string(bytes, i, syntax);
                continue;
            }
            (Syntax::Toml, b'\'') => {
                i = skip_literal_string(bytes, i);
                continue;
            }
            (_, b'(' | b'[' | b'{') | (Syntax::CedarSchema, b'<') => {
                s.open();
                s.check(start, syntax)?;
                i += 1;
                continue;
            }
            (_, b')' | b']' | b'}') | (Syntax::CedarSchema, b'>') => {
                s.close();
                i += 1;
                continue;
            }
            (Syntax::Cedar, b',' | b';') => {
                s.end_expression();
                i += 1;
                continue;
            }
            _ => {}
        }
        if syntax != Syntax::Cedar {
            i += 1;
            continue;
        }
        if b.is_ascii_alphabetic() || b == b'_' {
            let end = bytes
                .iter()
                .skip(i)
                .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                .map_or(bytes.len(), |n| i + n);
            let word = text.get(i..end).unwrap_or("");
            if word == "if" {
                s.top().ifs += 1;
            } else if CEDAR_KEYWORD_OPS.contains(&word) {
                s.top().ops += 1;
            }
            s.check(start, syntax)?;
            i = end;
            continue;
        }
        if let Some(op) = CEDAR_OPS
            .iter()
            .find(|op| bytes.get(i..i + op.len()) == Some(op.as_bytes()))
        {
            s.top().ops += 1;
            s.check(start, syntax)?;
            i += op.len();
            continue;
        }
        i += 1;
    }
    Ok(())
}

fn skip_line(bytes: &[u8], from: usize) -> usize {
    bytes
        .iter()
        .skip(from)
        .position(|c| *c == b'\n')
        .map_or(bytes.len(), |n| from + n + 1)
}

/// Past a `"…"` string with `\` escapes (TOML `"""…"""` included: its
/// closing quotes are found the same way).
fn skip_string(bytes: &[u8], from: usize, syntax: Syntax) -> usize {
    if syntax == Syntax::Toml && bytes.get(from..from + 3) == Some(b"\"\"\"") {
        let mut i = from + 3;
        while i < bytes.len() {
            match bytes.get(i) {
                Some(b'\\') => i += 2,
                Some(b'"') if bytes.get(i..i + 3) == Some(b"\"\"\"") => return i + 3,
                _ => i += 1,
            }
        }
        return bytes.len();
    }
    let mut i = from + 1;
    while let Some(&c) = bytes.get(i) {
        match c {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Past a TOML `'…'` or `'''…'''` literal string (no escapes).
fn skip_literal_string(bytes: &[u8], from: usize) -> usize {
    let triple = bytes.get(from..from + 3) == Some(b"'''");
    let (open, close): (usize, &[u8]) = if triple { (3, b"'''") } else { (1, b"'") };
    let mut i = from + open;
    while i < bytes.len() {
        if bytes.get(i..i + close.len()) == Some(close) {
            return i + close.len();
        }
        i += 1;
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str, syntax: Syntax) -> bool {
        check("f", text, syntax).is_ok()
    }

    #[test]
    fn ordinary_files_pass() {
        assert!(ok(
            "@id(\"a\") permit (principal in Team::\"x\", action in [Action::\"file.read\"], resource is File) when { resource.path like \"a/*\" && !(resource.path like \"a/b/*\") } unless { context has approval && context.approval.granted };",
            Syntax::Cedar
        ));
        assert!(ok(crate::STELE_SCHEMA, Syntax::CedarSchema));
        assert!(ok("[users]\nalice = [\"a\", \"b\"] # [[[[\n", Syntax::Toml));
        assert!(ok("[{\"a\": {\"b\": [1, 2]}}]", Syntax::Json));
    }

    #[test]
    fn strings_and_comments_do_not_count() {
        let deep = "(".repeat(500);
        assert!(ok(&format!("// {deep}\n@id(\"{deep}\") permit (principal, action, resource);"), Syntax::Cedar));
        assert!(ok(&format!("[\"{deep}\\\" {deep}\"]"), Syntax::Json));
        assert!(ok(&format!("a = '{deep}'\nb = \"\"\"{deep}\"\"\"\nc = '''{deep}'''"), Syntax::Toml));
    }

    #[test]
    fn deep_nesting_is_refused_with_its_position() {
        let deep = format!("@id(\"a\")\npermit (principal, action, resource) when {{ {}true }};", "(".repeat(60));
        match check("org/a.cedar", &deep, Syntax::Cedar) {
            Err(PolicyError::TooDeep { location, .. }) => {
                assert_eq!(location.file, "org/a.cedar");
                assert_eq!(location.line, Some(2));
            }
            other => panic!("expected TooDeep, got {other:?}"),
        }
        let chain = format!("permit (principal, action, resource) when {{ {} }};", vec!["true"; 1100].join(" && "));
        assert!(!ok(&chain, Syntax::Cedar));
        // The same operators spread over a set's elements are not a chain.
        let set = format!("permit (principal, action, resource) when {{ [{}].contains(true) }};", vec!["true && true"; 1100].join(", "));
        assert!(ok(&set, Syntax::Cedar));
        assert!(!ok(&format!("type T = {}Long{};", "Set<".repeat(60), ">".repeat(60)), Syntax::CedarSchema));
        assert!(!ok(&"[".repeat(60), Syntax::Json));
        assert!(!ok(&format!("a = {}", "[".repeat(60)), Syntax::Toml));
    }
}
