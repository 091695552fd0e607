"""The web app's operations journeys in a real browser (Debian's chromium,
Playwright for Python): files, stop and continue, schedules, the admin page
and OIDC sign-in. Run by tests/tests/web_e2e.rs against a real `stele
serve`; one journey per run:

    python ops_journeys.py files|stop_continue|schedules|admin|oidc

Environment as journeys.py (STELE_WEB_BASE, STELE_WEB_PASSWORD,
STELE_WEB_SHOTS), plus STELE_WEB_HOSTILE (a hostile file name the Rust side
put in the workspace) and STELE_WEB_UPLOAD_LIMIT (the server's
max_upload_bytes) for `files`, and STELE_WEB_OIDC_ACCOUNT for `oidc`. A
failed check raises; on success the last line of stdout is a JSON object of
facts for the Rust side to check against the log.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from journeys import BASE, LONG, XSS, Page, launch  # noqa: E402
from playwright.sync_api import expect, sync_playwright  # noqa: E402


def no_markup_ran(p):
    """No element or script came from data on the page."""
    time.sleep(0.5)  # an onerror handler would have fired by now
    assert p.locator("img").count() == 0, "an img element on the page"
    assert p.locator("script:not([src])").count() == 0, "an inline script on the page"


def journey_files(browser):
    """Browse, upload (several files, one over the limit), run a task that
    writes a report, open it from the session's outputs; hostile names inert."""
    hostile = os.environ["STELE_WEB_HOSTILE"]
    limit = int(os.environ["STELE_WEB_UPLOAD_LIMIT"])
    ana = Page(browser)
    ana.sign_in("ana")
    p = ana.page
    p.get_by_role("link", name="Files").click()
    p.get_by_test_id("workspaces").get_by_role("link", name="books").click()
    files = p.get_by_test_id("files")
    expect(files).to_contain_text("receipts/")
    p.get_by_role("link", name="receipts/").click()
    # The hostile name the workspace holds: shown as characters, escapes made visible.
    row = p.locator("tr[data-entry^='receipts/<img']")
    expect(row).to_have_count(1)
    shown = row.locator("td").first.inner_text()
    assert XSS in shown, shown
    # The right-to-left override is shown as \u202e, not obeyed.
    assert "\\u202e" in shown, shown
    assert "\u202e" not in shown, shown
    # A name with a terminal escape is not listed at all (it cannot be put
    # to policy), and the page says an entry is hidden.
    assert "\x1b" not in p.get_by_test_id("files").inner_text()
    expect(p.get_by_text("1 entries are not shown")).to_be_visible()
    no_markup_ran(p)
    # Its download link carries the name encoded, and gives the exact bytes.
    with p.expect_download() as dl:
        row.get_by_role("link").click()
    got = open(dl.value.path(), "rb").read()
    assert got == b"hostile\n", got
    # Upload into reports/: two files at once, one over the server's limit.
    p.get_by_role("link", name="books").click()
    p.get_by_role("link", name="reports/").click()
    expect(p.get_by_role("heading", name="Upload")).to_be_visible()
    data = b"month,total\nnov,1200\n"
    big = b"x" * (limit + 1)
    p.get_by_label("Files to put in reports").set_input_files(
        [
            {"name": "data.csv", "mimeType": "text/csv", "buffer": data},
            {"name": f"{XSS}.txt", "mimeType": "text/plain", "buffer": b"inert\n"},
            {"name": "too-big.bin", "mimeType": "application/octet-stream", "buffer": big},
        ]
    )
    p.get_by_role("button", name="Upload", exact=True).click()
    ups = p.get_by_test_id("uploads")
    expect(ups.locator("li[data-upload='data.csv']")).to_contain_text("Uploaded", timeout=LONG)
    expect(ups.locator(f"li[data-upload='{XSS}.txt']")).to_contain_text("Uploaded", timeout=LONG)
    refused = ups.locator("li[data-upload='too-big.bin']")
    expect(refused).to_contain_text("is too large to upload", timeout=LONG)
    expect(refused).to_contain_text("Nothing of it was kept")
    limit_words = refused.inner_text()
    assert "The server takes files up to" in limit_words, limit_words
    expect(p.locator("tr[data-entry='reports/data.csv']")).to_have_count(1, timeout=LONG)
    expect(p.locator(f"tr[data-entry='reports/{XSS}.txt']")).to_have_count(1)
    assert p.locator("tr[data-entry='reports/too-big.bin']").count() == 0
    no_markup_ran(p)
    ana.shot("web-files.png")
    # A task that reads the upload and writes a report; its output is linked.
    p.get_by_role("link", name="Sessions").click()
    session = ana.start_task("Summarise reports/data.csv into reports/summary.txt")
    ana.wait_end()
    out = p.get_by_test_id("output-files")
    expect(out.locator("li[data-output='reports/summary.txt']")).to_have_count(1, timeout=LONG)
    with p.expect_download() as dl:
        out.get_by_role("link", name="reports/summary.txt").click()
    report = open(dl.value.path(), "rb").read()
    assert report == b"november total: 1200\n", report
    ana.shot("web-outputs.png")
    ana.clean()
    return {"session": session, "uploaded": ["reports/data.csv", f"reports/{XSS}.txt"], "refused_bytes": len(big)}


