"""The run store: one folder per run, readable by the app while the run is going on.

    <runs_dir>/<run_id>/
        config.json       the RunSpec (everything needed to reproduce the run)
        job.json          the process a launcher (the app) started for it: pid, host, command, times
        status.json       state (running, finished, failed, cancelled), pid, times, error
        events.jsonl      one JSON object per line (events.py)
        checkpoint.pt     model, optimiser and trainer state after the last full epoch
        checkpoint.prev.pt  the same after the epoch before (the fallback when the last is damaged)
        .training.lock    held by the process training the run (one at a time)
        pedcc.npy         the K x d centroids
        latents.npy       N x d latents of the final model
        features.npy      N x D backbone features (float16), for neighbour views
        assignments.csv   index, id, cluster, confidence, margin[, label, matched_class]
        metrics.json      ACC/NMI/ARI (with labels), cluster sizes and confidence
        curation.jsonl    a person's edits to the clusters, one per line (curation.py)
Every file but events.jsonl and curation.jsonl is written atomically; those two are appended line by line.
"""
from __future__ import annotations

import json
import os
import re
import socket
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .. import events as ev
from ..errors import RunError
from . import atomic
from .clock import iso
from .files import disk_full, no_space
from .locks import Busy, file_lock
from .process import alive_here

if TYPE_CHECKING:
    import numpy as np

RUNS_DIR_ENV = "ICBPL_RUNS_DIR"
STATES = ("running", "finished", "failed", "cancelled", "interrupted")   # what status.json records
ACTIVE = ("starting", "running")        # "starting": a launched process has not written its status yet
RESUMABLE = ("cancelled", "interrupted", "failed")
JOB_NAME = "job.json"
CHOICE_FILE = "choice.json"      # the auto recipe's choice: candidates, scores, why (training/choice.py)
LOCK_NAME = ".training.lock"


def default_runs_dir() -> Path:
    """Where run folders go unless told: $ICBPL_RUNS_DIR, else ./runs."""
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs").expanduser().absolute()


