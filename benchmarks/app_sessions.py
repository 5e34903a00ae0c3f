"""Concurrent users of one app server: N browser sessions open every page at once.

    python benchmarks/app_sessions.py [--sessions 8] [--timeout 90] [--rounds 1]

Starts `streamlit run app.py` on a free port, opens N headless-Chromium contexts (one browser; each
context is its own Streamlit session) and has all of them walk every page at the same time. A page
counts as rendered when its title is drawn, its plotly charts exist, Streamlit's "running" status is
gone and no exception box is shown, all within --timeout seconds. Prints, per page, how many sessions
got it and the median / worst seconds, then the total; exits 1 if any session missed a page.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
# (name, url path, plotly charts the page draws by default)
PAGES = [("plan", "", 1), ("size", "size", 2), ("capacity", "capacity", 2), ("compare", "compare", 3),
         ("accuracy", "accuracy", 1), ("why", "why_a_kv_cache", 1)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "KVPLAN_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
                             "--server.headless", "true", "--server.port", str(port), "--server.address",
                             "127.0.0.1", "--browser.gatherUsageStats", "false",
                             "--server.fileWatcherType", "none"],
                            cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return proc, url
        except OSError:
            time.sleep(0.25)
    proc.kill()
    raise SystemExit(f"streamlit did not start:\n{log.read_text(errors='replace')}")


async def render(page, url: str, charts: int, timeout_s: float) -> float | str:
    """Seconds until the page is fully drawn, or (a string) the step it did not reach in the timeout."""
    t0 = time.perf_counter()
    deadline = t0 + timeout_s
    step = "load"

    def left() -> float:
        return max(1.0, (deadline - time.perf_counter()) * 1000)
    try:
        await page.goto(url, timeout=left())
        step = "title"
        await page.wait_for_selector("h1", timeout=left())
        if charts:
            step = "charts"
            await page.wait_for_function(
                f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {charts}", timeout=left())
        step = "running"
        await page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')",
                                     timeout=left())
        if await page.locator('[data-testid="stException"]').count():
            return "exception"
    except Exception:  # noqa: BLE001 - a timeout is the measurement
        if os.environ.get("KVPLAN_SESSIONS_DEBUG"):
            name = f"/tmp/miss-{url.rsplit('/', 1)[-1] or 'plan'}-{time.time():.0f}"
            n = await page.evaluate("document.querySelectorAll('.js-plotly-plot').length")
            m = await page.evaluate("document.querySelectorAll('.js-plotly-plot .main-svg').length")
            Path(name + ".txt").write_text(f"{url} plots={n} svgs={m}\n" + await page.inner_text("body"))
            await page.screenshot(path=name + ".png", full_page=True)
        return step
    return time.perf_counter() - t0


async def session(browser, base: str, order: list[tuple[str, str, int]], timeout_s: float) -> dict:
    ctx = await browser.new_context(viewport={"width": 1440, "height": 900})
    page = await ctx.new_page()
    out = {}
    for name, path, charts in order:
        out[name] = await render(page, f"{base}/{path}", charts, timeout_s)
    await ctx.close()
    return out


async def run(base: str, sessions: int, timeout_s: float) -> list[dict]:
    from playwright.async_api import async_playwright
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        # Each session starts on a different page, as real users do.
        orders = [PAGES[i % len(PAGES):] + PAGES[:i % len(PAGES)] for i in range(sessions)]
        results = await asyncio.gather(*(session(browser, base, o, timeout_s) for o in orders))
        await browser.close()
    return results


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to tell the server's share of the wall time
    from the browser's: all sessions' Chromium renderers share this machine's cores too."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=90.0)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    missed = 0
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_server(Path(tmp) / "server.log")
        try:
            for rnd in range(args.rounds):
                t0 = time.perf_counter()
                cpu0 = cpu_seconds(proc.pid)
                results = asyncio.run(run(base, args.sessions, args.timeout))
                wall = time.perf_counter() - t0
                total = got = 0
                print(f"round {rnd + 1}: {args.sessions} concurrent sessions, every page each")
                for name, _, _ in PAGES:
                    times = [r[name] for r in results if not isinstance(r[name], str)]
                    why = sorted(r[name] for r in results if isinstance(r[name], str))
                    total += len(results)
                    got += len(times)
                    med = f"{statistics.median(times):6.2f}" if times else "   -  "
                    worst = f"{max(times):6.2f}" if times else "   -  "
                    print(f"  {name:9s} {len(times)}/{len(results)} sessions  median {med} s  worst {worst} s"
                          + (f"  missed at: {', '.join(why)}" if why else ""))
                print(f"  pages rendered: {got}/{total} in {wall:.1f} s wall; the app server used "
                      f"{cpu_seconds(proc.pid) - cpu0:.1f} CPU s of it (the rest: the browsers, {os.cpu_count()} cores)")
                missed += total - got
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
