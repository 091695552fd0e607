"""The web app's figures in a real browser (Debian's chromium, Playwright for
Python), run by tests/examples/web_bench.rs against a real `stele serve`:

- the live session page of a 2,000-step session: first paint, first
  contentful paint, the first step on the page, every step on the page;
- the reviewer's timeline of a 100,000-entry session: the first page, the
  last page (one click), the page before it, and the reviewer's list;
- the served assets' total size, raw and gzipped.

Environment: STELE_WEB_BASE, STELE_WEB_PASSWORD, STELE_BENCH_USER,
STELE_BENCH_STEPS_SESSION, STELE_BENCH_LOG_SESSION, STELE_WEB_DIR (the
app's files), STELE_BENCH_RUNS. Prints one JSON object. Figures, not
assertions: nothing here passes or fails on time.
"""

import gzip
import json
import os
import statistics
import sys

from playwright.sync_api import expect, sync_playwright

from journeys import BASE, Page, launch

LONG = 600_000
USER = os.environ["STELE_BENCH_USER"]
STEPS = os.environ["STELE_BENCH_STEPS_SESSION"]
BIG = os.environ["STELE_BENCH_LOG_SESSION"]
WEB = os.environ["STELE_WEB_DIR"]
RUNS = int(os.environ.get("STELE_BENCH_RUNS", "3"))


def now(p):
    return p.evaluate("() => performance.now()")


def paints(p):
    return {e["name"]: e["startTime"] for e in p.evaluate("() => performance.getEntriesByType('paint').map(e => e.toJSON())")}


def session_page(browser):
    out = []
    for _ in range(RUNS):
        v = Page(browser, width=1280, height=900)
        v.sign_in(USER)
        p = v.page
        p.goto("about:blank")
        p.goto(f"{BASE}/#/session/{STEPS}")
        p.locator("[data-testid=timeline] .step").first.wait_for(timeout=LONG)
        first_step = now(p)
        expect(p.get_by_test_id("end")).to_be_visible(timeout=LONG)
        all_steps = now(p)
        steps = p.locator("[data-testid=timeline] .step").count()
        pt = paints(p)
        out.append(
            {
                "first_paint_ms": pt.get("first-paint"),
                "first_contentful_paint_ms": pt.get("first-contentful-paint"),
                "first_step_ms": first_step,
                "all_steps_ms": all_steps,
                "steps_on_page": steps,
                "dom_nodes": p.evaluate("() => document.getElementsByTagName('*').length"),
            }
        )
        v.ctx.close()
    return out


def timeline_page(browser):
    out = []
    for _ in range(RUNS):
        v = Page(browser, width=1280, height=900)
        v.sign_in(USER)
        p = v.page
        state = p.get_by_test_id("timeline-state")
        p.goto("about:blank")
        p.goto(f"{BASE}/#/review")
        p.locator(f"tr[data-session='{BIG}']").wait_for(timeout=LONG)
        list_ms = now(p)
        p.goto("about:blank")
        p.goto(f"{BASE}/#/review/{BIG}")
        expect(state).to_contain_text("entries: log index", timeout=LONG)
        first_ms = now(p)
        rows = p.locator("[data-testid=log-timeline] tbody tr")
        first_index = rows.first.get_attribute("data-index")
        t0 = now(p)
        p.get_by_role("button", name="Last page").click()
        expect(p.get_by_role("button", name="Next page")).to_be_disabled(timeout=LONG)
        expect(rows.first).not_to_have_attribute("data-index", first_index, timeout=LONG)
        last_ms = now(p) - t0
        last_index = rows.last.get_attribute("data-index")
        top = rows.first.get_attribute("data-index")
        t0 = now(p)
        p.get_by_role("button", name="Previous page").click()
        expect(rows.first).not_to_have_attribute("data-index", top, timeout=LONG)
        prev_ms = now(p) - t0
        # Scrolling the page of rows to its end: the browser's own work.
        t0 = now(p)
        p.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
        p.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        scroll_ms = now(p) - t0
        total = state.text_content()
        out.append(
            {
                "review_list_ms": list_ms,
                "first_page_ms": first_ms,
                "last_page_ms": last_ms,
                "previous_page_ms": prev_ms,
                "scroll_to_end_of_page_ms": scroll_ms,
                "rows_per_page": rows.count(),
                "last_index": int(last_index),
                "state": total,
            }
        )
        v.clean()
        v.ctx.close()
    return out


def assets():
    raw = gz = files = 0
    for root, _, names in os.walk(WEB):
        for n in names:
            b = open(os.path.join(root, n), "rb").read()
            raw += len(b)
            gz += len(gzip.compress(b, 9))
            files += 1
    return {"files": files, "raw_bytes": raw, "gzip_bytes": gz}


def median(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(vals), 1) if vals else None


def main():
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            s = session_page(browser)
            t = timeline_page(browser)
        finally:
            browser.close()
    summary = {
        "session_page": {k: median(s, k) for k in s[0]},
        "timeline": {k: median(t, k) for k in t[0] if k != "state"},
        "timeline_state": t[0]["state"],
        "assets": assets(),
        "runs": {"session_page": s, "timeline": t},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
