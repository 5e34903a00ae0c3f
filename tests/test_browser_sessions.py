"""Eight browser sessions on one fresh app server at once (issue 10: 8 concurrent users get every page).

Its own module: test_browser's module-scoped browser holds Playwright's sync API, which cannot be
started twice in one thread. Skips like test_browser (never in CI).
"""

from __future__ import annotations

from test_browser import ARGS, CHROMIUM, _serve

from playwright.sync_api import sync_playwright  # noqa: E402  (test_browser skips when it is missing)


# Every page, each in its own browser context (its own Streamlit session), opened at once.
FIRST_WAVE = [("", 1), ("size", 2), ("capacity", 1), ("compare", 3), ("accuracy", 1), ("why_a_kv_cache", 1),
              ("size", 2), ("", 1)]


def test_concurrent_first_sessions_on_a_fresh_server(tmp_path):
    """Eight sessions open pages at the same moment on a server that has run nothing yet: their script
    threads' first imports (numpy, pandas, plotly's trace classes) used to race, and Python handed some
    of them a half-initialised numpy ("partially initialized module 'numpy' has no attribute 'ndarray'",
    5 of 48 pages in benchmarks/app_sessions.py). Every page must draw its charts and no error."""
    with _serve(tmp_path / "server.log", {}) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        pages = []
        for path, _ in FIRST_WAVE:
            page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
            page.goto(f"{url}/{path}", wait_until="commit")  # all eight navigations in flight together
            pages.append(page)
        failures = []
        for page, (path, charts) in zip(pages, FIRST_WAVE):
            try:
                page.wait_for_selector("h1", timeout=120_000)
                page.wait_for_function(
                    f"document.querySelectorAll('.js-plotly-plot .main-svg, .vega-embed svg').length >= {charts} || "
                    "document.querySelector('[data-testid=\"stException\"], [data-testid=\"stAlertContentError\"]')",
                    timeout=120_000)
                page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')",
                                       timeout=120_000)
            except Exception as err:  # noqa: BLE001 - reported below with the page's text
                failures.append(f"/{path}: {type(err).__name__}")
                continue
            bad = page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]')
            if bad.count():
                failures.append(f"/{path}: {bad.first.inner_text()[:200]}")
        browser.close()
    assert not failures, failures
