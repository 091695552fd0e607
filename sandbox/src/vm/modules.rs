//! Kernel modules for the initramfs: the wanted modules plus everything
//! they depend on, in load order. Dependencies come from the `depends=`
//! entry of each module's `.modinfo` section (what `modinfo -F depends`
//! prints), so no host kmod tools are needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::error::VmError;

/// One module file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Module {
    /// Module name (`-` normalised to `_`).
    pub name: String,
    /// Its `.ko` file.
    pub path: PathBuf,
}

/// `wanted` and their dependencies, dependencies first. Modules built into
/// the kernel (listed in `modules.builtin`) are left out.
pub(crate) fn load_order(moddir: &Path, wanted: &[&str]) -> Result<Vec<Module>, VmError> {
    let mut files = BTreeMap::new();
    index(&moddir.join("kernel"), &mut files)?;
    let builtin: BTreeSet<String> = std::fs::read_to_string(moddir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .map(|f| normalise(f.trim_end_matches(".ko")))
        .collect();
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    for w in wanted {
        visit(&normalise(w), &files, &builtin, &mut done, &mut order, 0)?;
    }
    Ok(order)
}

fn visit(
    name: &str,
    files: &BTreeMap<String, PathBuf>,
    builtin: &BTreeSet<String>,
    done: &mut BTreeSet<String>,
    order: &mut Vec<Module>,
    depth: usize,
) -> Result<(), VmError> {
    if done.contains(name) || (builtin.contains(name) && !files.contains_key(name)) {
        return Ok(());
    }
    let path = files.get(name).ok_or_else(|| VmError::Tool {
        step: "initramfs",
        command: "module lookup".into(),
        detail: format!("kernel module {name} is neither a .ko nor built in"),
    })?;
    if depth > 32 {
        return Err(VmError::Tool {
            step: "initramfs",
            command: "module lookup".into(),
            detail: format!("module dependency cycle at {name}"),
        });
    }
    for dep in depends(path)? {
        visit(&dep, files, builtin, done, order, depth + 1)?;
    }
    done.insert(name.to_owned());
    order.push(Module {
        name: name.to_owned(),
        path: path.clone(),
    });
    Ok(())
}

fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

fn index(dir: &Path, out: &mut BTreeMap<String, PathBuf>) -> Result<(), VmError> {
    let rd = std::fs::read_dir(dir).map_err(|source| VmError::File {
        what: "kernel modules",
        path: dir.to_owned(),
        source,
    })?;
    for entry in rd.flatten() {
        let path = entry.path();
        if path.is_dir() {
            index(&path, out)?;
        } else if let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".ko"))
        {
            out.insert(normalise(stem), path);
        }
    }
    Ok(())
}

/// The `depends=` list of a module file.
fn depends(path: &Path) -> Result<Vec<String>, VmError> {
    let bytes = std::fs::read(path).map_err(|source| VmError::File {
        what: "kernel module",
        path: path.to_owned(),
        source,
    })?;
    let key = b"\0depends=";
    let Some(at) = bytes.windows(key.len()).position(|w| w == key) else {
        return Ok(Vec::new());
    };
    let rest = &bytes[at + key.len()..];
    let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    Ok(String::from_utf8_lossy(&rest[..end])
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(normalise)
        .collect())
}
