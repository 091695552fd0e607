//! Where a session's policy bundle comes from when none is given.
//!
//! Search order: the configured bundle (`--policy` or the config's `policy`;
//! missing is an error, never a fallback) > the user's config folder
//! (`$XDG_CONFIG_HOME/stele/policy`, else `~/.config/stele/policy`) >
//! `/etc/stele/policy` > the strict-default bundle compiled into the binary,
//! written read-only under the state folder. Nothing is ever read from the
//! current folder or the workspace, so `stele run` never runs without policy
//! and an agent cannot plant one.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use ring::digest::{Context, SHA256};

/// The system-wide bundle folder.
pub const SYSTEM_POLICY: &str = "/etc/stele/policy";

/// The strict-default bundle as compiled into this binary: (relative path, contents).
pub const BUILTIN_STRICT_DEFAULT: [(&str, &str); 5] = [
    (
        "members.toml",
        include_str!("../../policies/strict-default/members.toml"),
    ),
    (
        "org/strict.cedar",
        include_str!("../../policies/strict-default/org/strict.cedar"),
    ),
    (
        "org/server.cedar",
        include_str!("../../policies/strict-default/org/server.cedar"),
    ),
    (
        "schema.cedarschema",
        include_str!("../../policies/strict-default/schema.cedarschema"),
    ),
    (
        "tests/strict.json",
        include_str!("../../policies/strict-default/tests/strict.json"),
    ),
];

/// The desktop bundle (`stele serve --open`, `policies/desktop`) as
/// compiled into this binary; its `members.toml` is written for the person
/// running the server ([`desktop_members`]).
pub const BUILTIN_DESKTOP: [(&str, &str); 5] = [
    (
        "members.toml",
        include_str!("../../policies/desktop/members.toml"),
    ),
    (
        "org/desktop.cedar",
        include_str!("../../policies/desktop/org/desktop.cedar"),
    ),
    (
        "org/server.cedar",
        include_str!("../../policies/desktop/org/server.cedar"),
    ),
    (
        "teams/local/local.cedar",
        include_str!("../../policies/desktop/teams/local/local.cedar"),
    ),
    (
        "schema.cedarschema",
        include_str!("../../policies/desktop/schema.cedarschema"),
    ),
];

/// The desktop bundle's `members.toml` naming `owner` the one member of
/// team `local` (the name is quoted as a TOML key, so any valid principal
/// name is written as itself).
pub fn desktop_members(owner: &str) -> String {
    let key = toml_key(owner);
    format!(
        "# Written by `stele serve --open`: the OS user running the server is the\n\
         # one member of team `local` (policies/desktop).\n[users]\n{key} = [\"local\"]\n"
    )
}

fn toml_key(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Write the desktop bundle for `owner` read-only under the state folder
/// (`<state>/policies/desktop-builtin-<digest>/`) and return the folder.
pub fn materialise_desktop(state_dir: &Path, owner: &str) -> Result<PathBuf, PolicyLocationError> {
    let members = desktop_members(owner);
    let files: Vec<(&str, &str)> = BUILTIN_DESKTOP
        .iter()
        .map(|(rel, text)| {
            if *rel == "members.toml" {
                (*rel, members.as_str())
            } else {
                (*rel, *text)
            }
        })
        .collect();
    materialise(state_dir, "desktop-builtin", &files)
}

/// Which step of the search order gave the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyOrigin {
    /// `--policy` or the config's `policy`.
    Configured,
    /// The user's config folder.
    User,
    /// `/etc/stele/policy`.
    System,
    /// The strict-default bundle compiled into the binary.
    BuiltIn,
}

impl PolicyOrigin {
    /// Name recorded in `session.start`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Configured => "configured",
            Self::User => "user-config",
            Self::System => "system",
            Self::BuiltIn => "built-in strict-default",
        }
    }
}

/// A bundle folder and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyLocation {
    /// The folder.
    pub path: PathBuf,
    /// Which step found it.
    pub origin: PolicyOrigin,
}

