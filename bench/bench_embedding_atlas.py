"""The other candidate for the latent page at a million points: Apple's Embedding Atlas Streamlit
component, timed on a run made by bench_million.py (docs/BENCHMARKS.md#a-million-points).

    python bench/bench_embedding_atlas.py RUN_DIR --python EA_PYTHON --duckdb-wasm DIST [--repeats 2]

EA_PYTHON: the interpreter of a virtual environment that has `embedding-atlas` installed and
also sees this project (a .pth file naming .venv's site-packages); the project itself does not
depend on it. The component loads DuckDB-WASM from cdn.jsdelivr.net when the page opens, so
offline it shows nothing; here DIST (the dist/ folder of the npm package @duckdb/duckdb-wasm at
the version the component asks for, `npm pack @duckdb/duckdb-wasm@VERSION`) is served in the
CDN's place, over HTTPS with a throw-away certificate, through Chromium's host resolver rules.
From version 0.23 the component's scatter needs WebGPU with shader-f16, which headless
Chromium's software adapter lacks; 0.22 falls back to WebGL 2 and draws.

A Streamlit script shows the run's cached projection with the component (x, y, cluster, label,
confidence and image index per point; the PEDCC points as text labels C0, C1, ...). Timed:
from opening the page until the component reports all its points and its canvas is drawn
(median over repeats, each a fresh browser page), and the server's peak RSS. Also printed: the
size of the inline image column hover thumbnails would need (the component shows an image
column's values; it has no image URLs of its own), against Streamlit's message size limit.
"""
from __future__ import annotations

import argparse
import http.server
import io
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from bench_latent_page import CHROMIUM, free_port, peak_rss_mb

PAGE = '''
import streamlit as st
from embedding_atlas.streamlit import embedding_atlas

from icbpl_app import projection
from icbpl_core.store.runs import open_run

st.set_page_config(layout="wide")


@st.cache_data(show_spinner=False)
def frame(path):
    run = open_run(path)
    proj = projection.load_projection(run)
    table = run.assignments()
    index = table["index"].to_numpy()
    df = table[["index", "cluster", "label", "confidence"]].astype(
        {"index": "int32", "cluster": "int32", "label": "int32", "confidence": "float32"})
    df["x"], df["y"] = proj.points[index, 0], proj.points[index, 1]
    labels = [{"x": float(x), "y": float(y), "text": f"C{c}", "priority": 10}
              for c, (x, y) in enumerate(proj.centroids)]
    return df, labels


df, labels = frame(RUN)
st.title("Latent space (Embedding Atlas)")
value = embedding_atlas(df, x="x", y="y", labels=labels, key="atlas")
st.write(value)
'''


