//! Text from the log reaches a reader's browser or Markdown viewer only
//! quoted: whatever a path, argv, task or principal holds, the HTML report
//! gets no element from it and the Markdown report no line of its own.

use super::*;

/// Each hostile text a sandboxed program, the model or a user could put in
/// the log: markup, attribute breaks, backtick runs, forged lines.
const HOSTILE: &[&str] = &[
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "'><svg onload=alert(1)>",
    "a`b``c```d",
    "ok\n# Forged heading\n- forged line",
    "ok\r\n```\n<b>out of the fence</b>",
];

fn account(text: &str) -> Account {
    let session = SessionAccount {
        id: text.into(),
        principal: text.into(),
        teams: vec![text.into()],
        started: text.into(),
        end_detail: Some(text.into()),
        task: PayloadText::Present(text.into()),
        files: vec![FileAccess {
            path: text.into(),
            access: "write".into(),
            rule: Rule {
                reason: Some(text.into()),
                ..Rule::default()
            },
            ..FileAccess::default()
        }],
        commands: vec![CommandRun {
            argv: vec![text.into(), text.into()],
            ..CommandRun::default()
        }],
        ..SessionAccount::default()
    };
    Account {
        origin: text.into(),
        selection: text.into(),
        sessions: vec![session],
        ..Account::default()
    }
}

#[test]
fn html_gets_no_element_from_the_log() {
    for text in HOSTILE {
        let page = html::render(&account(text));
        let lower = page.to_lowercase();
        for tag in ["<script", "<img", "<svg", "<b>"] {
            assert!(!lower.contains(tag), "{tag} from {text:?} reached the page");
        }
        assert!(page.contains(&html::esc(text.lines().next().unwrap_or(""))));
    }
}

#[test]
fn markdown_gets_no_line_from_the_log() {
    for text in HOSTILE {
        let doc = markdown::render(&account(text));
        // Outside the report's own fenced blocks, no line comes from the
        // text; inside, a block ends only at its own fence, which is longer
        // than any backtick run the text holds.
        let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
        let mut fence: Option<String> = None;
        for line in doc.lines() {
            match &fence {
                Some(f) if line == f => fence = None,
                Some(_) => {}
                None => {
                    if line.starts_with("```") && line.trim_start_matches('`') == "text" {
                        let f: String = line.chars().take_while(|c| *c == '`').collect();
                        assert!(f.len() > longest, "fence {line:?} opens on {text:?}");
                        fence = Some(f);
                    } else {
                        let l = line.trim_start();
                        assert!(
                            !l.starts_with("# Forged") && !l.starts_with("- forged"),
                            "{text:?} forged the line {line:?}"
                        );
                    }
                }
            }
        }
        assert!(fence.is_none(), "a block was left open by {text:?}");
    }
}
