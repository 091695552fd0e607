//! The tool image's toolbox, in both backends: one command per tool family
//! runs in the process sandbox (on the image's root tree) and in the
//! micro-VM (on the ext4 made from it), and the process backend sees
//! nothing of the host's system directories. Needs the image
//! `scripts/setup-vm` builds; without it these tests fail, never skip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod process_support;

use std::sync::{Arc, OnceLock};

use process_support::{image_store, mediated, out, sh, workspace, Recorder, Rule};
use stele_sandbox::exec::{ExecOutcome, ExecRequest, ExitStatus, Limits, Sandbox};
use stele_sandbox::process::{ProcessSandbox, ProcessSandboxConfig, SystemRoot};
use stele_sandbox::vm::{VmSandbox, VmSandboxConfig};

/// A tool family: the script, and what its output must contain.
struct Family {
    script: &'static str,
    expect: &'static [&'static str],
}

/// reportlab writes a PDF; pdftotext and pypdf read it back.
const PDF: Family = Family {
    script: r#"set -e; cd /tmp
python3 - <<'PY'
from reportlab.pdfgen import canvas
c = canvas.Canvas("r.pdf"); c.drawString(72, 720, "Invoice total 1234.56 EUR"); c.save()
PY
pdftotext r.pdf - | tr -s ' \n' ' '; echo
python3 -c 'import pypdf; print("pypdf:", pypdf.PdfReader("r.pdf").pages[0].extract_text())'
pdfinfo r.pdf | grep -c '^Pages: *1'"#,
    expect: &[
        "Invoice total 1234.56 EUR",
        "pypdf: Invoice total 1234.56 EUR",
    ],
};

/// A page rendered to an image (pdftoppm, Pillow) is read back by tesseract.
const OCR: Family = Family {
    script: r#"set -e; cd /tmp
python3 - <<'PY'
from reportlab.pdfgen import canvas
c = canvas.Canvas("s.pdf"); c.setFont("Helvetica", 28); c.drawString(72, 700, "TOTAL 4217.50"); c.save()
PY
pdftoppm -r 150 -gray -png -singlefile s.pdf s
python3 -c 'from PIL import Image; im = Image.open("s.png"); print("pil:", im.size[0] > 1000)'
tesseract s.png - 2>/dev/null"#,
    expect: &["pil: True", "TOTAL 4217.50"],
};

/// openpyxl and python-docx write files and read them back.
const OFFICE: Family = Family {
    script: r#"set -e; cd /tmp
python3 - <<'PY'
import openpyxl, docx
wb = openpyxl.Workbook(); ws = wb.active; ws.title = "acme"
ws.append(["item", "amount"]); ws.append(["a", 2.5]); ws.append(["b", 4]); ws["B4"] = "=SUM(B2:B3)"
wb.save("t.xlsx")
r = openpyxl.load_workbook("t.xlsx")["acme"]
print("xlsx:", r["B2"].value + r["B3"].value, r["B4"].value)
d = docx.Document(); d.add_heading("Summary", 1); d.add_paragraph("Client acme owes 6.5"); d.save("t.docx")
print("docx:", [p.text for p in docx.Document("t.docx").paragraphs][1])
PY"#,
    expect: &["xlsx: 6.5 =SUM(B2:B3)", "docx: Client acme owes 6.5"],
};

/// pandas groups and sums.
const PANDAS: Family = Family {
    script: r#"python3 -c 'import pandas as pd; df = pd.DataFrame({"c": ["x", "y", "x"], "v": [1.5, 2, 3]}); print("pandas:", df.groupby("c")["v"].sum().to_dict())'"#,
    expect: &["pandas: {'x': 4.5, 'y': 2.0}"],
};

/// node runs JavaScript.
const NODE: Family = Family {
    script: r#"node -e 'console.log("node:", [1, 2, 3].reduce((a, b) => a + b), process.versions.node.split(".")[0] >= 18)'"#,
    expect: &["node: 6 true"],
};