def state_of(page, session):
    return page.ctx.request.get(f"{BASE}/api/v1/sessions/{session}").json()["state"]


def journey_stop_continue(browser):
    """Stop a running session; continue it from another device; both pages follow."""
    ana = Page(browser)
    ana.sign_in("ana")
    p = ana.page
    session = ana.start_task("Run the slow step, then finish")
    expect(p.get_by_test_id("session-state")).to_contain_text("Running", timeout=LONG)
    stop = p.get_by_test_id("stop")
    expect(stop).to_be_visible()
    stop.click()
    # It pauses at its next safe point (after the step that runs).
    expect(p.get_by_test_id("session-state")).to_contain_text("Paused", timeout=LONG)
    expect(p.get_by_test_id("end")).to_contain_text("paused", timeout=LONG)
    expect(p.get_by_test_id("continue")).to_be_visible()
    assert p.get_by_test_id("stop").count() == 0
    assert state_of(ana, session) == "paused"
    ana.shot("web-stopped.png")
    # Another device: a browser context of its own, signed in again.
    phone = Page(browser, width=390, height=844)
    phone.sign_in("ana")
    q = phone.page
    q.goto(f"{BASE}/#/session/{session}")
    expect(q.get_by_test_id("session-state")).to_contain_text("Paused", timeout=LONG)
    q.get_by_test_id("continue").click()
    ends = q.get_by_test_id("end")
    expect(ends).to_have_count(2, timeout=LONG)
    expect(ends.nth(1)).to_contain_text("answered", timeout=LONG)
    expect(q.get_by_test_id("session-state")).to_contain_text("Ended", timeout=LONG)
    phone.rendered_once_each(session)
    # The first device saw it continue and end too, every event once.
    expect(p.get_by_test_id("end")).to_have_count(2, timeout=LONG)
    expect(p.get_by_test_id("session-state")).to_contain_text("Ended", timeout=LONG)
    ana.rendered_once_each(session)
    assert p.get_by_test_id("continue").count() == 0
    ana.clean()
    phone.clean()
    return {"session": session}


