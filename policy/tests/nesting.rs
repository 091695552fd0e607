#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Deep nesting in any file of a bundle is refused with file and line before
//! a parser sees it — never a stack overflow that aborts the process — and
//! the deepest nesting accepted loads and decides on a 2 MiB thread (the
//! smallest stack stele decides on).

mod common;

use common::{bundle, write, ORG_ALLOW_ALL_FILES};
use stele_policy::canonical::canonical_path;
use stele_policy::tests_format::run_tests;
use stele_policy::{Action, Bundle, PolicyError, Request, Resource};

/// Run `f` on a thread with a 2 MiB stack (a stack overflow aborts the
/// whole test binary: that is the failure this file guards against).
fn small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

/// Deep forms of a boolean expression in every syntactic position we know.
fn deep_conditions(n: usize) -> Vec<(&'static str, String)> {
    let nested = |open: &str, inner: &str, close: &str| {
        format!("{}{inner}{}", open.repeat(n), close.repeat(n))
    };
    let if_then = nested("if true then ", "true", " else false");
    let if_else = format!("{}true", "if false then false else ".repeat(n));
    let if_cond = nested("if ", "true", " then true else false");
    vec![
        ("parentheses", nested("(", "true", ")")),
        ("if-then", if_then),
        ("if-else", if_else),
        ("if-condition", if_cond),
        ("sets", format!("{}.contains(1)", nested("[", "1", "]"))),
        ("records", format!("{} has a", nested("{a: ", "1", "}"))),
        ("&& chain", vec!["true"; n].join(" && ")),
        ("|| chain", vec!["false"; n].join(" || ")),
        ("+ chain", format!("{} == 0", vec!["0"; n].join(" + "))),
        ("* chain", format!("{} == 0", vec!["0"; n].join(" * "))),
        ("== chain", vec!["true"; n].join(" == ")),
        ("! chain", format!("{}true", "!".repeat(n))),
        ("- chain", format!("{}1 == 1", "-".repeat(n))),
        ("!( chain", nested("!(", "true", ")")),
        ("-( chain", format!("{} == 1", nested("-(", "1", ")"))),
        ("attribute chain", format!("context{} == 1", ".a".repeat(n))),
        ("has chain", format!("context{} has b", ".a".repeat(n))),
        (
            "index chain",
            format!("context{} == 1", "[\"a\"]".repeat(n)),
        ),
        ("method chain", format!("[1]{}", ".contains(1)".repeat(n))),
        ("call arguments", nested("ip(", "\"1.2.3.4\"", ")")),
        ("like chain", vec!["\"a\""; n].join(" like ")),
        ("in chain", vec!["principal"; n].join(" in ")),
    ]
}

fn policy_with(cond: &str) -> String {
    format!("// line 1\n@id(\"deep\")\npermit (principal, action, resource is File)\nwhen {{ {cond} }};\n")
}

fn load(files: Vec<(String, String)>) -> Result<Bundle, PolicyError> {
    small_stack(move || {
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let dir = bundle(&refs);
        Bundle::load(dir.path())
    })
}

#[test]
fn deep_expressions_are_refused_in_every_position_and_layer() {
    for n in [200, 5_000, 100_000] {
        for (what, cond) in deep_conditions(n) {
            for file in ["org/a.cedar", "teams/t/a.cedar", "project/a.cedar"] {
                let mut files = vec![(file.to_owned(), policy_with(&cond))];
                if file != "org/a.cedar" {
                    files.push(("org/o.cedar".into(), ORG_ALLOW_ALL_FILES.into()));
                }
                match load(files) {
                    Err(PolicyError::TooDeep { location, message }) => {
                        assert_eq!(location.file, file, "{what} x{n}");
                        assert_eq!(location.line, Some(4), "{what} x{n}");
                        assert!(message.contains("stack"), "{message}");
                    }
                    // Shallow enough for the bound: Cedar may still refuse
                    // it (a type error, at most four `!`), naming the file,
                    // or load it. What matters is that nothing crashed.
                    Err(e) if n == 200 => {
                        assert!(e.to_string().starts_with(file), "{what} x{n}: {e}")
                    }
                    Ok(_) if n == 200 => {}
                    Err(e) => panic!("{what} x{n} in {file}: not refused as too deep: {e}"),
                    Ok(_) => panic!("{what} x{n} in {file} loaded"),
                }
            }
        }
    }
}

#[test]
fn deep_nesting_in_scope_and_annotations() {
    let n = 5_000;
    for text in [
        format!(
            "@id(\"x\")\npermit (principal, action in {}Action::\"file.read\"{}, resource);",
            "[".repeat(n),
            "]".repeat(n)
        ),
        format!(
            "@id(\"x\")\npermit {}principal, action, resource{};",
            "(".repeat(n),
            ")".repeat(n)
        ),
        format!(
            "@id{}\"x\"{}\npermit (principal, action, resource);",
            "(".repeat(n),
            ")".repeat(n)
        ),
    ] {
        let e = load(vec![("org/a.cedar".into(), text)]).err().unwrap();
        assert!(matches!(e, PolicyError::TooDeep { .. }), "{e}");
        assert!(e.to_string().starts_with("org/a.cedar:"), "{e}");
    }
}

