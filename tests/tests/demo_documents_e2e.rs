//! `stele demo`'s document workflow, checked by independent readers on the
//! host (python3-openpyxl, python3-docx, python3-pypdf and poppler's
//! `pdftotext`, installed by scripts/setup-demo — not the tool image's
//! python, which wrote the files): the spreadsheet, the summaries and the
//! cover sheet carry the totals of the amounts the receipts were made with,
//! two receipts have no text layer (OCR was needed), `hr/` was denied and the
//! outbox write approved.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use stele_tests::{sandbox_available, Stele};

/// The receipts `stele demo` makes (runtime/src/cli/demo.rs): file, client,
/// amount in cents, and whether the page is a scan.
const RECEIPTS: [(&str, &str, u64, bool); 6] = [
    ("2026-03-02-acme-coffee.pdf", "Acme", 1840, false),
    ("2026-03-04-acme-taxi.pdf", "Acme", 3200, true),
    ("2026-03-05-globex-hotel.pdf", "Globex", 18900, false),
    ("2026-03-09-globex-lunch.pdf", "Globex", 5470, true),
    ("2026-03-11-initech-train.pdf", "Initech", 9630, false),
    ("2026-03-12-initech-hotel.pdf", "Initech", 14250, false),
];

/// Debian's python3, whose modules scripts/setup-demo installs (not
/// whatever `python3` a developer's PATH finds first).
const PYTHON: &str = "/usr/bin/python3";

