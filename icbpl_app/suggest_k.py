"""The Data & model page's "suggest K": `icbpl suggest-k` in a background process, one per set of
images and settings, that the page starts and polls; then the figure of the scores against K and
the value for the form's number of clusters.

    job = start(runs_dir, draft_values)      # or the one already running / done for these values
    job.state, job.progress, job.suggestion  # running / done / failed; the last progress line; Suggestion
    figure(job.suggestion)                   # every score against K, the suggestion marked
    form_values(job.suggestion)              # {"n_clusters": K}

The job folder is <runs dir>/.suggest_k/<key>/ (log and suggestion.json); the key hashes the
options the suggestion depends on, so two tabs asking the same thing share one job.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go

from icbpl_core import params
from icbpl_core.store.process import pid_alive
from icbpl_core.training.suggest_k import CRITERION, K_MAX, K_MIN, Suggestion

from .processes import spawn

JOBS_DIR = ".suggest_k"
PREFIX = "suggesting K: "

# What a suggestion depends on (training/suggest_k.py's key, and the backbone it scores), and
# where it runs; never n_clusters, which it sets.
DEPENDS_ON = ("dataset", "data_root", "limit", "download", "seed", "augment", "precision", "latent_dim",
              "n_neighbours", "device", "knn_backend", "backbone", "recipe")


def arguments(values: dict, k_min: int = K_MIN, k_max: int = K_MAX) -> list[str]:
    """`icbpl suggest-k` options for a draft: the settings the suggestion depends on, and the range."""
    args = []
    for p in params.on("cli"):
        if p.name not in DEPENDS_ON:
            continue
        value = values.get(p.name)
        if p.type is bool:
            args += [p.flag] if value is not None and value != p.default else []
        elif value is not None:
            args += [p.flag, repr(value) if isinstance(value, float) else str(value)]
    return args + ["--k-min", str(k_min), "--k-max", str(k_max)]


@dataclass
class SuggestJob:
    folder: Path

    @property
    def key(self) -> str:
        return self.folder.name

    @property
    def state(self) -> str:
        """none (never asked), running, done or failed."""
        if self.suggestion is not None:
            return "done"
        pid = self._pid()
        if pid is None:
            return "none"
        return "running" if pid_alive(pid) else "failed"

    @property
    def suggestion(self) -> Suggestion | None:
        try:
            return Suggestion.from_dict(json.loads((self.folder / "suggestion.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None

    @property
    def progress(self) -> str:
        """The last progress line (which K is being scored), or the error of a failed suggestion."""
        for line in reversed(self._log().splitlines()):
            if line.startswith("error: ") or line.startswith("icbpl: error: "):
                return line.split("error: ", 1)[1]
            if line.startswith(PREFIX):
                return line.removeprefix(PREFIX)
        return "starting"

    def _pid(self) -> int | None:
        try:
            return int((self.folder / "pid").read_text())
        except (OSError, ValueError):
            return None

    def _log(self) -> str:
        try:
            return (self.folder / "suggest.log").read_text(errors="replace")[-20_000:]
        except OSError:
            return ""


def job_for(runs_dir: Path, values: dict, k_min: int = K_MIN, k_max: int = K_MAX) -> SuggestJob:
    key = hashlib.sha256(json.dumps(arguments(values, k_min, k_max)).encode()).hexdigest()[:16]
    return SuggestJob(Path(runs_dir) / JOBS_DIR / key)


def start(runs_dir: Path, values: dict, k_min: int = K_MIN, k_max: int = K_MAX) -> SuggestJob:
    """The suggestion job for these values: the one done or running already, else a new one."""
    job = job_for(runs_dir, values, k_min, k_max)
    if job.state in ("done", "running"):
        return job
    job.folder.mkdir(parents=True, exist_ok=True)
    threads = {} if os.environ.get("OMP_NUM_THREADS") else {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) - 1))}
    proc = spawn("icbpl_core", ["suggest-k", *arguments(values, k_min, k_max),
                                "--out", str(job.folder / "suggestion.json")], job.folder / "suggest.log", threads)
    (job.folder / "pid").write_text(str(proc.pid))
    return job


def form_values(suggestion: Suggestion) -> dict:
    """The form's value the suggestion sets."""
    return {"n_clusters": suggestion.k}


SHOWN = {CRITERION: "stability x clusters used (the criterion)", "stability": "stability across seeds",
         "used": "share of clusters used", "view_consistency": "view consistency",
         "silhouette": "silhouette of the latents"}


def figure(suggestion: Suggestion, height: int = 320) -> go.Figure:
    """Every shown score against K; the criterion drawn thick and the suggested K marked."""
    ks = suggestion.ks()
    fig = go.Figure()
    for name, title in SHOWN.items():
        values = [suggestion.scores[str(k)].get(name) for k in ks]
        fig.add_trace(go.Scatter(x=ks, y=values, mode="lines+markers", name=title,
                                 line={"width": 3 if name == CRITERION else 1.5},
                                 hovertemplate="K = %{x}: %{y:.3f}<extra>" + title + "</extra>"))
    fig.add_vline(x=suggestion.k, line_dash="dash", line_color="#444",
                  annotation_text=f"suggested K = {suggestion.k}", annotation_position="top")
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10}, xaxis_title="K (clusters)",
                      yaxis_title="score (higher is better)", legend={"orientation": "h", "y": -0.25},
                      xaxis={"dtick": 1})
    return fig