def journey_schedules(browser):
    """A bad cron is refused next to its field; a schedule runs, is paused and unpaused."""
    ana = Page(browser)
    ana.sign_in("ana")
    p = ana.page
    p.get_by_role("link", name="Schedules").click()
    expect(p.get_by_test_id("no-schedules")).to_be_visible()
    p.get_by_label("When (cron)").fill("61 * * * *")
    p.get_by_label("Time zone").fill("Europe/Paris")
    p.get_by_label("Task", exact=True).fill("Tick")
    p.get_by_role("button", name="Create").click()
    cron_problem = p.locator("[data-field-problem=cron]")
    expect(cron_problem).not_to_be_empty()
    bad_cron = cron_problem.inner_text()
    expect(p.get_by_label("When (cron)")).to_have_attribute("aria-invalid", "true")
    assert p.locator("[data-field-problem=timezone]").inner_text() == ""
    # A bad zone is named as the zone's problem.
    p.get_by_label("When (cron)").fill("* * * * * *")
    p.get_by_label("Time zone").fill("Mars/Olympus_Mons")
    p.get_by_role("button", name="Create").click()
    expect(p.locator("[data-field-problem=timezone]")).not_to_be_empty()
    assert p.locator("[data-field-problem=cron]").inner_text() == ""
    # Every second (6 fields), in Paris; each run holds for a few seconds, so
    # runs due meanwhile are skipped as busy.
    p.get_by_label("Time zone").fill("Europe/Paris")
    p.get_by_label("When a step needs approval").select_option("deny")
    p.get_by_role("button", name="Create").click()
    card = p.locator("[data-schedule]")
    expect(card).to_have_count(1, timeout=LONG)
    sid = card.get_attribute("data-schedule")
    expect(card).to_contain_text("Europe/Paris")
    expect(card).to_contain_text("asks: deny")
    deadline = time.time() + LONG / 1000
    while True:
        runs = ana.ctx.request.get(f"{BASE}/api/v1/schedules/{sid}/runs").json()["runs"]
        outcomes = {r["outcome"] for r in runs}
        if "started" in outcomes and "skipped_busy" in outcomes:
            break
        assert time.time() < deadline, f"no started and skipped run: {runs}"
        time.sleep(0.25)
    card.get_by_role("button", name="Pause").click()
    expect(card.get_by_test_id("paused")).to_contain_text("paused by ana", timeout=LONG)
    card.get_by_role("button", name="Runs").click()
    runs_table = card.get_by_test_id("runs")
    expect(runs_table.locator("tr[data-run-outcome=started]").first).to_be_visible()
    expect(runs_table.locator("tr[data-run-outcome=skipped_busy]").first).to_contain_text("Skipped")
    started = runs_table.locator("tr[data-run-outcome=started]").first
    session = started.get_by_role("link").inner_text()
    ana.shot("web-schedules.png")
    # Paused: nothing more is due.
    n = len(ana.ctx.request.get(f"{BASE}/api/v1/schedules/{sid}/runs").json()["runs"])
    time.sleep(2.5)
    after = ana.ctx.request.get(f"{BASE}/api/v1/schedules/{sid}/runs").json()["runs"]
    assert len(after) == n, f"a paused schedule ran: {after[n:]}"
    card.get_by_role("button", name="Unpause").click()
    expect(card).to_contain_text("next run", timeout=LONG)
    assert card.get_by_test_id("paused").count() == 0
    # Paused again, so nothing runs while the test ends.
    card.get_by_role("button", name="Pause").click()
    expect(card.get_by_test_id("paused")).to_be_visible(timeout=LONG)
    # The run's session link opens its session.
    card.get_by_role("button", name="Runs").click()
    card.get_by_test_id("runs").get_by_role("link", name=session).click()
    expect(p.get_by_role("heading", name=f"Session {session}")).to_be_visible()
    ana.clean()
    return {"schedule": sid, "bad_cron": bad_cron, "session": session, "runs_when_paused": n}


