#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The command line says the same thing everywhere: every `stele …` line the
//! README and docs/ show names commands and flags that exist; the top-level
//! help says what stele is (not a crate description); `audit verify-proof`
//! works offline with only the file and the verifier key; `sandbox exec`
//! takes its defaults from the same configuration as `stele run`.

mod e2e_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use stele_tests::{leaves_json, sandbox_available, Stele};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn help(path: &[String]) -> Option<String> {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let o = std::process::Command::new(stele_tests::stele_bin())
        .args(&args)
        .output()
        .unwrap();
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The subcommand names a help text lists.
fn subcommands(help: &str) -> Vec<String> {
    let Some(rest) = help.split("Commands:\n").nth(1) else {
        return Vec::new();
    };
    rest.lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// `stele …` lines of the fenced code blocks of `md`, continuation lines joined.
fn command_lines(md: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in md.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        let t = line.trim();
        if let Some((n, mut acc)) = pending.take() {
            acc.push(' ');
            acc.push_str(t.trim_end_matches('\\'));
            if t.ends_with('\\') {
                pending = Some((n, acc));
            } else {
                out.push((n, acc));
            }
            continue;
        }
        let t = t.strip_prefix("$ ").unwrap_or(t);
        if let Some(cmd) = t.strip_prefix("stele ") {
            if t.ends_with('\\') {
                pending = Some((i + 1, cmd.trim_end_matches('\\').to_string()));
            } else {
                out.push((i + 1, cmd.to_string()));
            }
        }
    }
    out
}

/// Without the comment and shell redirections.
fn words(cmd: &str) -> Vec<String> {
    let mut cmd = cmd.to_string();
    for cut in ["  #", " # ", " > "] {
        if let Some(i) = cmd.find(cut) {
            cmd.truncate(i);
        }
    }
    cmd.split_whitespace().map(str::to_string).collect()
}

/// A command path (`["audit", "show"]`) and the flags written after it.
type PathAndFlags = (Vec<String>, Vec<String>);

/// Every command path a doc line names (alternatives `a|b` and `a | b`
/// expanded) with the flags written after it.
fn resolve(
    cmd: &str,
    cache: &mut BTreeMap<Vec<String>, Option<String>>,
) -> Result<Vec<PathAndFlags>, String> {
    let mut helpof = |p: &Vec<String>| cache.entry(p.clone()).or_insert_with(|| help(p)).clone();
    let w = words(cmd);
    let mut paths: Vec<Vec<String>> = vec![Vec::new()];
    let mut i = 0;
    // Options of `stele` itself before the command (`stele --server URL run …`).
    let mut top = Vec::new();
    while i + 1 < w.len() && w[i].starts_with("--") {
        top.push(w[i].clone());
        i += 2;
    }
    // The path: words that are subcommands of what comes before.
    while i < w.len() {
        let alts: Vec<&str> = w[i].split('|').collect();
        let mut next = Vec::new();
        for p in &paths {
            let subs = subcommands(
                &helpof(p).ok_or_else(|| format!("`stele {}` does not exist", p.join(" ")))?,
            );
            if alts.iter().all(|a| subs.iter().any(|s| s == a)) {
                for a in &alts {
                    let mut q = p.clone();
                    q.push((*a).to_string());
                    next.push(q);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        paths = next;
        i += 1;
    }
    if paths.iter().any(Vec::is_empty) {
        return Err(format!("no command in `stele {cmd}`"));
    }
    // `build | show`, `list | show ID | resume ID`: siblings of the last word.
    let mut extra = Vec::new();
    let mut j = i;
    while j + 1 < w.len() {
        // (`[--session ID | --since T]` is a choice of flags, not of commands.)
        if w[j] == "|" && !w[j + 1].starts_with('-') {
            let sib = &w[j + 1];
            for p in &paths {
                let parent = p[..p.len() - 1].to_vec();
                let subs = subcommands(&helpof(&parent).unwrap_or_default());
                if !subs.contains(sib) {
                    return Err(format!("`stele {} {sib}` does not exist", parent.join(" ")));
                }
                let mut q = parent.clone();
                q.push(sib.clone());
                extra.push(q);
            }
        }
        j += 1;
    }
    paths.extend(extra);
    let flags: Vec<String> = w[i..]
        .iter()
        .map(|t| t.trim_start_matches('[').trim_end_matches(']').to_string())
        .filter(|t| t.starts_with('-') && t != "--" && t.len() > 1 && t != "-")
        .map(|t| t.split('=').next().unwrap().to_string())
        .collect();
    let mut out: Vec<PathAndFlags> = paths.into_iter().map(|p| (p, flags.clone())).collect();
    if !top.is_empty() {
        helpof(&Vec::new());
        out.push((Vec::new(), top));
    }
    Ok(out)
}

#[test]
fn every_command_the_docs_show_exists_with_its_flags() {
    let mut docs = vec![root().join("README.md")];
    for e in std::fs::read_dir(root().join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            docs.push(p);
        }
    }
    let mut cache = BTreeMap::new();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        let name = doc.strip_prefix(root()).unwrap().display().to_string();
        for (line, cmd) in command_lines(&text) {
            match resolve(&cmd, &mut cache) {
                Err(e) => wrong.push(format!("{name}:{line}: {e}")),
                Ok(paths) => {
                    for (p, flags) in paths {
                        checked += 1;
                        let h = cache.get(&p).cloned().flatten().unwrap_or_default();
                        for f in flags {
                            let known = h.contains(&format!("{f} "))
                                || h.contains(&format!("{f},"))
                                || h.contains(&format!("{f}\n"));
                            if !known {
                                wrong.push(format!(
                                    "{name}:{line}: `stele {}` has no {f}",
                                    p.join(" ")
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 40, "the docs' commands were found ({checked})");
    assert!(
        wrong.is_empty(),
        "commands the docs show that stele does not have:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_help_says_what_stele_is() {
    let h = help(&[]).unwrap();
    let about = h.lines().next().unwrap();
    let manifest = std::fs::read_to_string(root().join("runtime/Cargo.toml")).unwrap();
    let description = manifest
        .lines()
        .find_map(|l| l.strip_prefix("description = \""))
        .unwrap()
        .trim_end_matches('"');
    assert_ne!(
        about, description,
        "the about line is the crate's description"
    );
    for w in ["agent", "folder", "policy", "log"] {
        assert!(about.contains(w), "{about}");
    }
    assert!(
        h.contains("stele doctor") && h.contains("stele demo"),
        "a first step is named: {h}"
    );
    // Each command's one-line description covers all its subcommands.
    for (cmd, subs) in [
        ("vm", ["image", "check", "bench"].as_slice()),
        ("bench", ["gate", "tool-call"].as_slice()),
    ] {
        let line = h
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{cmd} ")))
            .unwrap();
        let listed = subcommands(&help(&[cmd.to_string()]).unwrap());
        for s in subs {
            assert!(listed.iter().any(|l| l == s), "{cmd} {s}");
        }
        assert!(
            !line.contains("Build and inspect the micro-VM backend's guest image")
                && !line.ends_with("Measure the gate's overhead"),
            "`{cmd}`'s about names one of its subcommands only: {line}"
        );
    }
}

fn run(args: &[&str]) -> Output {
    std::process::Command::new(stele_tests::stele_bin())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn verify_proof_takes_only_the_file_and_the_verifier_key() {
    let h = help(&["audit".into(), "verify-proof".into()]).unwrap();
    assert!(!h.contains("--db") && !h.contains("--key "), "{h}");
    assert!(h.contains("--vkey"), "{h}");
    // A log or key flag is a usage error (2), not silently ignored.
    for flag in ["--db", "--key"] {
        let o = run(&[
            "audit",
            "verify-proof",
            "p.tlog-proof",
            "--vkey",
            "v",
            flag,
            "x",
        ]);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{flag}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// `sandbox exec` without flags uses the configuration `stele run` uses: the
/// policy, the approval mode and the person ($USER), not defaults of its own.
#[test]
fn sandbox_exec_takes_runs_defaults_from_the_config() {
    if !sandbox_available("sandbox_exec_takes_runs_defaults_from_the_config") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let s: Stele = e2e_common::setup(d.path());
    let ws = e2e_common::workspace(d.path());
    let bundle = e2e_common::policy(
        d.path(),
        stele_tests::mock_model::Wire::Anthropic,
        e2e_common::EXEC_NEEDS_APPROVAL,
    );
    let cfg = d.path().join("config.toml");
    let exec = |config: &str| {
        std::fs::write(&cfg, config).unwrap();
        s.run_env(
            &[
                "sandbox",
                "exec",
                "--workspace",
                ws.to_str().unwrap(),
                "--",
                "python3",
                "-c",
                "print(6*7)",
            ],
            &[
                ("STELE_CONFIG", cfg.to_str().unwrap()),
                ("XDG_CONFIG_HOME", d.path().join("xdg").to_str().unwrap()),
                ("USER", "alice"),
            ],
        )
        .unwrap()
    };
    // policy and approve from the config, the person from $USER (alice, in finance).
    let o = exec(&format!(
        "policy = \"{}\"\napprove = \"allow\"\n",
        bundle.display()
    ));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "42");
    let leaves = leaves_json(&s, &s.state.join("audit.db")).unwrap();
    let start = leaves
        .iter()
        .rev()
        .find(|l| l["kind"] == "session.start")
        .unwrap();
    assert_eq!(start["actor"]["principal"], "alice");
    assert!(leaves.iter().any(|l| l["kind"] == "approval.grant"));
    // approve = "deny" in the config: refused, as `stele run` would (126).
    let o = exec(&format!(
        "policy = \"{}\"\napprove = \"deny\"\n",
        bundle.display()
    ));
    assert_eq!(
        o.status.code(),
        Some(126),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
