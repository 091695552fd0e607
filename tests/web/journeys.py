"""The web app's journeys in a real browser (Debian's chromium, driven by
Playwright for Python). Run by tests/tests/web_e2e.rs against a real
`stele serve` with a scripted model; one journey per run:

    python journeys.py approval|denial|xss|other_team|csp

Environment: STELE_WEB_BASE (the server's URL), STELE_WEB_PASSWORD (every
account's password), STELE_WEB_SHOTS (a folder for screenshots, optional).
A failed check raises (non-zero exit, the traceback names it); on success
the last line of stdout is a JSON object of facts for the Rust side to
check against the log.
"""

import json
import os
import sys
import time

from playwright.sync_api import expect, sync_playwright

BASE = os.environ["STELE_WEB_BASE"].rstrip("/")
PASSWORD = os.environ["STELE_WEB_PASSWORD"]
SHOTS = os.environ.get("STELE_WEB_SHOTS", "")
CHROMIUM = "/usr/bin/chromium"
XSS = "<img src=x onerror=alert(1)>"
LONG = 60_000  # ms: a session runs in a real sandbox on a busy machine


class Page:
    """A browser context and its page, recording dialogs and page errors."""

    def __init__(self, browser, width=1100, height=800):
        self.ctx = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.ctx.new_page()
        self.dialogs = []
        self.errors = []
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _dialog(self, d):
        self.dialogs.append(d.message)
        d.dismiss()

    def sign_in(self, user):
        p = self.page
        p.goto(f"{BASE}/#/login")
        p.get_by_label("User name").fill(user)
        p.get_by_label("Password").fill(PASSWORD)
        p.get_by_role("button", name="Sign in").click()
        p.wait_for_url("**/#/sessions")
        expect(p.get_by_test_id("who")).to_contain_text(user)

    def start_task(self, task):
        p = self.page
        p.get_by_label("Task", exact=True).fill(task)
        p.get_by_role("button", name="Start", exact=True).click()
        p.wait_for_url("**/#/session/*", timeout=LONG)
        return p.url.split("#/session/", 1)[1]

    def wait_end(self):
        end = self.page.get_by_test_id("end")
        expect(end).to_be_visible(timeout=LONG)
        expect(self.page.get_by_test_id("stream-state")).to_have_text("Ended")
        return end

    def events(self, session):
        """The session's events from the API (the stream ends with the session)."""
        r = self.ctx.request.get(f"{BASE}/api/v1/sessions/{session}/events?after=0", timeout=LONG)
        assert r.status == 200, r.status
        out = []
        for block in r.text().split("\n\n"):
            n, data = None, ""
            for line in block.splitlines():
                if line.startswith("id:"):
                    n = int(line[3:].strip())
                elif line.startswith("data:"):
                    data += line[5:].lstrip(" ")
            if n is not None:
                out.append((n, json.loads(data)))
        return out

    def rendered_once_each(self, session):
        """Every event of the session is on the page exactly once, in order."""
        events = self.events(session)
        shown = self.page.eval_on_selector_all("[data-n]", "els => els.map(e => Number(e.dataset.n))")
        want = [n for n, _ in events]
        assert want == list(range(1, len(want) + 1)), want
        assert sorted(shown) == want, f"rendered {shown}, the session has {want}"
        return events

    def shot(self, name):
        if SHOTS:
            self.page.screenshot(path=os.path.join(SHOTS, name), full_page=False)

    def clean(self):
        assert not self.dialogs, f"a dialog opened: {self.dialogs}"
        assert not self.errors, f"page errors: {self.errors}"


def launch(p):
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    return p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)


