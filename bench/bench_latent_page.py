"""Latent-space page render time in a real browser, for a big run against a small baseline.

    python bench/bench_latent_page.py RUN_DIR [--baseline RUN_DIR] [--repeats 5]

Starts `streamlit run app.py` headless over a temporary runs folder that links the given
runs, opens it in Debian's Chromium (Playwright, software WebGL), and times:
  visit  from clicking "Latent space" in the sidebar (coming from the Export page) until the
         WebGL scatter is drawn and Streamlit is idle: the page as a user switches to it,
         its projection cached on disk (computed first with `python -m icbpl_app.projection`
         when missing) and the first visit of the session already made;
  first  the first visit of a fresh server and browser session (Streamlit's caches empty:
         the projection, assignments and hover thumbnails are read from the run folder);
  load   a fresh browser page opening the latent page's URL (Streamlit's own start-up in
         the browser included; caches warm).
Medians over repeats; the baseline (default: none) is measured in the same run for a ratio.
"""
from __future__ import annotations

import argparse
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
PLOT = ".js-plotly-plot .gl-container canvas, .js-plotly-plot canvas"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(runs_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "ICBPL_RUNS_DIR": str(runs_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--browser.gatherUsageStats", "false",
                             "--server.fileWatcherType", "none"], cwd=ROOT, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    sys.exit("streamlit did not start: " + log.read_text()[-2000:])


def until_drawn(page, started: float, timeout: float = 300.0) -> float:
    """Seconds from `started` until the scatter's canvas exists and the app is idle."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.locator(PLOT).count() and not page.locator('[data-testid="stStatusWidget"]').count():
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            return time.perf_counter() - started
        time.sleep(0.02)
    raise TimeoutError("the latent page did not draw its plot")


def nav(page, title: str) -> float:
    started = time.perf_counter()
    page.locator('[data-testid="stSidebarNavLink"]', has_text=title).click()
    return started


def settle(page) -> None:
    calm, deadline = 0, time.monotonic() + 120
    while calm < 8 and time.monotonic() < deadline:
        calm = 0 if page.locator('[data-testid="stStatusWidget"]').count() else calm + 1
        time.sleep(0.1)


def measure(run_dir: Path, repeats: int, work: Path) -> dict:
    from playwright.sync_api import sync_playwright
    from icbpl_core import projection
    from icbpl_core.store.runs import open_run

    run = open_run(run_dir)
    if projection.load_projection(run) is None:
        started = time.perf_counter()
        projection.compute_projection(run)
        print(f"projected {run.id} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    runs_dir = work / run.id
    runs_dir.mkdir()
    (runs_dir / run.path.name).symlink_to(run.path.resolve())
    proc, url = start_server(runs_dir, work / f"{run.id}.log")
    result = {"run": run.id, "n": len(projection.load_projection(run).points), "visit": [], "load": []}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1500, "height": 1200})
            page.set_default_timeout(300_000)
            page.goto(f"{url}/export?run={run.path.name}")
            page.get_by_role("heading", name="Export").first.wait_for()
            settle(page)
            result["first"] = until_drawn(page, nav(page, "Latent space"))
            for _ in range(repeats):
                settle(page)
                nav(page, "Export")
                settle(page)
                result["visit"].append(until_drawn(page, nav(page, "Latent space")))
            for _ in range(repeats):
                fresh = browser.new_page(viewport={"width": 1500, "height": 1200})
                started = time.perf_counter()
                fresh.goto(f"{url}/latent?run={run.path.name}")
                result["load"].append(until_drawn(fresh, started))
                fresh.close()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--baseline", type=Path, help="a small run measured in the same session, for a ratio")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="icbpl-latent-bench-") as tmp:
        results = [measure(r, args.repeats, Path(tmp)) for r in filter(None, (args.baseline, args.run_dir))]
    print(f"$ python bench/bench_latent_page.py {' '.join(sys.argv[1:])}")
    print(f"Chromium headless (software WebGL), {os.cpu_count()} cores, {args.repeats} repeats; seconds")
    print("| run | points | first visit | visit (median) | visits | fresh page load (median) | loads |\n"
          "|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['run']} | {r['n']:,} | {r['first']:.2f} | {statistics.median(r['visit']):.2f} | "
              f"{', '.join(f'{v:.2f}' for v in r['visit'])} | {statistics.median(r['load']):.2f} | "
              f"{', '.join(f'{v:.2f}' for v in r['load'])} |")
    if len(results) == 2:
        base, big = results
        print(f"ratio {big['run']} / {base['run']}: visit "
              f"{statistics.median(big['visit']) / statistics.median(base['visit']):.2f}, load "
              f"{statistics.median(big['load']) / statistics.median(base['load']):.2f}")


if __name__ == "__main__":
    main()