#[test]
fn deep_schema_members_and_tests_are_refused() {
    let n = 10_000;
    // The schema: nested record types and Set<…>.
    for schema in [
        format!(
            "{}\ntype Deep = {}Long{};\n",
            stele_policy::STELE_SCHEMA,
            "Set<".repeat(n),
            ">".repeat(n)
        ),
        format!(
            "{}\ntype Deep = {}Long{};\n",
            stele_policy::STELE_SCHEMA,
            "{a: ".repeat(n),
            "}".repeat(n)
        ),
    ] {
        let e = load(vec![
            ("org/a.cedar".into(), ORG_ALLOW_ALL_FILES.into()),
            ("schema.cedarschema".into(), schema),
        ])
        .err()
        .unwrap();
        assert!(matches!(e, PolicyError::TooDeep { .. }), "{e}");
        assert!(e.to_string().starts_with("schema.cedarschema:"), "{e}");
    }
    // members.toml: nested arrays and inline tables.
    for members in [
        format!("[users]\nalice = {}\"t\"{}\n", "[".repeat(n), "]".repeat(n)),
        format!("[users]\nalice = {}1{}\n", "{a = ".repeat(n), "}".repeat(n)),
    ] {
        let e = load(vec![
            ("org/a.cedar".into(), ORG_ALLOW_ALL_FILES.into()),
            ("members.toml".into(), members),
        ])
        .err()
        .unwrap();
        assert!(matches!(e, PolicyError::TooDeep { .. }), "{e}");
        assert!(e.to_string().starts_with("members.toml:2:"), "{e}");
    }
    // A test file: nested context JSON (the bundle loads; running its tests,
    // as `validate` and `test` do, is refused).
    let ctx = format!("{}1{}", "[".repeat(n), "]".repeat(n));
    let test = format!(
        "[{{\"request\": {{\"principal\": \"User::\\\"a\\\"\", \"action\": \"Action::\\\"file.read\\\"\", \"resource\": \"File::\\\"x\\\"\", \"context\": {ctx}}}, \"decision\": \"deny\", \"reason\": []}}]"
    );
    let e = small_stack(move || {
        let dir = bundle(&[("org/a.cedar", ORG_ALLOW_ALL_FILES)]);
        write(dir.path(), "tests/deep.json", &test);
        let b = Bundle::load(dir.path()).unwrap();
        run_tests(&b).err().unwrap()
    });
    assert!(matches!(e, PolicyError::TooDeep { .. }), "{e}");
    assert!(e.to_string().starts_with("tests/deep.json:1:"), "{e}");
}

fn form(what: &str, n: usize) -> String {
    let leaf = "resource.path == \"a\"";
    match what {
        "brackets" => format!("{}{leaf}{}", "(".repeat(n), ")".repeat(n)),
        "ifs" => format!(
            "{}{leaf}{}",
            "if true then ".repeat(n),
            " else false".repeat(n)
        ),
        "else-ifs" => format!("{}{leaf}", "if false then false else ".repeat(n)),
        "chain" => {
            let mut v = vec![leaf];
            v.extend(std::iter::repeat_n("true", n));
            v.join(" && ")
        }
        "mixed" => {
            let inner = std::iter::once(leaf)
                .chain(std::iter::repeat_n("true", n))
                .collect::<Vec<_>>()
                .join(" && ");
            format!("{}{inner}{}", "(".repeat(n / 5), ")".repeat(n / 5))
        }
        other => panic!("{other}"),
    }
}

/// The largest `n` whose form the bound accepts.
fn deepest_accepted(what: &str) -> usize {
    let accepted = |n: usize| {
        let dir = bundle(&[("org/a.cedar", &policy_with(&form(what, n)))]);
        !matches!(Bundle::load(dir.path()), Err(PolicyError::TooDeep { .. }))
    };
    let (mut lo, mut hi) = (1usize, 4096usize);
    assert!(accepted(lo) && !accepted(hi), "{what}");
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if accepted(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The deepest nesting the bound accepts must load and decide on a 2 MiB
/// stack: otherwise the bound is too loose to protect anything.
#[test]
fn the_deepest_accepted_nesting_loads_and_decides_on_a_small_stack() {
    for what in ["brackets", "ifs", "else-ifs", "chain", "mixed"] {
        let n = small_stack(move || deepest_accepted(what));
        let text = policy_with(&form(what, n));
        let ok = small_stack(move || {
            let dir = bundle(&[("org/a.cedar", &text)]);
            let b = Bundle::load(dir.path()).unwrap_or_else(|e| panic!("{what}: {e}"));
            let r = |p: &str| {
                Request::builder(
                    "u",
                    Action::FileRead,
                    Resource::File(canonical_path(p).unwrap()),
                )
                .build()
                .unwrap()
            };
            let (a, b2) = (b.decide(&r("a")), b.decide(&r("b")));
            (
                a.effect,
                b2.effect,
                a.errors.len(),
                format!("{:?}", a.errors),
            )
        });
        eprintln!("{what}: deepest accepted n = {n}");
        assert_eq!(ok.0, stele_policy::Effect::Allow, "{what} x{n}: {}", ok.3);
        assert_eq!(ok.1, stele_policy::Effect::Deny, "{what} x{n}");
        assert_eq!(ok.2, 0, "{what} x{n}");
    }
}
