//! Helpers for end-to-end tests that run the `stele` binary as a user would.

pub mod mock_model;
pub mod postgres;
pub mod siem;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of the `stele` binary built alongside the tests and examples (`target/<profile>/stele`).
pub fn stele_bin() -> PathBuf {
    let mut dir = std::env::current_exe().unwrap_or_default();
    dir.pop();
    if dir.ends_with("deps") || dir.ends_with("examples") {
        dir.pop();
    }
    dir.join("stele")
}

/// A scratch state directory and a way to run `stele` in it.
#[derive(Debug)]
pub struct Stele {
    /// The state directory (`STELE_STATE_DIR`).
    pub state: PathBuf,
}

impl Stele {
    /// Use `state` as the state directory.
    pub fn new(state: &Path) -> Self {
        Self {
            state: state.to_path_buf(),
        }
    }

    /// Run `stele ARGS…` and collect its output.
    pub fn run(&self, args: &[&str]) -> std::io::Result<Output> {
        self.run_env(args, &[])
    }

    /// Run `stele ARGS…` with extra environment variables.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> std::io::Result<Output> {
        let bin = stele_bin();
        if !bin.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "{} is missing: build it with `cargo build -p stele-cli`",
                    bin.display()
                ),
            ));
        }
        Command::new(bin)
            .args(args)
            .env("STELE_STATE_DIR", &self.state)
            // The tool image scripts/setup-vm built (the process sandbox's
            // root): a private state directory has none of its own.
            .env("STELE_VM_IMAGES", vm_images())
            .env("USER", "alice")
            .envs(env.iter().copied())
            .output()
    }
}

/// The image store `scripts/setup-vm` filled: `$STELE_VM_IMAGES`, else the
/// runner's state directory's `vm/images` (as `stele` resolves it).
pub fn vm_images() -> PathBuf {
    if let Some(p) = std::env::var_os("STELE_VM_IMAGES").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let state = if let Some(p) = std::env::var_os("STELE_STATE_DIR").filter(|p| !p.is_empty()) {
        PathBuf::from(p)
    } else if let Some(p) = std::env::var_os("XDG_STATE_HOME").filter(|p| !p.is_empty()) {
        PathBuf::from(p).join("stele")
    } else {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".local/state/stele")
    };
    state.join("vm/images")
}

/// True when this machine can run the process sandbox (root, user namespaces,
/// /dev/fuse); tests that need it print a loud SKIPPED line otherwise.
pub fn sandbox_available(test: &str) -> bool {
    let ok = Path::new("/dev/fuse").exists() && Path::new("/proc/self/ns/user").exists();
    if !ok {
        eprintln!("SKIPPED {test}: needs /dev/fuse and user namespaces");
    }
    ok
}

/// Check a session's log: every intent has exactly one result, after it.
/// Returns the leaves (as JSON) for further assertions.
pub fn leaves_json(s: &Stele, db: &Path) -> Result<Vec<serde_json::Value>, String> {
    let o = s
        .run(&[
            "audit",
            "tail",
            "-n",
            "100000",
            "--json",
            "--db",
            db.to_str().unwrap_or_default(),
        ])
        .map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| e.to_string()))
        .collect()
}

/// Every intent of `session` is closed by exactly one result that comes after it,
/// and every result of `session` names an intent that comes before it.
pub fn intents_closed_once(leaves: &[serde_json::Value], session: &str) -> Result<usize, String> {
    let intents = [
        "model.request",
        "tool.intent",
        "file.open",
        "exec.start",
        "net.connect",
        "mcp.call",
    ];
    let in_session = |l: &&serde_json::Value| l["session"]["id"].as_str() == Some(session);
    let mut n = 0;
    for i in leaves
        .iter()
        .filter(in_session)
        .filter(|l| intents.contains(&l["kind"].as_str().unwrap_or("")))
    {
        let seq = i["seq"].as_u64().unwrap_or(u64::MAX);
        let closing: Vec<&serde_json::Value> = leaves
            .iter()
            .filter(|l| l["refs"]["intent_seq"].as_u64() == Some(seq))
            .collect();
        if closing.len() != 1 {
            return Err(format!(
                "intent {seq} ({}) has {} results",
                i["kind"],
                closing.len()
            ));
        }
        if closing[0]["seq"].as_u64().unwrap_or(0) <= seq {
            return Err(format!("the result of intent {seq} comes before it"));
        }
        n += 1;
    }
    for r in leaves.iter().filter(in_session) {
        let Some(target) = r["refs"]["intent_seq"].as_u64() else {
            continue;
        };
        let seq = r["seq"].as_u64().unwrap_or(0);
        let intent = leaves.iter().find(|l| l["seq"].as_u64() == Some(target));
        match intent {
            Some(i) if intents.contains(&i["kind"].as_str().unwrap_or("")) && target < seq => {}
            Some(i) => {
                return Err(format!(
                    "result {seq} ({}) points at {target} ({}), not an earlier intent",
                    r["kind"], i["kind"]
                ))
            }
            None => {
                return Err(format!(
                    "result {seq} ({}) points at {target}, which is not in the log",
                    r["kind"]
                ))
            }
        }
    }
    Ok(n)
}

/// Make `p` (recursively) readable and writable by the sandbox's user:
/// sandboxed processes run as another uid than the test.
pub fn share(p: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let m = std::fs::metadata(p)?;
    let mode = if m.is_dir() { 0o777 } else { 0o666 };
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
    if m.is_dir() {
        for e in std::fs::read_dir(p)? {
            share(&e?.path())?;
        }
    }
    Ok(())
}

