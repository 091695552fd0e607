//! Reading a bundle folder. The layout is strict so that nothing is silently
//! ignored: every entry of a layer folder (`org/`, `teams/<team>/`,
//! `project/`) is a regular `*.cedar` file holding policies, or the bundle
//! is refused; so is every entry of `teams/` that is not a team folder and of
//! `tests/` that is not a `*.json` file; a policy file anywhere else, a
//! symlink, a FIFO or device anywhere, and a name that is not UTF-8.
//!
//! ```text
//! BUNDLE/
//!   schema.cedarschema     the stele schema (must equal `stele policy schema`)
//!   members.toml           users → teams
//!   org/*.cedar            required, at least one policy
//!   teams/<team>/*.cedar   optional, one folder per team
//!   project/*.cedar        optional
//!   tests/*.json           optional, Cedar JSON test format
//! ```
//!
//! Other files at the root (a README) and other folders are not read, but a
//! folder anywhere that holds something named like a policy file is refused.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::error::{Location, PolicyError};
use crate::members::{valid_name, MEMBERS_FILE};

/// Schema file name inside a bundle.
pub const SCHEMA_FILE: &str = "schema.cedarschema";

/// The largest file a bundle may hold (policies are text; anything bigger
/// is a mistake or an attack on the loader's memory).
pub(crate) const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// A file read from the bundle: relative path and text.
#[derive(Debug, Clone)]
pub(crate) struct TextFile {
    pub rel: String,
    pub text: String,
}

/// Everything read from a bundle folder, before compilation.
#[derive(Debug, Default)]
pub(crate) struct BundleFiles {
    pub schema: Option<TextFile>,
    pub members: Option<TextFile>,
    pub org: Vec<TextFile>,
    pub teams: BTreeMap<String, Vec<TextFile>>,
    pub project: Vec<TextFile>,
    pub tests: Vec<TextFile>,
}

impl BundleFiles {
    /// Every file that was read, for the digest.
    pub fn all(&self) -> impl Iterator<Item = &TextFile> {
        self.schema
            .iter()
            .chain(self.members.iter())
            .chain(self.org.iter())
            .chain(self.teams.values().flatten())
            .chain(self.project.iter())
            .chain(self.tests.iter())
    }
}

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    File,
    Dir,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PolicyError + '_ {
    move |source| PolicyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn layout(rel: &str, message: impl Into<String>) -> PolicyError {
    PolicyError::Layout {
        location: Location::file(rel),
        message: message.into(),
    }
}

/// Sorted entries of a directory, refusing symlinks, anything that is not a
/// regular file or folder, and names that are not UTF-8.
fn entries(root: &Path, dir: &Path) -> Result<Vec<(String, PathBuf, Kind)>, PolicyError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let ft = entry.file_type().map_err(io(&path))?;
        let rel = rel_path(root, &path);
        if ft.is_symlink() {
            return Err(layout(&rel, "symlinks are not allowed in a policy bundle"));
        }
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else {
            return Err(layout(
                &rel,
                "not a regular file or folder (a FIFO, socket or device) in a policy bundle",
            ));
        };
        let name = entry.file_name().into_string().map_err(|_| {
            layout(
                &rel,
                "file name is not UTF-8 (shown with U+FFFD); rename or remove it",
            )
        })?;
        out.push((name, path, kind));
    }
    out.sort();
    Ok(out)
}

