#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The templates' optional package-registry allowance ("Installing more"):
//! every template carries it commented out (lines starting
//! `// registries: `). As shipped, the registries are refused; with those
//! lines uncommented — exactly what the templates tell a person to do — the
//! bundle still validates without warnings, allows https on port 443 to
//! pypi.org, files.pythonhosted.org and registry.npmjs.org and nothing else,
//! lets the installers run in a networked sandbox (and nothing else), and
//! still refuses a registry name that resolves inside.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use stele_policy::{
    Action, Bundle, CanonicalHost, ConnectStep, Effect, Network, ProgramRef, Request, Resolve,
    ResolveError, Resource, SandboxBackend, SandboxFacts, Severity,
};

/// The prefix of every line of the optional allowance.
const MARK: &str = "// registries: ";

/// The hosts the allowance is for.
const REGISTRIES: [&str; 3] = ["pypi.org", "files.pythonhosted.org", "registry.npmjs.org"];

/// Each template, who acts in it, and the files its comment says to edit.
const TEMPLATES: [(&str, &str, &[&str]); 4] = [
    ("strict-default", "alice", &["org/strict.cedar"]),
    ("minimal", "alice", &["teams/dev/dev.cedar"]),
    (
        "finance",
        "alice",
        &["teams/finance/finance.cedar", "org/ceilings.cedar"],
    ),
    (
        "desktop",
        "owner",
        &["org/desktop.cedar", "teams/local/local.cedar"],
    ),
];

