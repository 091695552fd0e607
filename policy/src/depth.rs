//! Bounding nesting *before* any parser sees a bundle file.
//!
//! Cedar's parser, its AST conversions, serialisers and evaluator recurse
//! once per level of an expression tree, and a hundred nested brackets are
//! enough to overflow a 2 MiB thread stack — which aborts the whole process,
//! with no file or line. So every file of a bundle (policies, schema, tests,
//! members) is first scanned by a flat tokenizer that never recurses and
//! computes an upper bound of the expression tree's depth; a file whose
//! bound exceeds [`LIMIT`] is refused with its file, line and column.
//!
//! The bound, in units along the deepest path: a bracket level (`(`, `[`,
//! `{`, and `<` in the schema) costs [`BRACKET`], an `if` 1, and an
//! operator 1 — counted by precedence, as the parser builds the tree: in
//! `a.b like "x" || a.b like "y" || …` the `||`s stack up, but each `like`
//! and `.` only adds to its own operand. `,` and `;` end an expression (a
//! set's or record's elements are side by side, not nested).
//!
//! Measured on a 2 MiB thread (the smallest stele decides on) in the test
//! build: a bracket level took about 17 KiB of stack while loading, one
//! level of `&&` or `if` about 4 KiB while deciding; Cedar's evaluator
//! stops with an error (not a crash) 100 KiB before the end of the stack.
//! [`LIMIT`] keeps the deepest accepted policy well inside that: it loads
//! and decides there (a test checks it).

use crate::error::{Location, PolicyError};
use crate::source::line_col;

/// Units one bracket level costs.
pub(crate) const BRACKET: u32 = 5;
/// The most units any path through a file may add up to.
pub(crate) const LIMIT: u32 = 320;

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

/// Operator precedence tiers, loosest first: `||`, `&&`, relations, `+ -`,
/// `*`, unary `! -`, member access (`.`, index, call).
const TIERS: usize = 7;
const TIER_UNARY: usize = 5;
const TIER_MEMBER: usize = 6;

/// One bracket level's expression, as far as it has been read.
#[derive(Debug, Clone, Copy, Default)]
struct Level {
    /// Operators per tier in the open segment of that tier.
    cnt: [u32; TIERS],
    /// Deepest finished sub-segment below each tier.
    sub: [u32; TIERS],
    /// `if`s in this expression; operators before an `if` (they are above
    /// it in the tree); the deepest finished condition or branch.
    ifs: u32,
    above: u32,
    seg_best: u32,
    /// Deepest closed bracket group in this expression (with its bracket).
    child: u32,
    /// Deepest finished expression of this level (before a `,` or `;`).
    best: u32,
    /// Whether the next token is an operand (so `-` is unary).
    expect_operand: bool,
}

impl Level {
    fn new() -> Self {
        Level {
            expect_operand: true,
            ..Level::default()
        }
    }

    fn tiers_from(&self, t: usize) -> u32 {
        let mut d = 0;
        for k in (t..TIERS).rev() {
            d = self.cnt[k] + self.sub[k].max(d);
        }
        d
    }

    /// Depth of the current expression's operators.
    fn ops(&self) -> u32 {
        self.above + self.ifs + self.seg_best.max(self.tiers_from(0))
    }

    fn binary(&mut self, tier: usize) {
        let below = self.tiers_from(tier + 1);
        self.sub[tier] = self.sub[tier].max(below);
        for k in tier + 1..TIERS {
            self.cnt[k] = 0;
            self.sub[k] = 0;
        }
        self.cnt[tier] += 1;
        self.expect_operand = true;
    }

    /// `if`: what was read of this segment is above the `if` in the tree.
    fn if_(&mut self) {
        self.above += self.tiers_from(0);
        self.ifs += 1;
        self.reset_tiers();
    }

    /// `then`/`else`: the segment before was the condition or a branch.
    fn segment(&mut self) {
        self.seg_best = self.seg_best.max(self.tiers_from(0));
        self.reset_tiers();
    }

    fn reset_tiers(&mut self) {
        self.cnt = [0; TIERS];
        self.sub = [0; TIERS];
        self.expect_operand = true;
    }