/// jq, sqlite3 and file (and the UTF-8 locale they run under).
const CLI: Family = Family {
    script: r#"set -e; cd /tmp
echo '{"rows":[{"n":2},{"n":5}]}' | jq -c '[.rows[].n] | add' | sed 's/^/jq: /'
sqlite3 :memory: 'create table t(v); insert into t values (3),(4); select "sqlite: " || sum(v) from t;'
printf '%%PDF-1.4\n' > f.pdf; file -b f.pdf | sed 's/^/file: /'
echo "locale: $LANG $(printf 'é' | wc -m)""#,
    expect: &[
        "jq: 7",
        "sqlite: 7",
        "file: PDF document",
        "locale: C.UTF-8 1",
    ],
};

/// bash (its own features, not sh's) and coreutils.
const SHELL: Family = Family {
    script: r#"bash -c 'declare -A m=([a]=1 [b]=2); echo "bash: ${BASH_VERSINFO[0]} $(( m[a] + m[b] ))"'
printf 'b\na\nc\n' | sort | paste -sd' ' | sed 's/^/coreutils: /'
printf abc | sha256sum | cut -c1-16 | sed 's/^/sha256: /'
date -u -d @0 +%Y | sed 's/^/epoch: /'
printf 'x%.0s' $(seq 1 1000) > /tmp/k; stat -c 'stat: %s' /tmp/k"#,
    expect: &[
        "bash: 5 3",
        "coreutils: a b c",
        "sha256: ba7816bf8f01cfea",
        "epoch: 1970",
        "stat: 1000",
    ],
};

/// python3's venv (where installed packages go: never the image).
const VENV: Family = Family {
    script: r#"set -e; python3 -m venv --without-pip /tmp/e
/tmp/e/bin/python -c 'import sys; print("venv:", sys.prefix != sys.base_prefix, sys.prefix)'
python3 -c 'import ensurepip; print("ensurepip:", ensurepip.version().split(".")[0].isdigit())'"#,
    expect: &["venv: True /tmp/e", "ensurepip: True"],
};

fn check(backend: &str, family: &str, o: &ExecOutcome, f: &Family) {
    let stdout = String::from_utf8_lossy(&o.stdout.bytes);
    let stderr = String::from_utf8_lossy(&o.stderr.bytes);
    assert_eq!(
        o.status,
        ExitStatus::Exit(0),
        "{backend} {family}: {stdout}\n{stderr}"
    );
    for e in f.expect {
        assert!(
            stdout.contains(e),
            "{backend} {family}: {e:?} not in\n{stdout}\n{stderr}"
        );
    }
}

fn limits() -> Limits {
    Limits {
        wall_time: std::time::Duration::from_secs(120),
        ..Limits::default()
    }
}

// ---- process backend ----

struct Proc {
    sandbox: ProcessSandbox,
    _ws: tempfile::TempDir,
}
fn process() -> &'static Proc {
    static P: OnceLock<Proc> = OnceLock::new();
    P.get_or_init(|| {
        let ws = workspace();
        let sandbox = mediated(ws.path(), Recorder::new(Rule::AllowFiles));
        Proc { sandbox, _ws: ws }
    })
}

fn run_process(f: &Family) -> ExecOutcome {
    let mut req = ExecRequest::new("t", vec!["/bin/sh".into(), "-c".into(), f.script.into()]);
    req.limits = limits();
    process().sandbox.exec(req).unwrap()
}

// ---- micro-VM backend ----

#[derive(Debug, Default)]
struct AllowAll;
impl stele_sandbox::Mediator for AllowAll {
    fn file_access(&self, _: &stele_sandbox::FileRequest) -> stele_sandbox::Verdict {
        stele_sandbox::Verdict::Allow(stele_sandbox::Ticket(1))
    }
    fn file_closed(&self, _: &stele_sandbox::FileCloseReport) {}
    fn net_connect(&self, _: &stele_sandbox::NetRequest) -> stele_sandbox::NetVerdict {
        stele_sandbox::NetVerdict::Deny("no network in this test".into())
    }
    fn net_closed(&self, _: &stele_sandbox::NetCloseReport) {}
}