fn template(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../policies")
        .join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// A copy of the template with the marked lines uncommented in `files`
/// (as `sed -i 's|^// registries: ||' FILES` does); how many lines each had.
fn uncommented(name: &str, files: &[&str]) -> (tempfile::TempDir, Vec<usize>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(name);
    copy_dir(&template(name), &root);
    // The template's own tests describe it as shipped (registries refused).
    let _ = std::fs::remove_dir_all(root.join("tests"));
    let mut counts = Vec::new();
    for f in files {
        let p = root.join(f);
        let text = std::fs::read_to_string(&p).unwrap();
        let mut n = 0;
        let out: Vec<&str> = text
            .lines()
            .map(|l| match l.strip_prefix(MARK) {
                Some(rest) => {
                    n += 1;
                    rest
                }
                None => l,
            })
            .collect();
        std::fs::write(&p, out.join("\n") + "\n").unwrap();
        counts.push(n);
    }
    (dir, counts)
}

/// Every `.cedar` file of a template that has marked lines.
fn files_with_marks(name: &str) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.extension().is_some_and(|x| x == "cedar")
                && std::fs::read_to_string(&p)
                    .unwrap()
                    .lines()
                    .any(|l| l.starts_with(MARK))
            {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let root = template(name);
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out.sort();
    out
}

/// Public addresses for the registries (and look-alikes); one registry
/// name that an attacker's resolver points inside.
#[derive(Debug)]
struct Table(HashMap<String, IpAddr>);

impl Table {
    fn new(inside: Option<&str>) -> Self {
        let mut m = HashMap::new();
        for (i, h) in REGISTRIES
            .iter()
            .chain(&[
                "example.com",
                "upload.pypi.org",
                "pypi.org.evil.example",
                "evilpypi.org",
            ])
            .enumerate()
        {
            let addr = if Some(*h) == inside {
                "10.0.0.5".to_owned()
            } else {
                format!("151.101.0.{}", i + 1)
            };
            m.insert((*h).to_owned(), addr.parse().unwrap());
        }
        Table(m)
    }
}

impl Resolve for Table {
    fn resolve(&self, name: &str, _port: u16) -> Result<Vec<IpAddr>, ResolveError> {
        self.0
            .get(name)
            .map(|a| vec![*a])
            .ok_or(ResolveError::Lookup {
                name: name.to_owned(),
                message: "NXDOMAIN".into(),
            })
    }
}

fn online() -> SandboxFacts {
    SandboxFacts {
        backend: SandboxBackend::Process,
        network: Network::ViaProxy,
    }
}

/// The final effect of connecting `principal` to `scheme://host:port`,
/// through both steps (by name, then by the resolved address).
fn connect(b: &Bundle, principal: &str, scheme: &str, host: &str, port: u16, t: &Table) -> Effect {
    let h = CanonicalHost::new(scheme, host, Some(port)).unwrap();
    let req = Request::builder(principal, Action::NetConnect, Resource::Host(h))
        .sandbox(online())
        .build()
        .unwrap();
    b.check_request(&req).unwrap();
    match b.connect_step(&req, t).unwrap() {
        ConnectStep::Decide { request, .. } => b.decide(&request).effect,
        ConnectStep::RefusedByName(d) => d.effect,
        ConnectStep::Unresolvable { .. } => Effect::Deny,
    }
}

fn exec(b: &Bundle, principal: &str, program: &str, network: Network) -> Effect {
    let p = ProgramRef::from_resolved_path(program).unwrap();
    let req = Request::builder(principal, Action::Exec, Resource::Program(p))
        .sandbox(SandboxFacts {
            backend: SandboxBackend::Process,
            network,
        })
        .argv(["-V"])
        .build()
        .unwrap();
    b.decide(&req).effect
}

/// Connections that must stay refused with the allowance on.
const OTHERS: &[(&str, &str, u16)] = &[
    ("https", "example.com", 443),
    ("https", "upload.pypi.org", 443),
    ("https", "pypi.org.evil.example", 443),
    ("https", "evilpypi.org", 443),
    ("http", "pypi.org", 80),
    ("http", "pypi.org", 443),
    ("https", "pypi.org", 8443),
    ("https", "151.101.0.1", 443),
];

#[test]
fn every_template_carries_the_allowance_commented_out() {
    for (name, _, files) in TEMPLATES {
        let mut want: Vec<String> = files.iter().map(|f| (*f).to_owned()).collect();
        want.sort();
        assert_eq!(
            files_with_marks(name),
            want,
            "{name}: the marked lines are not (only) in the files its comment names"
        );
        // The first file says how to turn it on, naming every file.
        let text = std::fs::read_to_string(template(name).join(files[0])).unwrap();
        let sed = format!("sed -i 's|^{MARK}||' {}", files.join(" "));
        assert!(
            text.contains(&sed),
            "{name}/{}: does not say `{sed}`",
            files[0]
        );
    }
}

#[test]
fn as_shipped_the_registries_are_refused() {
    for (name, principal, _) in TEMPLATES {
        let b = Bundle::load(template(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let t = Table::new(None);
        for h in REGISTRIES {
            assert_eq!(
                connect(&b, principal, "https", h, 443, &t),
                Effect::Deny,
                "{name}: {h} allowed as shipped"
            );
        }
        for prog in ["/usr/bin/python3", "/workspace/.venv/bin/pip"] {
            assert_eq!(
                exec(&b, principal, prog, Network::ViaProxy),
                Effect::Deny,
                "{name}: {prog} runs online as shipped"
            );
        }
    }
}

#[test]
fn uncommented_the_allowance_validates_and_allows_exactly_the_registries() {
    for (name, principal, files) in TEMPLATES {
        let (dir, counts) = uncommented(name, files);
        for (f, n) in files.iter().zip(&counts) {
            assert!(*n > 0, "{name}/{f}: no marked lines");
        }
        let b = Bundle::load(dir.path().join(name))
            .unwrap_or_else(|e| panic!("{name} with the registries uncommented: {e}"));
        // `stele policy validate --deny-warnings` would pass.
        let warnings: Vec<String> = b
            .lints()
            .iter()
            .filter(|l| l.id.severity() == Severity::Warning)
            .map(ToString::to_string)
            .collect();
        assert!(warnings.is_empty(), "{name}: {warnings:#?}");

        let t = Table::new(None);
        for h in REGISTRIES {
            assert_eq!(
                connect(&b, principal, "https", h, 443, &t),
                Effect::Allow,
                "{name}: {h} refused with the allowance on"
            );
        }
        for (scheme, h, port) in OTHERS {
            assert_eq!(
                connect(&b, principal, scheme, h, *port, &t),
                Effect::Deny,
                "{name}: {scheme}://{h}:{port} allowed"
            );
        }
        // A registry name that resolves inside is still refused (by the
        // internal-addresses rule), whatever the allowance says.
        let inside = Table::new(Some("pypi.org"));
        assert_eq!(
            connect(&b, principal, "https", "pypi.org", 443, &inside),
            Effect::Deny,
            "{name}: pypi.org resolving to 10.0.0.5 allowed"
        );

        // The installers run online; nothing else does; offline is as before.
        for prog in ["/usr/bin/python3", "/workspace/.venv/bin/pip"] {
            assert_eq!(
                exec(&b, principal, prog, Network::ViaProxy),
                Effect::Allow,
                "{name}: {prog} cannot run online"
            );
        }
        for prog in ["/usr/bin/sh", "/usr/bin/curl", "/usr/bin/node"] {
            assert_eq!(
                exec(&b, principal, prog, Network::ViaProxy),
                Effect::Deny,
                "{name}: {prog} runs online"
            );
        }
        assert_eq!(
            exec(&b, principal, "/usr/bin/python3", Network::Disabled),
            Effect::Allow,
            "{name}: python3 offline"
        );
    }
}

/// Where each template's comment says the packages go.
fn venv(name: &str) -> &'static str {
    match name {
        "minimal" => "work/.venv",
        _ => ".venv",
    }
}

fn file(b: &Bundle, principal: &str, action: Action, path: &str) -> Effect {
    let r = Request::builder(
        principal,
        action,
        Resource::File(stele_policy::canonical::canonical_path(path).unwrap()),
    )
    .build()
    .unwrap();
    b.decide(&r).effect
}

/// pip writes the venv and renames its temporary files into place (a
/// rename is a delete of the old name), npm replaces a package in
/// node_modules to upgrade or remove it: with the allowance, all of that is
/// allowed there without asking; deleting elsewhere is as shipped.
#[test]
fn with_the_allowance_pip_may_use_the_venv_and_nothing_more() {
    for (name, principal, files) in TEMPLATES {
        let shipped = Bundle::load(template(name)).unwrap();
        let (dir, _) = uncommented(name, files);
        let b = Bundle::load(dir.path().join(name)).unwrap();
        // pip's temporary file in the venv, and a package npm replaces.
        let installed = [
            format!(
                "{}/lib/python3.11/site-packages/INSTALLERab12.tmp",
                venv(name)
            ),
            format!(
                "{}/stele-probe/index.js",
                venv(name).replace(".venv", "node_modules")
            ),
        ];
        for tmp in &installed {
            assert_ne!(
                file(&shipped, principal, Action::FileDelete, tmp),
                Effect::Allow,
                "{name}: deleting {tmp} was already allowed"
            );
            for a in [
                Action::FileRead,
                Action::FileWrite,
                Action::FileList,
                Action::FileDelete,
            ] {
                assert_eq!(
                    file(&b, principal, a, tmp),
                    Effect::Allow,
                    "{name}: {a:?} {tmp}"
                );
            }
        }
        for other in ["notes.txt", "reports/x.csv", "work/x.txt", "venv/x"] {
            assert_eq!(
                file(&b, principal, Action::FileDelete, other),
                file(&shipped, principal, Action::FileDelete, other),
                "{name}: deleting {other} changed"
            );
        }
    }
    let (dir, _) = uncommented("finance", TEMPLATES[2].2);
    let b = Bundle::load(dir.path().join("finance")).unwrap();
    assert_eq!(
        file(&b, "alice", Action::FileRead, "hr/salaries.csv"),
        Effect::Deny
    );
}