/// Why no bundle folder could be settled on.
#[derive(Debug, thiserror::Error)]
pub enum PolicyLocationError {
    /// The configured bundle does not exist (never silently replaced).
    #[error("policy bundle {0} (from --policy or the config's `policy`) does not exist")]
    ConfiguredMissing(PathBuf),
    /// A search-order location exists but is not a folder.
    #[error("policy location {0} exists but is not a folder")]
    NotAFolder(PathBuf),
    /// The built-in bundle could not be written under the state folder.
    #[error("writing a built-in policy bundle under {path}: {source}")]
    Materialise {
        /// The folder.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// The user's policy folder: `$XDG_CONFIG_HOME/stele/policy`, else `~/.config/stele/policy`
/// (empty or relative `$XDG_CONFIG_HOME` ignored).
pub fn user_policy_dir() -> Option<PathBuf> {
    crate::paths::user_config_dir().map(|d| d.join("policy"))
}

/// Every folder the search order reads when no bundle is configured, in
/// order (the user's, then the system's): no workspace may hold them.
pub fn search_folders() -> Vec<(PolicyOrigin, PathBuf)> {
    let mut candidates = Vec::new();
    if let Some(u) = user_policy_dir() {
        candidates.push((PolicyOrigin::User, u));
    }
    candidates.push((PolicyOrigin::System, PathBuf::from(SYSTEM_POLICY)));
    candidates
}

/// Settle the bundle folder for a session (see the module docs for the order).
pub fn resolve(configured: Option<&Path>) -> Result<PolicyLocation, PolicyLocationError> {
    resolve_in(configured, &search_folders(), &crate::paths::state_dir())
}

/// [`resolve`] over explicit candidate folders and state folder.
pub fn resolve_in(
    configured: Option<&Path>,
    candidates: &[(PolicyOrigin, PathBuf)],
    state_dir: &Path,
) -> Result<PolicyLocation, PolicyLocationError> {
    if let Some(p) = configured {
        if !p.exists() {
            return Err(PolicyLocationError::ConfiguredMissing(p.to_path_buf()));
        }
        return Ok(PolicyLocation {
            path: p.to_path_buf(),
            origin: PolicyOrigin::Configured,
        });
    }
    for (origin, dir) in candidates {
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => {
                return Ok(PolicyLocation {
                    path: dir.clone(),
                    origin: *origin,
                })
            }
            Ok(_) => return Err(PolicyLocationError::NotAFolder(dir.clone())),
            Err(_) => continue,
        }
    }
    let path = materialise_builtin(state_dir)?;
    Ok(PolicyLocation {
        path,
        origin: PolicyOrigin::BuiltIn,
    })
}

/// SHA-256 over `files` (path, NUL, length, contents), hex.
fn files_digest(files: &[(&str, &str)]) -> String {
    let mut ctx = Context::new(&SHA256);
    for (rel, text) in files {
        ctx.update(rel.as_bytes());
        ctx.update(&[0]);
        ctx.update(&(text.len() as u64).to_be_bytes());
        ctx.update(text.as_bytes());
    }
    hex::encode(ctx.finish().as_ref())
}

/// True when `dir` holds `files` with their contents.
fn holds(dir: &Path, files: &[(&str, &str)]) -> bool {
    files
        .iter()
        .all(|(rel, text)| fs::read(dir.join(rel)).is_ok_and(|b| b == text.as_bytes()))
}

/// Write the built-in bundle read-only (files 0400, folders 0500, under a
/// private `policies/` folder) to
/// `<state>/policies/strict-default-builtin-<digest>/` (once; a copy whose
/// contents differ is replaced) and return the folder.
pub fn materialise_builtin(state_dir: &Path) -> Result<PathBuf, PolicyLocationError> {
    materialise(state_dir, "strict-default-builtin", &BUILTIN_STRICT_DEFAULT)
}

/// Write the bundle `files` read-only (as [`materialise_builtin`] does) to
/// `<state>/policies/<name>-<digest>/` and return the folder.
pub fn materialise(
    state_dir: &Path,
    name: &str,
    files: &[(&str, &str)],
) -> Result<PathBuf, PolicyLocationError> {
    let parent = state_dir.join("policies");
    let dir = parent.join(format!("{name}-{}", &files_digest(files)[..16]));
    if holds(&dir, files) {
        return Ok(dir);
    }
    let err = |source| PolicyLocationError::Materialise {
        path: dir.clone(),
        source,
    };
    crate::paths::ensure_private_dir(&parent).map_err(err)?;
    // Written to a temporary folder and renamed: never a half-written bundle.
    let tmp = parent.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
    write_tree(&tmp, files).map_err(err)?;
    if dir.exists() {
        // A modified copy: drop it (read-only folders need write permission to empty).
        make_writable(&dir).map_err(err)?;
        fs::remove_dir_all(&dir).map_err(err)?;
    }
    if let Err(e) = fs::rename(&tmp, &dir) {
        let _ = make_writable(&tmp).and_then(|()| fs::remove_dir_all(&tmp));
        // Another process may have written it first.
        if holds(&dir, files) {
            return Ok(dir);
        }
        return Err(err(e));
    }
    Ok(dir)
}

fn write_tree(root: &Path, files: &[(&str, &str)]) -> io::Result<()> {
    for (rel, text) in files {
        let p = root.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&p, text)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o400))?;
    }
    set_dirs_mode(root, 0o500)
}