    fn end_expression(&mut self) {
        self.best = self.best.max(self.ops() + self.child);
        *self = Level {
            best: self.best,
            ..Level::new()
        };
    }

    /// Depth of this level, with `open_child` the depth of a group still open in it.
    fn depth(&self, open_child: u32) -> u32 {
        self.best.max(self.ops() + self.child.max(open_child))
    }
}

struct Scan<'a> {
    file: &'a str,
    text: &'a str,
    syntax: Syntax,
    levels: Vec<Level>,
}

impl Scan<'_> {
    fn top(&mut self) -> &mut Level {
        if self.levels.is_empty() {
            self.levels.push(Level::new());
        }
        let last = self.levels.len() - 1;
        &mut self.levels[last]
    }

    /// The bound along the deepest path through what has been read.
    fn current(&self) -> u32 {
        let mut c = 0;
        let mut open_child = 0;
        for l in self.levels.iter().rev() {
            c = l.depth(open_child);
            open_child = BRACKET.saturating_add(c);
        }
        c
    }

    fn open(&mut self) {
        let t = self.top();
        // The group is one more node of the enclosing expression (an index
        // `a["b"]`, a call `f(x)`, a parenthesis).
        t.cnt[TIER_MEMBER] += 1;
        self.levels.push(Level::new());
    }

    fn close(&mut self) {
        if self.levels.len() > 1 {
            let inner = self.levels.pop().map_or(0, |l| l.depth(0));
            let t = self.top();
            t.child = t.child.max(BRACKET.saturating_add(inner));
            t.expect_operand = false;
        }
    }

    fn check(&self, at: usize) -> Result<(), PolicyError> {
        if self.current() <= LIMIT {
            return Ok(());
        }
        let (line, column) = line_col(self.text, at);
        let message = match self.syntax {
            Syntax::Cedar => format!(
                "brackets, `if`s and operator chains add up to more than {LIMIT} along one \
                 path (a bracket level counts {BRACKET}, an `if` or a chained operator 1); \
                 stele refuses this before parsing so that it cannot exhaust the stack — \
                 split it into several policies, or use a set (`[\"a\", \"b\"].contains(x)`) \
                 instead of a long `||` chain"
            ),
            Syntax::CedarSchema | Syntax::Json | Syntax::Toml => format!(
                "more than {} levels of brackets; stele refuses this before parsing so that \
                 it cannot exhaust the stack",
                LIMIT / BRACKET
            ),
        };
        Err(PolicyError::TooDeep {
            location: Location::at(self.file, line, column),
            message,
        })
    }

    fn word(&mut self, word: &str) {
        let t = self.top();
        match word {
            "if" => t.if_(),
            "then" | "else" => t.segment(),
            "in" | "has" | "like" | "is" => t.binary(2),
            // `when`/`unless` clauses are joined with `&&`.
            "when" | "unless" => t.binary(1),
            _ => t.expect_operand = false,
        }
    }

    fn operator(&mut self, op: &str) {
        let t = self.top();
        match op {
            "||" => t.binary(0),
            "&&" => t.binary(1),
            "==" | "!=" | "<=" | ">=" | "<" | ">" => t.binary(2),
            "+" => t.binary(3),
            "-" if !t.expect_operand => t.binary(3),
            "*" => t.binary(4),
            "!" | "-" => t.binary(TIER_UNARY),
            _ => {
                // `.`: member access on the operand just read.
                t.cnt[TIER_MEMBER] += 1;
            }
        }
    }
}

const CEDAR_OPS: [&str; 13] = [
    "&&", "||", "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", ".", "!",
];

