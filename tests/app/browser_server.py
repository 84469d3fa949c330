"""The app served for the browser tests: `streamlit run app.py` on a free local port over a runs
folder, with downloads off; stopped (and any training job it started cancelled) on exit."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers import ROOT

START_SECONDS = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_app(runs: Path, log_path: Path, **env: str) -> Iterator[str]:
    """The app's URL while it serves `runs`; `env`: more environment variables for it."""
    environment = {**os.environ, "ICBPL_RUNS_DIR": str(runs), "ICBPL_OFFLINE": "1", **env}
    port = free_port()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                                 "--server.port", str(port), "--browser.gatherUsageStats", "false",
                                 "--server.fileWatcherType", "none"],
                                cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(proc, url, log_path)
            yield url
        finally:
            _cancel_jobs(runs)
            _stop(proc)


@contextmanager
def app_over_new_runs(tmp_path_factory, name: str) -> Iterator[tuple[str, Path]]:
    """(URL, runs folder) of the app over a new, empty runs folder, with the session's feature cache."""
    base = tmp_path_factory.getbasetemp()
    runs = tmp_path_factory.mktemp(f"{name}-runs")
    with streamlit_app(runs, base / f"streamlit-{name}.log", ICBPL_CACHE_DIR=str(base / "cache")) as url:
        yield url, runs


def _wait_healthy(proc: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("streamlit did not start: " + Path(log_path).read_text()[-2000:])
        time.sleep(0.3)


def _cancel_jobs(runs: Path) -> None:
    """Training jobs a test started from the page would outlive the server otherwise."""
    from icbpl_app import jobs
    from icbpl_core.store.runs import list_runs

    for run in list_runs(runs):
        if run.active:
            jobs.cancel(run)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