def journey_approval(browser):
    """An analyst's step needs approval; an approver answers it from the inbox."""
    # The approver, at a phone's width, in a browser context of their own,
    # has the inbox open before anything asks: it updates by itself.
    abe = Page(browser, width=390, height=844)
    abe.sign_in("abe")
    q = abe.page
    q.get_by_role("link", name="Approvals").click()
    expect(q.get_by_role("status").first).to_have_text("Nothing waits for your answer.")
    ana = Page(browser)
    ana.sign_in("ana")
    session = ana.start_task("Compute 6*7 with python")
    p = ana.page
    expect(p.get_by_test_id("approval-requested")).to_be_visible(timeout=LONG)
    # The owner may answer her own session's asks: the answer is inline.
    expect(p.locator("[data-testid=timeline] [data-approval]")).to_be_visible(timeout=LONG)
    expect(p.get_by_test_id("stream-state")).to_have_text("Live")
    # The analyst's network drops: what happens meanwhile (the answer, the
    # rest of the run) must appear once she is back, nothing missed or doubled.
    ana.ctx.set_offline(True)
    expect(p.get_by_test_id("stream-state")).to_have_text("Reconnecting…")
    seen_offline = p.eval_on_selector_all("[data-n]", "els => els.length")

    card = q.locator("[data-approval]")
    expect(card).to_have_count(1, timeout=LONG)
    listed = abe.ctx.request.get(f"{BASE}/api/v1/approvals").json()["approvals"]
    assert len(listed) == 1, listed
    a = listed[0]
    assert card.get_attribute("data-approval") == a["approval_id"]
    # Exactly the text the approval entry hashes, character for character.
    assert card.get_by_test_id("shown").text_content() == a["shown"], (
        card.get_by_test_id("shown").text_content(),
        a["shown"],
    )
    assert "python3" in a["shown"], a
    expect(card.get_by_test_id("requester")).to_have_text("ana")
    expect(card.get_by_role("link", name=session)).to_be_visible()
    expect(card.get_by_test_id("deadline")).not_to_be_empty()
    # Readable at phone width: nothing wider than the screen.
    wide = q.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert wide <= 0, f"the inbox is {wide}px wider than a phone's screen"
    abe.shot("web-approvals-phone.png")
    # Keyboard: from the reference field, Tab reaches Approve, focus is
    # visible, Enter answers.
    card.get_by_label("Reference (optional, e.g. a change ticket)").fill("CHG-42")
    card.get_by_label("Reference (optional, e.g. a change ticket)").focus()
    q.keyboard.press("Tab")
    approve = card.get_by_role("button", name="Approve")
    expect(approve).to_be_focused()
    outline = approve.evaluate("b => getComputedStyle(b).outlineStyle")
    assert outline == "solid", f"no visible focus on Approve: outline {outline}"
    q.keyboard.press("Enter")
    expect(card.get_by_role("status")).to_have_text("Approved by abe.", timeout=LONG)

    # The session ends while the analyst is offline; her page has not moved.
    deadline = time.time() + LONG / 1000
    while ana.ctx.request.get(f"{BASE}/api/v1/sessions/{session}").json()["state"] != "ended":
        assert time.time() < deadline, "the session did not end after the approval"
        time.sleep(0.1)
    assert p.eval_on_selector_all("[data-n]", "els => els.length") == seen_offline
    assert p.get_by_test_id("granted").count() == 0
    ana.ctx.set_offline(False)
    # Back online, the page shows the approval and the end.
    expect(p.get_by_test_id("granted")).to_contain_text("Approved by abe", timeout=LONG)
    end = ana.wait_end()
    expect(end).to_contain_text("answered")
    expect(p.locator("[data-testid=timeline] [data-approval] button").first).to_be_disabled()
    ana.rendered_once_each(session)
    ana.shot("web-session.png")
    p.get_by_role("link", name="Sessions").click()
    expect(p.locator(f"tr[data-session='{session}']")).to_contain_text("ended", timeout=LONG)
    ana.shot("web-sessions.png")
    ana.clean()
    abe.clean()
    return {"session": session, "approval": a["approval_id"], "shown_sha256": a["shown_sha256"]}


def journey_denial(browser):
    """A refused step is explained with its rule and layer."""
    ana = Page(browser)
    ana.sign_in("ana")
    session = ana.start_task("Read the payroll")
    ana.wait_end()
    events = ana.rendered_once_each(session)
    denies = [e for _, e in events if e["event"] == "decision" and e["decision"] == "deny"]
    assert len(denies) == 1, events
    d = denies[0]
    assert d["policies"] == ["test.no-payroll"], d
    box = ana.page.get_by_test_id("denial")
    expect(box).to_have_count(1)
    expect(box.get_by_test_id("rule")).to_have_text(", ".join(d["policies"]))
    expect(box).to_contain_text(f"(layer {d['layer']})")
    expect(box).to_contain_text("Refused")
    expect(box).to_contain_text(d["reason"])
    ana.shot("web-denial.png")
    ana.clean()
    return {"session": session, "rule": d["policies"][0], "layer": d["layer"]}


