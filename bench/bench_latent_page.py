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
         the browser included; caches warm);
  select with --interact: a box drag over the middle of the plot until the selection's
         gallery is shown (the first one reads the run's images), and whether hovering shows
         a thumbnail.
Medians over repeats; the baseline (default: none) is measured in the same run for a ratio.
The Streamlit server's peak RSS (VmHWM) is read before the selection (the plot's own cost) and
at the end (a gallery reopens the run's images).
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


def peak_rss_mb(pid: int) -> float:
    """A live process's peak resident memory (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def hover_shows_a_thumbnail(page) -> bool:
    """Move the mouse over the plot until the hover thumbnail shows (True) or every spot was tried."""
    box = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
    for fy in (0.5, 0.4, 0.6, 0.3, 0.7):
        for fx in [i / 40 for i in range(4, 37)]:
            page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
            time.sleep(0.05)
            thumb = page.locator("#icbpl-hover-thumb")
            if thumb.count() and thumb.is_visible():
                return "url(" in page.eval_on_selector("#icbpl-hover-thumb div", "el => el.style.backgroundImage")
    return False


def box_select(page) -> tuple[float, int]:
    """Drag a box over the middle of the plot; (seconds until the gallery shows, images selected)."""
    box = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
    x0, y0 = box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.4
    x1, y1 = box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.6
    page.mouse.move(x0, y0)
    page.mouse.down()
    for i in range(1, 11):
        page.mouse.move(x0 + (x1 - x0) * i / 10, y0 + (y1 - y0) * i / 10)
        time.sleep(0.02)
    started = time.perf_counter()
    page.mouse.up()
    page.locator(".icbpl-cell").first.wait_for(timeout=300_000)
    settle(page)
    seconds = time.perf_counter() - started
    heading = page.get_by_text("Selection:").first.inner_text()
    return seconds, int(heading.split(":")[1].split("image")[0].replace(",", "").strip())


def alone(run_dir: Path, work: Path) -> dict:
    """A fresh server whose only request is the latent page's URL: seconds until the plot is drawn
    (Streamlit's caches empty, the projection and thumbnails cached on disk) and the server's peak RSS."""
    from playwright.sync_api import sync_playwright

    runs_dir = work / f"alone-{run_dir.name}"
    runs_dir.mkdir()
    (runs_dir / run_dir.name).symlink_to(run_dir.resolve())
    proc, url = start_server(runs_dir, work / f"alone-{run_dir.name}.log")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1500, "height": 1200})
            page.set_default_timeout(300_000)
            started = time.perf_counter()
            page.goto(f"{url}/latent?run={run_dir.name}")
            seconds = until_drawn(page, started)
            settle(page)
            browser.close()
        return {"cold_load": seconds, "server_peak_rss_mb": peak_rss_mb(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(10)


def measure(run_dir: Path, repeats: int, work: Path, interact: bool = False, shot: Path | None = None) -> dict:
    from playwright.sync_api import sync_playwright

    from icbpl_app import projection
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
            if shot is not None:
                page.screenshot(path=str(shot), full_page=True)
            result["server_peak_rss_page_mb"] = peak_rss_mb(proc.pid)     # before any gallery
            if interact:
                settle(page)
                result["hover"] = hover_shows_a_thumbnail(page)
                result["select"], result["selected"] = box_select(page)
                if shot is not None:
                    page.screenshot(path=str(shot.with_name(shot.stem + "-selection.png")), full_page=True)
            browser.close()
        result["server_peak_rss_mb"] = peak_rss_mb(proc.pid)
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
    print("| run | points | first visit | visit (median) | visits | fresh page load (median) | loads | "
          "server peak RSS MiB |\n|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['run']} | {r['n']:,} | {r['first']:.2f} | {statistics.median(r['visit']):.2f} | "
              f"{', '.join(f'{v:.2f}' for v in r['visit'])} | {statistics.median(r['load']):.2f} | "
              f"{', '.join(f'{v:.2f}' for v in r['load'])} | {r['server_peak_rss_mb']:,.0f} |")
    if len(results) == 2:
        base, big = results
        print(f"ratio {big['run']} / {base['run']}: visit "
              f"{statistics.median(big['visit']) / statistics.median(base['visit']):.2f}, load "
              f"{statistics.median(big['load']) / statistics.median(base['load']):.2f}")


if __name__ == "__main__":
    main()