class CdnStandIn(http.server.BaseHTTPRequestHandler):
    dist: Path

    def do_GET(self):
        path = self.dist / self.path.split("/dist/")[-1].split("?")[0]
        if not path.is_file():
            self.send_response(404)
            self.end_headers()
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("content-type", "application/wasm" if path.suffix == ".wasm" else "text/javascript")
        self.send_header("access-control-allow-origin", "*")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def serve_cdn(dist: Path, work: Path) -> int:
    """An HTTPS server for DuckDB-WASM's files in a thread; returns its port."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", work / "key.pem",
                    "-out", work / "cert.pem", "-days", "2", "-subj", "/CN=cdn.jsdelivr.net"],
                   check=True, capture_output=True)
    handler = type("Handler", (CdnStandIn,), {"dist": dist})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(work / "cert.pem", work / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def start(python: str, script: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`python -m streamlit run SCRIPT` in the project's folder (`-m` puts it on the path, so the
    script imports icbpl_app from there)."""
    import urllib.request
    port = free_port()
    proc = subprocess.Popen([python, "-m", "streamlit", "run", str(script), "--server.headless", "true",
                             "--server.port", str(port), "--browser.gatherUsageStats", "false",
                             "--server.fileWatcherType", "none"], cwd=ROOT, stdout=open(log, "w"),  # noqa: SIM115
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    sys.exit("streamlit did not start: " + log.read_text()[-2000:])


def until_drawn(page, n: int, started: float, timeout: float = 300) -> float:
    """Seconds until the component's frame reports all n points and has a drawn canvas."""
    deadline = time.monotonic() + timeout
    wanted = f"{n:,} points"
    while time.monotonic() < deadline:
        for frame in page.frames:
            try:     # (locators see into the component's shadow DOM; inner_text does not)
                drawn = frame.get_by_text(wanted).count() > 0 and frame.locator("canvas").count() > 0
            except Exception:  # noqa: BLE001 - a frame being replaced: not drawn yet
                drawn = False
            if drawn:
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
                return time.perf_counter() - started
        time.sleep(0.1)
    page.screenshot(path="embedding-atlas-timeout.png", full_page=True)
    texts = [f.inner_text("body", timeout=5000)[:300] for f in page.frames]
    raise TimeoutError(f"the Embedding Atlas component did not draw (screenshot: embedding-atlas-timeout.png); "
                       f"its frames read: {texts}")


def image_column_mb(run_dir: Path, sample: int = 2000) -> tuple[float, int]:
    """(MiB an inline PNG data-URL column of every image would take, images), from a sample."""
    import base64

    import numpy as np

    from icbpl_app.gallery import open_run_dataset
    from icbpl_core.store.runs import open_run

    run = open_run(run_dir)
    table = run.assignments()
    dataset = open_run_dataset(run.config, table["id"].astype(str).tolist())
    picks = np.random.default_rng(0).choice(len(table), min(sample, len(table)), replace=False)
    sizes = []
    for i in picks:
        buffer = io.BytesIO()
        dataset.image(int(i)).save(buffer, format="PNG")
        sizes.append(len("data:image/png;base64,") + len(base64.b64encode(buffer.getvalue())))
    return float(np.mean(sizes)) * len(table) / 2**20, len(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--python", required=True, help="interpreter of an environment with embedding-atlas")
    parser.add_argument("--duckdb-wasm", type=Path, required=True, help="@duckdb/duckdb-wasm's dist/ folder")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--shot", type=Path, help="a screenshot of the page, drawn")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    version = subprocess.run([args.python, "-c", "import importlib.metadata as m; print(m.version('embedding-atlas'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="icbpl-ea-bench-") as tmp:
        work = Path(tmp)
        script = work / "atlas_page.py"
        script.write_text(f"RUN = {str(args.run_dir.resolve())!r}\n" + PAGE)
        port = serve_cdn(args.duckdb_wasm, work)
        import pandas as pd
        n = len(pd.read_csv(args.run_dir / "assignments.csv", usecols=["index"]))
        proc, url = start(args.python, script, work / "streamlit.log")
        loads = []
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    f"--host-resolver-rules=MAP cdn.jsdelivr.net:443 127.0.0.1:{port}", "--ignore-certificate-errors"])
                for i in range(args.repeats + 1):          # the first one fills the server's cache
                    page = browser.new_page(viewport={"width": 1500, "height": 1200})
                    started = time.perf_counter()
                    page.goto(url)
                    loads.append(until_drawn(page, n, started))
                    if args.shot and i == args.repeats:
                        time.sleep(2)
                        page.screenshot(path=str(args.shot), full_page=True)
                    page.close()
                browser.close()
            rss = peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)
    images_mb, _ = image_column_mb(args.run_dir)
    print(f"$ python bench/bench_embedding_atlas.py {' '.join(sys.argv[1:])}")
    print(f"embedding-atlas {version}, Chromium headless ({CHROMIUM}, software WebGL), {os.cpu_count()} cores")
    print("| points | first load s (server cache empty) | load s (median) | loads | server peak RSS MiB |\n"
          "|---|---|---|---|---|")
    print(f"| {n:,} | {loads[0]:.2f} | {statistics.median(loads[1:]):.2f} | "
          f"{', '.join(f'{v:.2f}' for v in loads[1:])} | {rss:,.0f} |")
    print(f"hover thumbnails would need an inline image column of {images_mb:,.0f} MiB "
          f"(Streamlit's server.maxMessageSize default: 200 MB)")


if __name__ == "__main__":
    main()
