//! Reading a bundle folder. The layout is strict so that nothing is silently
//! ignored: a `.cedar` file anywhere other than `org/`, `teams/<team>/` or
//! `project/` is an error, and so is any symlink (a bundle must not reach
//! outside itself).
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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Location, PolicyError};
use crate::members::{valid_name, MEMBERS_FILE};

/// Schema file name inside a bundle.
pub const SCHEMA_FILE: &str = "schema.cedarschema";

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

/// Sorted entries of a directory, refusing symlinks.
fn entries(root: &Path, dir: &Path) -> Result<Vec<(String, PathBuf, bool)>, PolicyError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let ft = entry.file_type().map_err(io(&path))?;
        let rel = rel_path(root, &path);
        if ft.is_symlink() {
            return Err(layout(&rel, "symlinks are not allowed in a policy bundle"));
        }
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| layout(&rel, "file names must be UTF-8"))?;
        out.push((name, path, ft.is_dir()));
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
    let bytes = std::fs::read(path).map_err(io(path))?;
    let text = String::from_utf8(bytes).map_err(|_| layout(&rel, "file is not valid UTF-8"))?;
    Ok(TextFile { rel, text })
}

/// Read the `.cedar` files directly in `dir`; anything nested deeper that
/// is (or contains) a `.cedar` file is an error.
fn read_layer(root: &Path, dir: &Path) -> Result<Vec<TextFile>, PolicyError> {
    let mut out = Vec::new();
    for (name, path, is_dir) in entries(root, dir)? {
        if is_dir {
            refuse_stray_cedar(root, &path)?;
        } else if name.ends_with(".cedar") {
            out.push(read(root, &path)?);
        }
    }
    Ok(out)
}

/// Error on any `.cedar` file under `dir` (used where none may be).
fn refuse_stray_cedar(root: &Path, dir: &Path) -> Result<(), PolicyError> {
    for (name, path, is_dir) in entries(root, dir)? {
        if is_dir {
            refuse_stray_cedar(root, &path)?;
        } else if name.ends_with(".cedar") {
            return Err(layout(
                &rel_path(root, &path),
                "policy file outside org/, teams/<team>/ and project/ would be ignored; \
                 move it into a layer",
            ));
        }
    }
    Ok(())
}

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
    for (name, path, is_dir) in entries(root, root)? {
        match (name.as_str(), is_dir) {
            (SCHEMA_FILE, false) => files.schema = Some(read(root, &path)?),
            (MEMBERS_FILE, false) => files.members = Some(read(root, &path)?),
            ("org", true) => {
                saw_org = true;
                files.org = read_layer(root, &path)?;
            }
            ("project", true) => files.project = read_layer(root, &path)?,
            ("teams", true) => {
                for (team, tpath, tdir) in entries(root, &path)? {
                    let rel = rel_path(root, &tpath);
                    if !tdir {
                        if team.ends_with(".cedar") {
                            return Err(layout(&rel, "team policies go in teams/<team>/*.cedar"));
                        }
                        continue;
                    }
                    if !valid_name(&team) {
                        return Err(layout(&rel, format!("invalid team name `{team}`")));
                    }
                    files.teams.insert(team, read_layer(root, &tpath)?);
                }
            }
            ("tests", true) => {
                for (tname, tpath, tdir) in entries(root, &path)? {
                    if tdir {
                        refuse_stray_cedar(root, &tpath)?;
                    } else if tname.ends_with(".json") {
                        files.tests.push(read(root, &tpath)?);
                    }
                }
            }
            (_, true) => refuse_stray_cedar(root, &path)?,
            (other, false) if other.ends_with(".cedar") => {
                return Err(layout(
                    other,
                    "policy file at the bundle root would be ignored; move it into a layer",
                ))
            }
            _ => {}
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
