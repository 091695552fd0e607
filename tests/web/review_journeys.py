"""The reviewer's desk in a real browser (Debian's chromium, Playwright for
Python). Run by tests/tests/web_e2e.rs against a real `stele serve` with a
scripted model; one journey per run:

    python review_journeys.py review

Environment: as journeys.py (STELE_WEB_BASE, STELE_WEB_PASSWORD,
STELE_WEB_SHOTS), plus STELE_WEB_OUT: a folder the downloads are saved in
(the Rust side checks them with the verifiers). The last line of stdout is
a JSON object of facts.
"""

import json
import os
import sys

from playwright.sync_api import expect, sync_playwright

from journeys import BASE, LONG, XSS, Page, launch

OUT = os.environ["STELE_WEB_OUT"]


def timeline_api(page, session, **q):
    query = "&".join(f"{k}={v}" for k, v in q.items())
    r = page.ctx.request.get(f"{BASE}/api/v1/audit/sessions/{session}/timeline?{query}", timeout=LONG)
    assert r.status == 200, (r.status, r.text())
    return r.json()


def journey_review(browser):
    """A reviewer filters to denials, reads the timeline, verifies, downloads
    a proof and the export; a reviewer of another team sees nothing."""
    ana = Page(browser)
    ana.sign_in("ana")
    denied = ana.start_task("Read the payroll")
    ana.wait_end()
    ana.page.goto(f"{BASE}/#/sessions")
    clean = ana.start_task("Say hello")
    ana.wait_end()
    ana.clean()

    rex = Page(browser, width=1440, height=1000)
    rex.sign_in("rex")
    p = rex.page
    p.get_by_role("link", name="Review").click()
    rows = p.locator("[data-testid=review-sessions] tbody tr")
    expect(rows).to_have_count(2, timeout=LONG)
    # Filter to sessions with denials, with the keyboard: the select, then Enter on Apply.
    p.get_by_label("Has denials").select_option("yes")
    p.get_by_label("Has approvals").focus()
    p.keyboard.press("Tab")
    apply = p.get_by_role("button", name="Apply filters")
    expect(apply).to_be_focused()
    p.keyboard.press("Enter")
    expect(rows).to_have_count(1, timeout=LONG)
    row = p.locator(f"tr[data-session='{denied}']")
    expect(row).to_be_visible()
    assert p.locator(f"tr[data-session='{clean}']").count() == 0
    assert int(row.get_by_test_id("denials").text_content()) >= 1
    rex.shot("web-review.png")
    # Back to every session, then only those without denials: the other one.
    p.get_by_label("Has denials").select_option("no")
    apply.click()
    expect(p.locator(f"tr[data-session='{clean}']")).to_be_visible(timeout=LONG)
    expect(rows).to_have_count(1)
    p.get_by_label("Has denials").select_option("yes")
    apply.click()
    expect(rows).to_have_count(1, timeout=LONG)

    # The timeline, from the log.
    row.get_by_role("link", name=denied).click()
    p.wait_for_url(f"**/#/review/{denied}")
    expect(p.get_by_test_id("timeline-state")).to_contain_text("entries: log index", timeout=LONG)
    api = timeline_api(rex, denied, limit=500)
    want = [e["index"] for e in api["entries"]]
    shown = [int(i) for i in p.eval_on_selector_all("[data-testid=log-timeline] tbody tr", "rs => rs.map(r => r.dataset.index)")]
    assert shown == want, (shown, want)
    denial = [e for e in api["entries"] if (e["leaf"].get("decision") or {}).get("effect") == "deny"]
    assert len(denial) == 1, denial
    d = denial[0]
    drow = p.locator(f"tr[data-index='{d['index']}']")
    expect(drow).to_have_class("denied")
    expect(drow.get_by_role("rowheader")).to_have_text(str(d["index"]))
    expect(drow.get_by_test_id("decision-rule")).to_have_text("test.no-payroll")
    expect(drow.get_by_test_id("decision-layer")).to_have_text(d["leaf"]["decision"]["layer"])
    expect(drow).to_contain_text("receipts/payroll.txt")
    # Every kind the session's log holds is on the page.
    kinds = {e["leaf"]["kind"] for e in api["entries"]}
    for k in kinds:
        assert p.locator(f"tr[data-kind='{k}']").count() >= 1, k
    drow.scroll_into_view_if_needed()
    rex.shot("web-review-timeline.png")
    p.evaluate("() => window.scrollTo(0, 0)")

    # A verification, run with the keyboard.
    verify = p.get_by_role("button", name="Run a verification")
    p.locator("[data-testid=log-timeline] tbody tr:last-child a").focus()
    p.keyboard.press("Tab")
    expect(verify).to_be_focused()
    outline = verify.evaluate("b => getComputedStyle(b).outlineStyle")
    assert outline == "solid", f"no visible focus on the verification button: {outline}"
    p.keyboard.press("Enter")
    ok = p.get_by_test_id("verify-ok")
    expect(ok).to_contain_text("Verified", timeout=LONG)
    expect(p.get_by_test_id("checkpoint-size")).to_contain_text("size ")
    expect(p.get_by_test_id("checkpoint-root")).not_to_be_empty()
    expect(p.get_by_test_id("witnesses")).not_to_be_empty()

    # The denial's inclusion proof.
    with p.expect_download(timeout=LONG) as dl:
        drow.get_by_role("link", name=f"Inclusion proof of entry {d['index']}").click()
    proof = os.path.join(OUT, dl.value.suggested_filename)
    dl.value.save_as(proof)
    assert dl.value.suggested_filename == f"entry-{d['index']}.tlog-proof"

    # The session's signed export, with the key and the command shown.
    with p.expect_download(timeout=LONG) as dl:
        p.get_by_role("button", name="Download the signed export").click()
    export = os.path.join(OUT, dl.value.suggested_filename)
    dl.value.save_as(export)
    expect(p.get_by_test_id("export-done")).to_be_visible(timeout=LONG)
    commands = p.get_by_test_id("verify-command").all_text_contents()
    keys = p.get_by_test_id("verifier").all_text_contents()
    assert commands and all(c == commands[0] for c in commands), commands
    assert dl.value.suggested_filename in commands[0], (commands, dl.value.suggested_filename)
    # One page holds this session: no page before or after it (paging is
    # checked over the API and by the 100,000-entry figure, web_bench).
    for name in ("First page", "Previous page", "Next page", "Last page"):
        expect(p.get_by_role("button", name=name)).to_be_disabled()
    # The other session wrote a file named with markup: on the timeline it is characters.
    p.goto(f"{BASE}/#/review/{clean}")
    expect(p.get_by_test_id("timeline-state")).to_contain_text("entries: log index", timeout=LONG)
    expect(p.locator("[data-testid=log-timeline] td.what", has_text=f"reports/{XSS}.txt").first).to_be_visible()
    p.wait_for_timeout(500)  # an onerror handler would have fired by now
    assert p.locator("img").count() == 0, "an img element on the timeline"
    assert p.locator("script:not([src])").count() == 0
    rex.clean()

    # A reviewer of another team sees nothing of it.
    otto = Page(browser)
    otto.sign_in("otto")
    q = otto.page
    q.get_by_role("link", name="Review").click()
    expect(q.get_by_test_id("no-review-sessions")).to_be_visible(timeout=LONG)
    assert denied not in q.content() and clean not in q.content()
    q.goto(f"{BASE}/#/review/{denied}")
    expect(q.get_by_test_id("timeline-problem")).to_be_visible(timeout=LONG)
    assert q.locator("[data-testid=log-timeline] tbody tr").count() == 0
    for path in (
        f"/api/v1/audit/sessions/{denied}/timeline",
        f"/api/v1/audit/sessions/{denied}/verify",
        f"/api/v1/audit/sessions/{denied}/export",
        f"/api/v1/audit/entries/{d['index']}/proof",
    ):
        r = otto.ctx.request.get(BASE + path)
        assert r.status == 403, (path, r.status)
    otto.clean()
    return {
        "session": denied,
        "clean": clean,
        "denial_index": d["index"],
        "proof": proof,
        "export": export,
        "command": commands[0],
        "verifier": keys[0],
    }


JOURNEYS = {"review": journey_review}


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    if name not in JOURNEYS:
        sys.exit(f"review_journeys.py: no journey {name!r} (one of {', '.join(JOURNEYS)})")
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            facts = JOURNEYS[name](browser)
        finally:
            browser.close()
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