def journey_xss(browser):
    """Markup and terminal escapes from the model and a file name stay text."""
    ana = Page(browser)
    ana.sign_in("ana")
    session = ana.start_task(f"Name a report {XSS}")
    p = ana.page
    ana.wait_end()
    time.sleep(0.5)  # an onerror handler would have fired by now
    texts = p.get_by_test_id("model-text").all_text_contents()
    assert any(XSS in t for t in texts), texts
    # The terminal escape is shown as the characters \x1b, not acted on.
    assert any("\\x1b[31m" in t for t in texts), texts
    assert not any("\x1b" in t for t in texts), texts
    args = p.locator(".tool pre.args").all_text_contents()
    assert any(f"reports/{XSS}.txt" in a for a in args), args
    expect(p.get_by_test_id("end")).to_contain_text(XSS)
    for where in ("session", "list"):
        assert p.locator("img").count() == 0, f"an img element on the {where} page"
        assert p.locator("script:not([src])").count() == 0, f"an inline script on the {where} page"
        assert p.evaluate("() => window.__xss === undefined")
        if where == "session":
            p.get_by_role("link", name="Sessions").click()
            expect(p.locator(f"tr[data-session='{session}']")).to_contain_text("ended")
            time.sleep(0.5)
    ana.clean()
    return {"session": session}


def journey_other_team(browser):
    """Someone of another team sees nothing of a finance session."""
    ana = Page(browser)
    ana.sign_in("ana")
    session = ana.start_task("Say hello")
    ana.wait_end()
    olga = Page(browser)
    olga.sign_in("olga")
    q = olga.page
    expect(q.get_by_test_id("no-sessions")).to_be_visible()
    assert session not in q.content()
    q.goto(f"{BASE}/#/session/{session}")
    expect(q.get_by_test_id("refused-view")).to_contain_text("You may not see this session")
    assert q.get_by_test_id("model-text").count() == 0
    for path in (f"/api/v1/sessions/{session}", f"/api/v1/sessions/{session}/events"):
        r = olga.ctx.request.get(BASE + path)
        assert r.status == 403, (path, r.status)
    assert olga.ctx.request.get(f"{BASE}/api/v1/approvals").json() == {"approvals": []}
    olga.shot("web-other-team.png")
    ana.clean()
    olga.clean()
    return {"session": session}


CSP_NEEDS = [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'self'",
]


def journey_csp(browser):
    """The headers are there and an injected inline script does not run."""
    v = Page(browser)
    r = v.page.goto(f"{BASE}/#/login")
    for resp in (r, v.ctx.request.get(f"{BASE}/api/v1/sessions")):
        h = resp.headers
        csp = h.get("content-security-policy", "")
        for need in CSP_NEEDS:
            assert need in csp, f"{resp.url}: CSP lacks {need!r}: {csp!r}"
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp
        assert h.get("referrer-policy") == "no-referrer", h
        assert h.get("x-content-type-options") == "nosniff", h
        assert h.get("cross-origin-opener-policy") == "same-origin", h
    expect(v.page.get_by_label("User name")).to_be_visible()
    v.shot("web-login.png")
    ran = v.page.evaluate(
        """async () => {
        const violations = [];
        document.addEventListener('securitypolicyviolation', (e) => violations.push(e.violatedDirective));
        const s = document.createElement('script');
        s.textContent = 'window.__inline_ran = true';
        document.body.append(s);
        const b = document.createElement('button');
        b.setAttribute('onclick', 'window.__handler_ran = true');
        document.body.append(b);
        b.click();
        // Code from a string, run by the page itself later (a direct eval
        // here would run in the test driver's context, which the CSP exempts).
        try { setTimeout('window.__string_ran = true', 0); } catch (e) {}
        await new Promise((r) => setTimeout(r, 300));
        return { inline: window.__inline_ran === true, handler: window.__handler_ran === true,
                 eval: window.__string_ran === true, violations };
    }"""
    )
    assert not ran["inline"], f"an injected inline script ran: {ran}"
    assert not ran["handler"], f"an injected inline handler ran: {ran}"
    assert not ran["eval"], f"eval ran: {ran}"
    assert any(d.startswith("script-src") for d in ran["violations"]), ran
    # And the app itself works under that policy.
    v.sign_in("ana")
    v.clean()
    return {"violations": ran["violations"]}


JOURNEYS = {
    "approval": journey_approval,
    "denial": journey_denial,
    "xss": journey_xss,
    "other_team": journey_other_team,
    "csp": journey_csp,
}


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    if name not in JOURNEYS:
        sys.exit(f"journeys.py: no journey {name!r} (one of {', '.join(JOURNEYS)})")
    with sync_playwright() as p:
        browser = launch(p)
        try:
            facts = JOURNEYS[name](browser)
        finally:
            browser.close()
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