/// A `Command` for `program` with a clean environment: `PATH`, `HOME` set
/// to `home`, `USER=alice` and `STELE_VM_IMAGES` (the set-up's tool image),
/// nothing else of the caller's (no `XDG_*` or other
/// `STELE_*` leaks in), stdin empty. For tests of where stele keeps and
/// looks for its files.
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>, home: &Path) -> Command {
    let mut c = Command::new(program);
    // The image store is read before the environment is cleared: the tool
    // image (the process sandbox's root) is set-up output, not user state.
    let images = vm_images();
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("STELE_VM_IMAGES", images)
        .env("USER", "alice")
        .stdin(std::process::Stdio::null());
    c
}

/// One sample of each class of character a terminal acts on or hides
/// (class name, sample), for tests that feed them to stele.
pub const HOSTILE: &[(&str, &str)] = &[
    ("ESC sequence", "\x1b[2J\x1b[H"),
    ("OSC title", "\x1b]0;pwned\x07"),
    ("C0 backspace", "\x08\x08"),
    ("carriage return", "\rFORGED"),
    ("line feed", "\n  99999  FORGED"),
    ("C1 CSI", "\u{9b}31m"),
    ("DEL", "\u{7f}"),
    ("bidi override", "\u{202e}gpj.exe"),
    ("bidi isolate", "\u{2066}x\u{2069}"),
    ("zero-width", "\u{200b}\u{200d}\u{feff}"),
    ("line separator", "\u{2028}"),
];

/// Every raw character in `out` that a terminal would act on or hide: C0
/// controls but the line feed, DEL, C1 controls, bidirectional controls,
/// zero-width characters, line and paragraph separators, and bytes that
/// are not UTF-8. Written independently of stele's own escaping, so that
/// a class stele forgets is caught. Empty when `out` is safe to show.
pub fn terminal_hazards(out: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for chunk in out.utf8_chunks() {
        for c in chunk.valid().chars() {
            let bad = match c {
                '\n' => false,
                '\0'..='\x1f' | '\x7f'..='\u{9f}' => true,
                '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' => true,
                '\u{2060}'..='\u{2069}' | '\u{feff}' | '\u{00ad}' => true,
                _ => false,
            };
            if bad {
                found.push(format!("U+{:04X}", c as u32));
            }
        }
        for b in chunk.invalid() {
            found.push(format!("byte 0x{b:02x}"));
        }
    }
    found
}

/// Check `value` against the checked-in schema docs/json/`name`.schema.json
/// (generated from the types stele prints); the error lists every
/// violation with its path.
pub fn check_json_shape(name: &str, value: &serde_json::Value) -> Result<(), String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/json")
        .join(format!("{name}.schema.json"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let schema: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let validator = jsonschema::validator_for(&schema).map_err(|e| format!("{name}: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{name}: {}\n{value}", errors.join("; ")))
    }
}
/// How the policy templates pin Anthropic models to Anthropic's own API (`policies/*`).
pub const REAL_MODEL_ENDPOINT: &str =
    r#"resource.scheme == "https" && resource.host == "api.anthropic.com" && resource.port == 443"#;

/// The same pin for the mock model server on this machine (any port).
pub const MOCK_MODEL_ENDPOINT: &str =
    r#"resource.scheme == "http" && resource.host == "127.0.0.1""#;

/// Copy the policy template `policies/NAME` to `dst` (its tests left out), with the model
/// endpoint pin moved from Anthropic's API to the mock on this machine: the templates never
/// allow a local server, tests' own bundles do.
pub fn template_for_mock(name: &str, dst: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../policies")
        .join(name);
    copy_tree(&src, dst);
    let _ = std::fs::remove_dir_all(dst.join("tests"));
    let mut pinned = 0;
    for p in cedar_files(dst) {
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        if text.contains(REAL_MODEL_ENDPOINT) {
            pinned += 1;
            let _ = std::fs::write(&p, text.replace(REAL_MODEL_ENDPOINT, MOCK_MODEL_ENDPOINT));
        }
    }
    assert!(
        pinned > 0,
        "policies/{name} no longer pins the model endpoint as `{REAL_MODEL_ENDPOINT}`"
    );
    dst.to_path_buf()
}

/// A per-process copy of `policies/NAME` for the mock ([`template_for_mock`]), made once.
pub fn mock_template(name: &str) -> PathBuf {
    static MADE: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut made = MADE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, p)) = made.iter().find(|(n, _)| n == name) {
        return p.clone();
    }
    let mut dir = stele_bin();
    dir.pop();
    let dst = dir
        .join("test-bundles")
        .join(std::process::id().to_string())
        .join(name);
    let _ = std::fs::remove_dir_all(&dst);
    let p = template_for_mock(name, &dst);
    made.push((name.to_string(), p.clone()));
    p
}

fn copy_tree(from: &Path, to: &Path) {
    let _ = std::fs::create_dir_all(to);
    for e in std::fs::read_dir(from).into_iter().flatten().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else {
            let _ = std::fs::copy(&src, &dst);
        }
    }
}

/// The `.cedar` files under `dir`, at any depth.
fn cedar_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(cedar_files(&p));
        } else if p.extension().is_some_and(|x| x == "cedar") {
            out.push(p);
        }
    }
    out
}