fn set_dirs_mode(dir: &Path, mode: u32) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            set_dirs_mode(&e.path(), mode)?;
        }
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
}

fn make_writable(dir: &Path) -> io::Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    for e in fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            make_writable(&e.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn configured_wins_and_missing_configured_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let user = d.path().join("user");
        fs::create_dir_all(&user).unwrap();
        let cands = [(PolicyOrigin::User, user.clone())];
        let state = d.path().join("state");
        let l = resolve_in(Some(&user), &cands, &state).unwrap();
        assert_eq!(l.origin, PolicyOrigin::Configured);
        let missing = d.path().join("nope");
        let e = resolve_in(Some(&missing), &cands, &state).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        assert!(!state.exists(), "no fallback was written");
    }

    #[test]
    fn search_order_then_builtin() {
        let d = tempfile::tempdir().unwrap();
        let user = d.path().join("user");
        let system = d.path().join("system");
        let state = d.path().join("state");
        let cands = [
            (PolicyOrigin::User, user.clone()),
            (PolicyOrigin::System, system.clone()),
        ];
        let l = resolve_in(None, &cands, &state).unwrap();
        assert_eq!(l.origin, PolicyOrigin::BuiltIn);
        assert!(l.path.starts_with(&state));
        let b = stele_policy::Bundle::load(&l.path).unwrap();
        let repo = stele_policy::Bundle::load(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/strict-default"),
        )
        .unwrap();
        assert_eq!(
            b.digest(),
            repo.digest(),
            "the built-in copy is the template"
        );
        let mode = fs::metadata(l.path.join("org/strict.cedar"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400, "read-only, the owner's only");
        let dmode = fs::metadata(l.path.join("org"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dmode & 0o777, 0o500);

        fs::create_dir_all(&system).unwrap();
        assert_eq!(
            resolve_in(None, &cands, &state).unwrap().origin,
            PolicyOrigin::System
        );
        fs::create_dir_all(&user).unwrap();
        assert_eq!(
            resolve_in(None, &cands, &state).unwrap(),
            PolicyLocation {
                path: user,
                origin: PolicyOrigin::User
            }
        );
    }

    #[test]
    fn a_modified_builtin_copy_is_replaced() {
        let d = tempfile::tempdir().unwrap();
        let dir = materialise_builtin(d.path()).unwrap();
        let f = dir.join("org/strict.cedar");
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&f, "permit(principal, action, resource);").unwrap();
        assert_eq!(materialise_builtin(d.path()).unwrap(), dir);
        assert_eq!(
            fs::read_to_string(&f).unwrap(),
            BUILTIN_STRICT_DEFAULT[1].1,
            "restored"
        );
    }

    #[test]
    fn the_desktop_bundle_names_its_owner_and_is_the_template_otherwise() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state");
        for owner in ["root", "ann.lee", "ann@example", "a-b_c"] {
            let dir = materialise_desktop(&state, owner).unwrap();
            let b = stele_policy::Bundle::load(&dir).unwrap();
            let teams: Vec<&str> = b.members().teams_of(owner).collect();
            assert_eq!(teams, ["local"], "{owner}");
            assert_eq!(b.members().users().count(), 1);
            for (rel, text) in BUILTIN_DESKTOP.iter().filter(|(r, _)| *r != "members.toml") {
                assert_eq!(fs::read_to_string(dir.join(rel)).unwrap(), *text);
            }
        }
    }
}