fn rel_path(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn read(root: &Path, path: &Path) -> Result<TextFile, PolicyError> {
    let rel = rel_path(root, path);
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io(path))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(layout(
            &rel,
            format!("larger than {} MiB", MAX_FILE_BYTES / (1024 * 1024)),
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| layout(&rel, "file is not valid UTF-8"))?;
    Ok(TextFile { rel, text })
}

/// Whether a name looks like it was meant to be a policy file (any case,
/// any suffix: `rules.CEDAR`, `rules.cedar.txt`, `rules.cedar~`).
fn policy_like(name: &str) -> bool {
    name.to_lowercase().contains(".cedar")
}

/// Read a layer folder: every entry must be a regular `*.cedar` file.
fn read_layer(root: &Path, dir: &Path) -> Result<Vec<TextFile>, PolicyError> {
    let mut out = Vec::new();
    for (name, path, kind) in entries(root, dir)? {
        let rel = rel_path(root, &path);
        if kind == Kind::Dir {
            return Err(layout(
                &rel,
                "a folder inside a layer folder is not read: a layer folder holds only \
                 *.cedar files; move its policies up or remove it",
            ));
        }
        if name.starts_with('.') {
            return Err(layout(
                &rel,
                "hidden file in a layer folder (an editor's swap or backup file?): a layer \
                 folder holds only *.cedar files; remove it",
            ));
        }
        if !name.ends_with(".cedar") {
            let why = if policy_like(&name) {
                "policy file names end in `.cedar` exactly (lowercase, nothing after it): \
                 this file would be ignored; rename or remove it"
            } else {
                "not a policy file: a layer folder holds only *.cedar files; move it out of \
                 the bundle's layers"
            };
            return Err(layout(&rel, why));
        }
        out.push(read(root, &path)?);
    }
    Ok(out)
}

/// Error on anything under `dir` that looks like a policy file (used where
/// none may be: it would be silently ignored).
fn refuse_stray_policies(root: &Path, dir: &Path) -> Result<(), PolicyError> {
    for (name, path, kind) in entries(root, dir)? {
        if kind == Kind::Dir {
            refuse_stray_policies(root, &path)?;
        } else if policy_like(&name) {
            return Err(layout(
                &rel_path(root, &path),
                "policy file outside org/, teams/<team>/ and project/ would be ignored; \
                 move it into a layer",
            ));
        }
    }
    Ok(())
}

/// The known root entries, and what each must be.
const KNOWN: [(&str, Kind); 6] = [
    (SCHEMA_FILE, Kind::File),
    (MEMBERS_FILE, Kind::File),
    ("org", Kind::Dir),
    ("teams", Kind::Dir),
    ("project", Kind::Dir),
    ("tests", Kind::Dir),
];

/// Read a bundle folder.
pub(crate) fn read_bundle(root: &Path) -> Result<BundleFiles, PolicyError> {
    let meta = std::fs::metadata(root).map_err(io(root))?;
    if !meta.is_dir() {
        return Err(layout(
            &root.display().to_string(),
            "a policy bundle is a folder",
        ));
    }
    let mut files = BundleFiles::default();
    let mut saw_org = false;
    for (name, path, kind) in entries(root, root)? {
        let known = KNOWN.iter().find(|(k, _)| *k == name);
        match (known, kind) {
            (Some((_, want)), kind) if *want != kind => {
                let what = match want {
                    Kind::File => "a file",
                    Kind::Dir => "a folder",
                };
                return Err(layout(&name, format!("must be {what}")));
            }
            (Some((SCHEMA_FILE, _)), _) => files.schema = Some(read(root, &path)?),
            (Some((MEMBERS_FILE, _)), _) => files.members = Some(read(root, &path)?),
            (Some(("org", _)), _) => {
                saw_org = true;
                files.org = read_layer(root, &path)?;
            }
            (Some(("project", _)), _) => files.project = read_layer(root, &path)?,
            (Some(("teams", _)), _) => files.teams = read_teams(root, &path)?,
            (Some(("tests", _)), _) => files.tests = read_tests(root, &path)?,
            (Some(_), _) => {}
            (None, _) if KNOWN.iter().any(|(k, _)| k.eq_ignore_ascii_case(&name)) => {
                return Err(layout(
                    &name,
                    "names in a bundle are lowercase: this would be ignored; rename it",
                ));
            }
            (None, Kind::Dir) => refuse_stray_policies(root, &path)?,
            (None, Kind::File) if policy_like(&name) => {
                return Err(layout(
                    &name,
                    "policy file at the bundle root would be ignored; move it into a layer",
                ))
            }
            (None, Kind::File) => {}
        }
    }
    if !saw_org || files.org.is_empty() {
        return Err(layout(
            "org/",
            "the required org layer is missing (org/*.cedar with at least one policy); \
             refusing the bundle",
        ));
    }
    Ok(files)
}

/// `teams/`: one folder per team, nothing else.
fn read_teams(root: &Path, dir: &Path) -> Result<BTreeMap<String, Vec<TextFile>>, PolicyError> {
    let mut teams = BTreeMap::new();
    for (team, tpath, kind) in entries(root, dir)? {
        let rel = rel_path(root, &tpath);
        if kind == Kind::File {
            let why = if policy_like(&team) {
                "team policies go in teams/<team>/*.cedar"
            } else {
                "teams/ holds only one folder per team; remove this file"
            };
            return Err(layout(&rel, why));
        }
        if !valid_name(&team) {
            return Err(layout(
                &rel,
                format!(
                    "invalid team name `{team}` (letters, digits, - _ . @; not starting with .)"
                ),
            ));
        }
        teams.insert(team, read_layer(root, &tpath)?);
    }
    Ok(teams)
}

/// `tests/`: `*.json` files, nothing else.
fn read_tests(root: &Path, dir: &Path) -> Result<Vec<TextFile>, PolicyError> {
    let mut out = Vec::new();
    for (name, path, kind) in entries(root, dir)? {
        let rel = rel_path(root, &path);
        if kind == Kind::Dir || name.starts_with('.') || !name.ends_with(".json") {
            return Err(layout(
                &rel,
                "tests/ holds only *.json test files (a test file named otherwise would not \
                 run); rename or remove it",
            ));
        }
        out.push(read(root, &path)?);
    }
    Ok(out)
}