fn total(client: &str) -> String {
    let cents: u64 = RECEIPTS.iter().filter(|r| r.1 == client).map(|r| r.2).sum();
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn host(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (scripts/setup-demo installs the readers)"));
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Host python reading the workbook: "sheet|client|receipts|total" lines.
const READ_XLSX: &str = r#"
import sys, openpyxl
wb = openpyxl.load_workbook(sys.argv[1])
for row in wb["Totals"].iter_rows(min_row=2, values_only=True):
    print("totals|%s|%d|%.2f" % row)
for name in wb.sheetnames[1:]:
    rows = list(wb[name].iter_rows(min_row=2, values_only=True))
    items = sum(r[3] for r in rows if r[0] != "Total")
    last = rows[-1]
    print("sheet|%s|%d|%.2f|%.2f" % (name, len(rows) - 1, items, last[3]))
"#;

const READ_DOCX: &str = r#"
import sys, docx
d = docx.Document(sys.argv[1])
print("\n".join(p.text for p in d.paragraphs))
for t in d.tables:
    for r in t.rows:
        print("|".join(c.text for c in r.cells))
"#;

#[test]
fn the_demo_turns_pdf_receipts_into_checked_reports() {
    if !sandbox_available("the_demo_turns_pdf_receipts_into_checked_reports") {
        return;
    }
    demo_reports(Backend::Default);
}

/// `stele demo --backend vm`: the same session in the micro-VM (under TCG
/// here: a few minutes, see docs/setup.md) makes the same reports, checked
/// the same way; `session.start` names the micro-VM and the same image.
#[test]
fn the_vm_demo_makes_the_same_reports() {
    if !sandbox_available("the_vm_demo_makes_the_same_reports") {
        return;
    }
    demo_reports(Backend::Vm);
}

/// Which backend the demo is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// No flag: the process sandbox.
    Default,
    /// `--backend vm`.
    Vm,
}

fn demo_reports(backend: Backend) {
    let d = tempfile::tempdir().unwrap();
    let s = Stele::new(&d.path().join("state"));
    let demo = d.path().join("demo");
    let mut args = vec!["demo", "--dir", demo.to_str().unwrap()];
    if backend == Backend::Vm {
        args.extend(["--backend", "vm"]);
    }
    let started = std::time::Instant::now();
    let o = s.run(&args).unwrap();
    eprintln!(
        "stele demo ({backend:?}): {:.1} s wall",
        started.elapsed().as_secs_f64()
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let ws = demo.join("workspace");
    let reports = ws.join("reports");
    // The demo prints where every artifact is.
    for f in [
        "by-client.xlsx",
        "cover.pdf",
        "summary-acme.docx",
        "summary-globex.docx",
        "summary-initech.docx",
    ] {
        let p = reports.join(f);
        assert!(out.contains(p.to_str().unwrap()), "{f} not printed:\n{out}");
        assert!(p.is_file(), "{f} missing");
    }

    // The receipts are real PDFs; the scans have no text layer.
    for (file, client, _, scan) in RECEIPTS {
        let text = host(
            "pdftotext",
            &[ws.join("receipts").join(file).to_str().unwrap(), "-"],
        );
        if scan {
            assert!(text.trim().is_empty(), "{file} has text: {text}");
        } else {
            assert!(
                text.contains(&format!("Client: {client}")),
                "{file}: {text}"
            );
        }
    }

    let xlsx = host(
        PYTHON,
        &[
            "-c",
            READ_XLSX,
            reports.join("by-client.xlsx").to_str().unwrap(),
        ],
    );
    for client in ["Acme", "Globex", "Initech"] {
        let n = RECEIPTS.iter().filter(|r| r.1 == client).count();
        let t = total(client);
        assert!(
            xlsx.contains(&format!("totals|{client}|{n}|{t}")),
            "{client}: {xlsx}"
        );
        assert!(
            xlsx.contains(&format!("sheet|{client}|{n}|{t}|{t}")),
            "{client}: {xlsx}"
        );
        let docx = host(
            PYTHON,
            &[
                "-c",
                READ_DOCX,
                reports
                    .join(format!("summary-{}.docx", client.to_lowercase()))
                    .to_str()
                    .unwrap(),
            ],
        );
        assert!(
            docx.contains(&format!("Total: {t} EUR")),
            "{client}: {docx}"
        );
    }
    let cover = host(
        "pdftotext",
        &[reports.join("cover.pdf").to_str().unwrap(), "-"],
    );
    for client in ["Acme", "Globex", "Initech"] {
        assert!(
            cover.contains(&format!("{client}: 2 receipts, {} EUR", total(client))),
            "{cover}"
        );
    }
    // The independent reader agrees with pypdf too.
    let pypdf = host(
        PYTHON,
        &[
            "-c",
            "import sys, pypdf; print(pypdf.PdfReader(sys.argv[1]).pages[0].extract_text())",
            reports.join("cover.pdf").to_str().unwrap(),
        ],
    );
    assert!(pypdf.contains(&total("Globex")), "{pypdf}");

    // hr/ was denied, the outbox write approved and made; the log says so.
    assert!(ws.join("outbox/acme-summary.txt").is_file());
    let state = demo.join("state");
    let o = s
        .run(&[
            "audit",
            "tail",
            "-n",
            "1000",
            "--json",
            "--db",
            state.join("audit.db").to_str().unwrap(),
            "--key",
            state.join("log.key").to_str().unwrap(),
        ])
        .unwrap();
    let leaves: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        leaves.iter().any(|l| l["decision"]["effect"] == "deny"
            && l.to_string().contains("hr/salaries.csv")),
        "no denial of hr/salaries.csv"
    );
    assert!(leaves.iter().any(|l| l["kind"] == "approval.grant"));
    let start = leaves
        .iter()
        .find(|l| l["kind"] == "session.start")
        .unwrap();
    assert_eq!(start["data"]["sandbox_root"]["root"], "image", "{start}");
    let digest = stele_sandbox::vm::ImageStore::at(stele_tests::vm_images())
        .current()
        .unwrap()
        .manifest
        .digest;
    assert_eq!(
        start["data"]["sandbox_root"]["image_digest"],
        digest.as_str(),
        "{start}"
    );
    let (recorded, printed) = match backend {
        Backend::Default => ("process", "backend:     process"),
        Backend::Vm => ("microvm", "backend:     microvm"),
    };
    assert_eq!(start["data"]["sandbox_backend"], recorded, "{start}");
    assert!(out.contains(printed), "{out}");
    if backend == Backend::Vm {
        assert_eq!(start["data"]["vm_image_digest"], digest.as_str(), "{start}");
        assert!(start["data"].get("sandbox_fallback").is_none(), "{start}");
    }
    assert!(out.contains("verified"), "{out}");
}

#[test]
fn the_receipt_table_matches_the_demo() {
    // The demo's own table, read from its source: the test's ground truth
    // must be the amounts the receipts are generated with.
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/src/cli/demo.rs"),
    )
    .unwrap();
    for (file, client, cents, scan) in RECEIPTS {
        let amount = format!("\"{}.{:02}\"", cents / 100, cents % 100);
        let at = src
            .find(&format!("\"{file}\""))
            .unwrap_or_else(|| panic!("{file} not in demo.rs"));
        // The tuple, however rustfmt lays it out.
        let line = &src[at..at + src[at..].find(')').unwrap()];
        assert!(
            line.contains(&format!("\"{client}\"")) && line.contains(&amount),
            "{line}"
        );
        assert_eq!(line.contains("Page::Scan"), scan, "{line}");
    }
}
