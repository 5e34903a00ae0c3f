"""The app in a real browser: `streamlit run app.py` on a free port, driven by headless Chromium.

Opens every page, waits for the plotly charts to draw, and fails on any browser console error,
uncaught page error or Streamlit exception box. Screenshots go to test-artifacts/screenshots/.
Runs wherever /usr/bin/chromium exists (Debian's `chromium`); in CI (env CI set) a missing browser or
Playwright is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "test-artifacts" / "screenshots"
# Opened at a page URL (/compare), Streamlit's frontend looks for the server's base path by trying
# /compare/_stcore/health and /compare/_stcore/host-config before /_stcore/...: those 404s are its
# design, not an app error, and are the only console errors forgiven below.
PROBE = re.compile(r"/_stcore/(health|host-config)$")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if not os.environ.get("CI"):
    if not Path(CHROMIUM).exists():
        pytest.skip("no /usr/bin/chromium (apt-get install chromium); CI never skips", allow_module_level=True)
    pytest.importorskip("playwright.sync_api", reason="pip install playwright; CI never skips")

from playwright.sync_api import sync_playwright  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    env = {**os.environ, "KVPLAN_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats",
             "false", "--server.fileWatcherType", "none"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.read().strip() == b"ok":
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not start:\n{log.read_text(errors='replace')}")
                time.sleep(0.25)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    server_log = log.read_text(errors="replace")
    assert "Traceback" not in server_log, server_log


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=ARGS, viewport={"width": 1500, "height": 2400})
        page = ctx.new_page()
        page.console_errors, page.probe_404s = [], []
        page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
        page.on("pageerror", lambda e: page.console_errors.append(f"pageerror: {e}"))
        page.on("requestfailed", lambda r: page.console_errors.append(f"request failed: {r.url} {r.failure}"))
        page.on("response", lambda r: r.status == 404 and PROBE.search(r.url) and page.probe_404s.append(r.url))
        yield page
        ctx.close()


def _errors(page) -> list[str]:
    """Console errors, less one "404" line per base-path probe (see PROBE), then cleared."""
    errors, probes = list(page.console_errors), len(page.probe_404s)
    for i in range(len(errors) - 1, -1, -1):
        if probes and errors[i].startswith("Failed to load resource: the server responded with a status of 404"):
            del errors[i]
            probes -= 1
    page.console_errors.clear()
    page.probe_404s.clear()
    return errors


def _planner_available() -> bool:
    try:
        import kvplan.planner  # noqa: F401
    except ImportError:
        return False
    return True


def _open(page, url: str) -> None:
    _errors(page)  # start each view with a clean slate
    page.goto(url)


def _settle(page, min_charts: int) -> None:
    page.wait_for_selector('[data-testid="stSidebar"]', timeout=30_000)
    page.wait_for_selector('h1', timeout=30_000)
    if min_charts:
        page.wait_for_function(
            f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {min_charts}", timeout=30_000)
    # Wait until Streamlit reports the script finished (no "Running..." status widget).
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=30_000)
    page.wait_for_timeout(300)


def _check(page, name: str, min_charts: int) -> None:
    _settle(page, min_charts)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0, f"{name}: a Streamlit exception"
    charts = page.locator(".js-plotly-plot").count()
    assert charts >= min_charts, f"{name}: {charts} plotly charts, expected >= {min_charts}"
    errors = _errors(page)
    assert not errors, f"{name}: console errors {errors}"


PAGES = [("size", "", 2), ("compare", "compare", 2), ("why", "why", 1)]


@pytest.mark.parametrize("name,path,charts", PAGES, ids=[p[0] for p in PAGES])
def test_page_renders(server, browser_page, name, path, charts):
    _open(browser_page, f"{server}/{path}")
    _check(browser_page, name, charts)
    assert browser_page.locator('[data-testid="stAlertContentError"]').count() == 0


def test_capacity_page(server, browser_page):
    _open(browser_page, f"{server}/capacity")
    charts = 2 if _planner_available() else 0
    _check(browser_page, "capacity", charts)


def test_validate_page_with_uploaded_report(server, browser_page, tmp_path):
    _open(browser_page, f"{server}/validate")
    _settle(browser_page, 0)
    report = {"model": "meta-llama/Llama-3.2-1B", "engine": "transformers", "device": "cuda",
              "results": [{"context_len": n, "predicted_bytes": 32768 * n, "measured_bytes": 32768 * n + 4096,
                           "error": 0.0} for n in (1024, 4096, 16384)]}
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    browser_page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))
    _check(browser_page, "validate", 1)


def test_shared_link_reproduces_the_view(server, browser_page):
    _open(browser_page, f"{server}/?model=google/gemma-2-9b&engine=llama.cpp&ctx=8k")
    _check(browser_page, "size_shared_link", 2)
    sidebar = browser_page.locator('[data-testid="stSidebar"]').inner_text()
    assert "google/gemma-2-9b · 21 sliding, 21 full" in sidebar
    assert browser_page.get_by_text("KV at 8,192 tokens (llama.cpp)").count() == 1
    assert browser_page.get_by_text("At 8,192 tokens", exact=True).count() == 1


def test_bad_input_shows_inline_message(server, browser_page):
    _open(browser_page, f"{server}/?ctx=lots")
    _settle(browser_page, 0)
    browser_page.screenshot(path=str(SHOTS / "bad_context.png"), full_page=True)
    assert browser_page.locator('[data-testid="stException"]').count() == 0
    assert browser_page.get_by_text("cannot read 'lots'").count() >= 1
    assert not _errors(browser_page)


def test_uploaded_config_and_broken_upload(server, browser_page, tmp_path):
    """What AppTest cannot drive: st.file_uploader, with a real config.json and a broken one."""
    from kvplan.registry import bundled_config
    _open(browser_page, f"{server}/?src=Upload")
    _settle(browser_page, 0)
    good = tmp_path / "my-model.json"
    good.write_text(json.dumps(bundled_config("Qwen/Qwen3-8B")))
    upload = browser_page.locator('[data-testid="stSidebar"] [data-testid="stFileUploaderDropzoneInput"]')
    upload.set_input_files(str(good))
    _check(browser_page, "size_uploaded_config", 2)
    assert browser_page.get_by_text("my-model · 36 full").count() >= 1
    broken = tmp_path / "broken.json"
    broken.write_text('{"model_type": "llama", "num_hidden_layers": -3,')
    upload.set_input_files(str(broken))
    _settle(browser_page, 0)
    browser_page.wait_for_selector('[data-testid="stAlertContentError"]', timeout=30_000)
    browser_page.screenshot(path=str(SHOTS / "broken_upload.png"), full_page=True)
    assert browser_page.locator('[data-testid="stException"]').count() == 0
    assert browser_page.get_by_text("not valid JSON").count() >= 1
    assert not _errors(browser_page)