/// Check that `text` (the file `file`, bundle-relative) nests within
/// [`LIMIT`]. The scan is linear in the text times the nesting (itself
/// bounded) and never recurses.
pub(crate) fn check(file: &str, text: &str, syntax: Syntax) -> Result<(), PolicyError> {
    let mut s = Scan {
        file,
        text,
        syntax,
        levels: Vec::new(),
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
                s.top().expect_operand = false;
                continue;
            }
            (Syntax::Toml, b'\'') => {
                i = skip_literal_string(bytes, i);
                continue;
            }
            (_, b'(' | b'[' | b'{') | (Syntax::CedarSchema, b'<') => {
                s.open();
                s.check(start)?;
                i += 1;
                continue;
            }
            (_, b')' | b']' | b'}') | (Syntax::CedarSchema, b'>') => {
                s.close();
                i += 1;
                continue;
            }
            (Syntax::Cedar, b',' | b';') => {
                s.top().end_expression();
                i += 1;
                continue;
            }
            _ => {}
        }
        if syntax != Syntax::Cedar {
            i += 1;
            continue;
        }
        if b.is_ascii_alphanumeric() || b == b'_' {
            let end = bytes
                .iter()
                .skip(i)
                .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                .map_or(bytes.len(), |n| i + n);
            s.word(text.get(i..end).unwrap_or(""));
            s.check(start)?;
            i = end;
            continue;
        }
        if let Some(op) = CEDAR_OPS
            .iter()
            .find(|op| bytes.get(i..i + op.len()) == Some(op.as_bytes()))
        {
            s.operator(op);
            s.check(start)?;
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

/// Past a `"…"` string with `\` escapes (TOML `"""…"""` included).
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

    fn cedar(cond: &str) -> String {
        format!("@id(\"a\") permit (principal, action, resource is File) when {{ {cond} }};")
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
        // A long `||` chain of comparisons is as deep as its `||`s.
        let alternatives: Vec<String> = (0..250)
            .map(|i| format!("resource.path like \"d{i}/*\""))
            .collect();
        assert!(ok(&cedar(&alternatives.join(" || ")), Syntax::Cedar));
        // Elements of a set are side by side.
        let set = format!(
            "[{}].contains(resource.path)",
            vec!["\"a\""; 5000].join(", ")
        );
        assert!(ok(&cedar(&set), Syntax::Cedar));
    }

    #[test]
    fn strings_and_comments_do_not_count() {
        let deep = "(".repeat(500);
        assert!(ok(
            &format!("// {deep}\n@id(\"{deep}\") permit (principal, action, resource);"),
            Syntax::Cedar
        ));
        assert!(ok(&format!("[\"{deep}\\\" {deep}\"]"), Syntax::Json));
        assert!(ok(
            &format!("a = '{deep}'\nb = \"\"\"{deep}\"\"\"\nc = '''{deep}'''"),
            Syntax::Toml
        ));
    }

    #[test]
    fn deep_nesting_is_refused_with_its_position() {
        let deep = format!(
            "@id(\"a\")\npermit (principal, action, resource) when {{ {}true }};",
            "(".repeat(70)
        );
        match check("org/a.cedar", &deep, Syntax::Cedar) {
            Err(PolicyError::TooDeep { location, .. }) => {
                assert_eq!(location.file, "org/a.cedar");
                assert_eq!(location.line, Some(2));
            }
            other => panic!("expected TooDeep, got {other:?}"),
        }
        assert!(!ok(&cedar(&vec!["true"; 400].join(" && ")), Syntax::Cedar));
        assert!(!ok(
            &cedar(&format!("context{} == 1", ".a".repeat(400))),
            Syntax::Cedar
        ));
        assert!(!ok(
            &format!("type T = {}Long{};", "Set<".repeat(70), ">".repeat(70)),
            Syntax::CedarSchema
        ));
        assert!(!ok(&"[".repeat(70), Syntax::Json));
        assert!(!ok(&format!("a = {}", "[".repeat(70)), Syntax::Toml));
    }

    #[test]
    fn operators_before_an_if_count_with_its_branches() {
        let branch = format!("context{} == 1", ".a".repeat(200));
        let prefix = vec!["true"; 150].join(" && ");
        assert!(ok(
            &cedar(&format!("if true then true else {branch}")),
            Syntax::Cedar
        ));
        assert!(!ok(
            &cedar(&format!("{prefix} && if true then true else {branch}")),
            Syntax::Cedar
        ));
    }

    #[test]
    fn operators_after_a_deep_group_still_count() {
        // `(((…))) && a && a …`: the `&&`s sit above the group.
        let group = format!("{}true{}", "(".repeat(50), ")".repeat(50));
        let cond = format!("{group} && {}", vec!["true"; 100].join(" && "));
        assert!(ok(&cedar(&group), Syntax::Cedar));
        assert!(!ok(&cedar(&cond), Syntax::Cedar));
    }
}