fn vm() -> &'static VmSandbox {
    static VM: OnceLock<VmSandbox> = OnceLock::new();
    VM.get_or_init(|| {
        let image = image_store()
            .current()
            .expect("the tool image must be built by scripts/setup-vm (stele vm image build)");
        let ws = std::env::temp_dir().join(format!("stele-toolbox-vm-{}", std::process::id()));
        std::fs::create_dir_all(&ws).unwrap();
        let mut config = VmSandboxConfig::new(
            &ws,
            Arc::new(AllowAll),
            image,
            env!("CARGO_BIN_EXE_stele-guest"),
        );
        // pandas and tesseract need more than the default guest memory.
        config.memory_mib = config.memory_mib.max(1024);
        VmSandbox::new(config).expect("the VM must boot")
    })
}

fn run_vm(f: &Family) -> ExecOutcome {
    let mut req = ExecRequest::new("t", vec!["/bin/sh".into(), "-c".into(), f.script.into()]);
    req.limits = limits();
    vm().exec(req).unwrap()
}

macro_rules! family {
    ($proc_test:ident, $vm_test:ident, $fam:ident) => {
        #[test]
        fn $proc_test() {
            check("process", stringify!($fam), &run_process(&$fam), &$fam);
        }
        #[test]
        fn $vm_test() {
            check("vm", stringify!($fam), &run_vm(&$fam), &$fam);
        }
    };
}

family!(process_pdf_tools, vm_pdf_tools, PDF);
family!(process_ocr_tools, vm_ocr_tools, OCR);
family!(process_office_writers, vm_office_writers, OFFICE);
family!(process_pandas, vm_pandas, PANDAS);
family!(process_node, vm_node, NODE);
family!(process_cli_tools, vm_cli_tools, CLI);
family!(process_shell_tools, vm_shell_tools, SHELL);
family!(process_venv, vm_venv, VENV);

/// A file the host adds to its own `/usr/local/share` (and a tool only the
/// host has) is invisible on the image root, and visible on the host root
/// (so the test can tell the two apart).
#[test]
fn the_process_backend_sees_nothing_of_the_host_root() {
    let marker = std::path::PathBuf::from(format!(
        "/usr/local/share/stele-host-only-{}",
        std::process::id()
    ));
    std::fs::write(&marker, b"host").expect("tests run as root on the CI host");
    struct Rm(std::path::PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _rm = Rm(marker.clone());
    let probe = format!(
        "test -e {m} && echo SEEN || echo absent; ls /usr/local/share | grep -c stele-host-only || true; \
         command -v cargo >/dev/null && echo host-cargo || echo no-cargo; \
         grep -q bookworm /etc/os-release && echo bookworm",
        m = marker.display()
    );
    let on_image = sh(&process().sandbox, &probe);
    assert_eq!(
        out(&on_image),
        "absent\n0\nno-cargo\nbookworm\n",
        "image root: {on_image:?}"
    );

    let ws = workspace();
    let mut cfg = ProcessSandboxConfig::new(ws.path(), Recorder::new(Rule::AllowFiles));
    cfg.root = SystemRoot::Host;
    let host = ProcessSandbox::new(cfg).unwrap();
    let on_host = sh(&host, &format!("test -e {} && echo SEEN", marker.display()));
    assert_eq!(out(&on_host), "SEEN\n", "host root: {on_host:?}");
}

/// The image's tree cannot be written from inside, whatever the path.
#[test]
fn the_image_root_is_read_only_nosuid_nodev() {
    let o = sh(
        &process().sandbox,
        "for p in /usr/bin/x /etc/x /usr/lib/python3/dist-packages/x /bin/x /; do \
           (echo x > $p) 2>/dev/null && echo WROTE $p; done; \
         grep -E ' /(usr|etc) ' /proc/self/mounts | grep -vc 'ro,nosuid,nodev' || true; \
         cat /etc/shadow 2>/dev/null | wc -c",
    );
    assert_eq!(out(&o), "0\n0\n", "{o:?}");
}
