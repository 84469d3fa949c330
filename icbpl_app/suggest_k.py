"""The Data & model page's "suggest K": `icbpl suggest-k` in a background process, one per set of
images and settings, that the page starts and polls; then the figure of the scores against K and
the value for the form's number of clusters.

    job = start(runs_dir, draft_values)      # or the one already running / done for these values
    job.state, job.progress, job.suggestion  # running / done / failed; the last progress line; Suggestion
    figure(job.suggestion)                   # every score against K, the suggestion marked
    form_values(job.suggestion)              # {"n_clusters": K}

The job (background.py) lives in <runs dir>/.suggest_k/<key>/.
"""
from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

from icbpl_core.training.suggest_k import CRITERION, K_MAX, K_MIN, Suggestion

from . import background

JOBS_DIR = ".suggest_k"
PREFIX = "suggesting K: "

# What a suggestion depends on (training/suggest_k.py's key, and the backbone it scores), and
# where it runs; never n_clusters, which it sets.
DEPENDS_ON = ("dataset", "data_root", "limit", "download", "seed", "augment", "precision", "latent_dim",
              "n_neighbours", "device", "knn_backend", "backbone", "recipe")


def arguments(values: dict, k_min: int = K_MIN, k_max: int = K_MAX) -> list[str]:
    """`icbpl suggest-k` options for a draft: the settings the suggestion depends on, and the range."""
    return background.options(values, DEPENDS_ON) + ["--k-min", str(k_min), "--k-max", str(k_max)]


class SuggestJob(background.Job):
    @property
    def suggestion(self) -> Suggestion | None:
        return self.result_as(Suggestion.from_dict)


def job_for(runs_dir: Path, values: dict, k_min: int = K_MIN, k_max: int = K_MAX) -> SuggestJob:
    job = background.job_for(runs_dir, JOBS_DIR, arguments(values, k_min, k_max), PREFIX)
    return SuggestJob(job.folder, PREFIX)


def start(runs_dir: Path, values: dict, k_min: int = K_MIN, k_max: int = K_MAX) -> SuggestJob:
    """The suggestion job for these values: the one done or running already, else a new one."""
    job = job_for(runs_dir, values, k_min, k_max)
    background.start(job, "suggest-k", arguments(values, k_min, k_max))
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