def journey_admin(browser):
    """An admin sees accounts, workspaces, the bundle and health; a member gets a 403 page."""
    ada = Page(browser)
    ada.sign_in("ada")
    p = ada.page
    p.get_by_role("link", name="Admin").click()
    users = p.get_by_test_id("admin-users")
    expect(users).to_contain_text("ana", timeout=LONG)
    for who, role in (("ana", "member"), ("abe", "approver"), ("olga", "member"), ("ada", "admin")):
        row = users.locator("tr", has_text=who).first
        expect(row).to_contain_text(role)
    policy = ada.ctx.request.get(f"{BASE}/api/v1/admin/policy").json()
    expect(p.get_by_test_id("policy-digest")).to_have_text(policy["digest"])
    t = policy["tests"]
    expect(p.get_by_test_id("policy-tests")).to_have_text(f"stele policy test: {t['passed']} passed, {t['failed']} failed")
    for f in t["failures"]:
        expect(p.get_by_test_id("policy-failures")).to_contain_text(f["name"])
    ada.shot("web-admin.png")
    files = p.get_by_test_id("policy-files")
    member_file = files.locator("details[data-file='members.toml']")
    expect(member_file).to_have_count(1)
    member_file.locator("summary").click()
    expect(member_file.locator("pre")).to_contain_text('ana = ["finance"]')
    expect(p.get_by_test_id("admin-workspaces")).to_contain_text("books")
    expect(p.get_by_test_id("admin-health")).to_contain_text("entries")
    health = ada.ctx.request.get(f"{BASE}/api/v1/admin/health").json()
    assert health["ready"] is True, health
    # A member: no Admin link, and the page says the policy refuses it.
    ana = Page(browser)
    ana.sign_in("ana")
    q = ana.page
    assert q.get_by_role("link", name="Admin").count() == 0
    q.goto(f"{BASE}/#/admin")
    refused = q.get_by_test_id("admin-refused")
    expect(refused).to_contain_text("403", timeout=LONG)
    expect(refused).to_contain_text("may not admin")
    assert q.get_by_test_id("admin-users").count() == 0
    for k in ("users", "workspaces", "policy", "health"):
        r = ana.ctx.request.get(f"{BASE}/api/v1/admin/{k}")
        assert r.status == 403, (k, r.status)
    ana.shot("web-admin-refused.png")
    ada.clean()
    ana.clean()
    return {"digest": policy["digest"], "tests": t, "log_entries": health["log_entries"]}


def journey_oidc(browser):
    """Sign in with the identity provider: its form, then the sessions list."""
    account = os.environ["STELE_WEB_OIDC_ACCOUNT"]
    v = Page(browser)
    p = v.page
    p.goto(f"{BASE}/#/login")
    link = p.get_by_test_id("oidc-login")
    expect(link).to_have_text("Sign in with Test IdP")
    v.shot("web-login-oidc.png")
    link.click()
    # The provider's own page.
    p.wait_for_url("**/interaction/**", timeout=LONG)
    p.get_by_label("Account").fill(account)
    p.get_by_role("button", name="Continue").click()
    p.wait_for_url(f"{BASE}/#/sessions", timeout=LONG)
    expect(p.get_by_test_id("who")).to_contain_text(account, timeout=LONG)
    expect(p.get_by_role("heading", name="Sessions", exact=True, level=1)).to_be_visible()
    me = v.ctx.request.get(f"{BASE}/api/v1/me").json()
    assert me["user"] == account and me["method"] == "oidc", me
    # The browser session works for what changes something too (CSRF cookie).
    r = p.evaluate(
        """async () => {
        const c = document.cookie.split(';').map((s) => s.trim()).find((s) => s.startsWith('stele_csrf='));
        const r = await fetch('/api/v1/schedules', {method: 'POST', headers: {'Content-Type': 'application/json',
          'X-CSRF-Token': c ? decodeURIComponent(c.slice(11)) : ''}, body: JSON.stringify({cron: 'nope',
          workspace: 'books', task: 't'})});
        return {status: r.status, body: await r.json()};
    }"""
    )
    assert r["status"] == 400 and r["body"]["detail"].startswith("cron:"), r
    v.clean()
    return {"user": me["user"], "teams": me["teams"]}


JOURNEYS = {
    "files": journey_files,
    "stop_continue": journey_stop_continue,
    "schedules": journey_schedules,
    "admin": journey_admin,
    "oidc": journey_oidc,
}


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    if name not in JOURNEYS:
        sys.exit(f"ops_journeys.py: no journey {name!r} (one of {', '.join(JOURNEYS)})")
    with sync_playwright() as p:
        browser = launch(p)
        try:
            facts = JOURNEYS[name](browser)
        finally:
            browser.close()
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