class Run:
    """A handle on one run folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def id(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        return self.path / name

    def exists(self) -> bool:
        return self.file("config.json").is_file()

    # -- config and status ------------------------------------------------------------
    @property
    def config(self) -> dict:
        return _read_json(self.file("config.json")) or {}

    @property
    def choice(self) -> dict | None:
        """How the auto recipe chose this run's settings, when it did."""
        return _read_json(self.file(CHOICE_FILE))

    def job(self) -> dict:
        """job.json: the process a launcher started for this run ({} when none was)."""
        return _read_json(self.file(JOB_NAME)) or {}

    def record_job(self, fresh: bool = False, **fields) -> None:
        """Write job.json: `fields` over what it holds (fresh: `fields` alone, a new process)."""
        atomic.write_json(self.file(JOB_NAME), {**({} if fresh else self.job()), **fields})

    def status(self) -> dict:
        """The run's status, its launcher's job folded in. state is one of starting, running, finished,
        failed, cancelled, interrupted: 'starting' while a launched process has not written its status
        yet; a 'running' run whose process is gone reads 'interrupted'."""
        job, raw = self.job(), _read_json(self.file("status.json"))
        if raw is None:
            if alive_here(job):
                return {"state": "starting", "pid": job.get("pid"), "host": job.get("host"),
                        "started_at": job.get("launched_at")}
            if job.get("cancel_requested_at"):
                return {"state": "cancelled", "error": "cancelled before training started"}
            if job:
                return {"state": "interrupted", "error": "the training process ended before it started training"}
            return {"state": "interrupted"}
        out = dict(raw)
        if out.get("state") == "running" and out.get("host") == socket.gethostname() and not alive_here(out):
            out["state"] = "interrupted"
        newer_job = job.get("launched_at", "") >= (raw.get("updated_at") or "")
        if out["state"] in RESUMABLE and alive_here(job) and newer_job:   # a resume that has not begun yet
            out.update(state="starting", pid=job.get("pid"))
        if out["state"] == "interrupted" and job.get("cancel_requested_at", "") >= (raw.get("updated_at") or "") \
                and job.get("cancel_requested_at"):
            out["state"] = "cancelled"
        return out

    @property
    def state(self) -> str:
        return self.status()["state"]

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @contextmanager
    def training_lock(self):
        """Held by the one process training this run (the command line's and the app's alike);
        a second one is refused at once, before it writes anything."""
        try:
            with file_lock(self.file(LOCK_NAME), timeout=0):
                yield
        except Busy:
            raise RunError(f"run {self.id} is being trained by another process (pid "
                           f"{self.status().get('pid', '?')}); wait for it to end, or stop it first") from None

    def set_status(self, state: str, **fields) -> None:
        if state not in STATES:
            raise ValueError(f"unknown run state {state!r}")
        status = {**(_read_json(self.file("status.json")) or {}), **fields, "state": state,
                  "updated_at": iso()}
        if state == "running":
            status.update(pid=os.getpid(), host=socket.gethostname())
            status.pop("error", None)
        atomic.write_json(self.file("status.json"), status)

    # -- events -------------------------------------------------------------------------
    def log_event(self, event: dict) -> None:
        if event.get("type") not in ev.TYPES:
            raise ValueError(f"unknown event type {event.get('type')!r}")
        line = json.dumps({"time": time.time(), **event}, allow_nan=True)
        try:
            with open(self.file("events.jsonl"), "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        except OSError as exc:
            if no_space(exc):
                raise disk_full(self.file("events.jsonl")) from None
            raise

    def events(self) -> list[dict]:
        """All complete events (a line being written at this moment is left out)."""
        try:
            text = self.file("events.jsonl").read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        events = []
        for line in text.splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return events

    # -- results ------------------------------------------------------------------------
    @property
    def metrics(self) -> dict | None:
        return _read_json(self.file("metrics.json"))

    def latents(self) -> np.ndarray:
        return self._npy("latents.npy")

    def centroids(self) -> np.ndarray:
        return self._npy("pedcc.npy")

    def features(self) -> np.ndarray:
        return self._npy("features.npy")

    def assignments(self):
        import pandas as pd
        path = self.file("assignments.csv")
        if not path.is_file():
            raise RunError(f"run {self.id} has no assignments yet (state: {self.state})")
        return pd.read_csv(path, keep_default_na=False, na_values=[""])

    def _npy(self, name: str) -> np.ndarray:
        path = self.file(name)
        if not path.is_file():
            raise RunError(f"run {self.id} has no {name} yet (state: {self.state})")
        import numpy as np   # here, not at the top: the command line's help reads this module
        return np.load(path, mmap_mode="r")

    def summary(self) -> dict:
        config, status, metrics = self.config, self.status(), self.metrics or {}
        train = config.get("train", {})
        return {"run": self.id, "state": status["state"], "dataset": config.get("dataset"),
                "backbone": config.get("backbone"), "clusters": train.get("n_clusters"),
                "seed": train.get("seed"), "epoch": status.get("epoch"), "epochs": train.get("epochs"),
                "acc": metrics.get("acc"), "nmi": metrics.get("nmi"), "ari": metrics.get("ari"),
                "started_at": status.get("started_at")}


def create_run(runs_dir: str | Path, config: dict) -> Run:
    """A new, uniquely named run folder holding config.json."""
    runs_dir = Path(runs_dir)
    writable_folder(runs_dir)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{config.get('dataset', 'run')}-{config.get('backbone', '')}")
    base = f"{stamp}-{slug.strip('-')}-s{config.get('train', {}).get('seed', 0)}"
    for attempt in range(1000):
        path = runs_dir / (base if attempt == 0 else f"{base}-{attempt}")
        try:
            path.mkdir()
            break
        except FileExistsError:
            continue
    else:
        raise RunError(f"could not create a run folder in {runs_dir}", setting="runs_dir")
    run = Run(path)
    atomic.write_json(run.file("config.json"), config)
    return run


def writable_folder(folder: Path) -> None:
    """Create the runs folder if needed, or say in one line why runs cannot be written there."""
    blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise RunError(f"the runs folder {folder} cannot be used: {blocker} is a file, not a folder",
                       setting="runs_dir")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"the runs folder {folder} cannot be created: {exc.strerror or exc}",
                       setting="runs_dir") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RunError(f"the runs folder {folder} is not writable", setting="runs_dir")


def list_runs(runs_dir: str | Path) -> list[Run]:
    """Runs in a folder, newest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    runs = [Run(p) for p in runs_dir.iterdir() if p.is_dir() and (p / "config.json").is_file()]
    return sorted(runs, key=lambda r: r.id, reverse=True)


def open_run(path: str | Path) -> Run:
    run = Run(path)
    if not run.exists():
        raise RunError(f"{path} is not a run folder (it has no config.json)")
    return run


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
