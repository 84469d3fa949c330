"""A run's progress read from its events: phase, fraction done, elapsed and remaining time,
and the per-epoch history of every loss term and metric (for the live Train page).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

LOSS_TERMS = ("total", "mmd", "aug", "knn", "cos")
METRIC_NAMES = ("acc", "nmi", "ari")


@dataclass
class Progress:
    phase: str = "waiting"              # waiting, loading data, extracting features, training, done, ...
    detail: str = ""
    fraction: float = 0.0               # 0..1 of the whole run
    epoch: int = 0                      # epochs completed
    epochs: int | None = None
    elapsed: float | None = None        # seconds, this attempt (since the last start event)
    remaining: float | None = None      # seconds, estimated; None while unknown
    history: list[dict] = field(default_factory=list)   # one row per epoch: epoch, losses, metrics
    has_labels: bool | None = None
    n_images: int | None = None
    skipped: int = 0

    def table(self):
        """The history as a DataFrame: epoch, loss terms, metrics, clusters used, seconds."""
        import pandas as pd

        rows = []
        for h in self.history:
            row = {"epoch": h["epoch"]}
            row.update({f"loss_{k}": v for k, v in (h.get("losses") or {}).items()})
            row.update(h.get("metrics") or {})
            row["clusters_used"] = h.get("n_clusters_used")
            row["seconds"] = h.get("seconds")
            rows.append(row)
        return pd.DataFrame(rows)


def summarize(events: list[dict], state: str, epochs: int | None = None, now: float | None = None) -> Progress:
    """Progress of a run from its events (all attempts) and its current state."""
    now = time.time() if now is None else now
    p = Progress(epochs=epochs)
    starts = [i for i, e in enumerate(events) if e.get("type") == "start"]
    current = events[starts[-1]:] if starts else events
    by_epoch: dict[int, dict] = {}
    for e in events:            # history over all attempts; a repeated epoch replaces the old one
        if e.get("type") == "epoch":
            by_epoch[int(e["epoch"])] = e
        elif e.get("type") == "data":
            p.has_labels = bool(e.get("labels"))
            p.n_images = e.get("n_images")
        elif e.get("type") == "skipped":
            p.skipped = int(e.get("count") or 0)
    p.history = [by_epoch[k] for k in sorted(by_epoch)]
    if p.history:
        p.epoch = int(p.history[-1]["epoch"])
        p.epochs = p.epochs or p.history[-1].get("epochs")
    start_time = current[0].get("time") if current else None
    end_time = None
    last = current[-1] if current else {}
    if state not in ("running", "starting") and last.get("type") in ("done", "error", "cancelled"):
        end_time = last.get("time")
    if start_time is not None:
        p.elapsed = max(0.0, (end_time or (now if state in ("running", "starting") else last.get("time", now)))
                        - start_time)

    step_frac = 0.0
    phase, detail = "waiting", ""
    for e in current:
        kind = e.get("type")
        if kind == "start":
            phase, detail = "starting", "starting the training process"
        elif kind == "data":
            phase, detail = "loading data", f"{e.get('n_images')} images, backbone {e.get('backbone')}"
        elif kind == "extract":
            phase = "extracting features"
            detail = f"{e.get('what')}: {e.get('done')}/{e.get('total')} images"
        elif kind == "resumed":
            phase, detail = "training", f"resumed after epoch {e.get('epoch')}"
        elif kind == "step":
            phase = "training"
            p.epochs = p.epochs or e.get("epochs")
            steps = max(1, int(e.get("steps") or 1))
            step_frac = min(1.0, int(e.get("step") or 0) / steps)
            detail = f"epoch {e.get('epoch')}/{e.get('epochs')}, step {e.get('step')}/{steps}"
        elif kind == "epoch":
            phase, step_frac = "training", 0.0
            detail = f"epoch {e.get('epoch')}/{e.get('epochs')} done"
        elif kind == "done":
            phase, detail = "finished", "training finished"
        elif kind == "error":
            phase, detail = "failed", e.get("message", "")
        elif kind == "cancelled":
            phase, detail = "cancelled", e.get("message", "")
    if state == "finished":
        phase = "finished"
    elif state in ("failed", "cancelled", "interrupted") and phase not in ("failed", "cancelled"):
        phase = state
    elif state == "starting" and (not current or current[-1].get("type") in ("done", "error", "cancelled")):
        # a resume whose process has not written its first event yet: the last attempt is over
        phase, detail = "starting", "starting the training process"
        p.elapsed = None
    if phase == "training" and step_frac == 0.0 and p.epoch < (p.epochs or 0):
        detail = detail or f"epoch {p.epoch + 1}/{p.epochs}"
    p.phase, p.detail = phase, detail

    if p.epochs:
        p.fraction = min(1.0, (p.epoch + (step_frac if phase == "training" else 0.0)) / p.epochs)
    if state == "finished":
        p.fraction = 1.0
        p.remaining = 0.0
    elif phase == "training" and p.epochs:
        this_attempt = [e for e in current if e.get("type") == "epoch"]
        secs = [float(e.get("seconds") or 0.0) for e in this_attempt] or \
            [float(h.get("seconds") or 0.0) for h in p.history]
        if secs:
            per_epoch = sum(secs) / len(secs)
            p.remaining = max(0.0, (p.epochs - p.epoch - step_frac) * per_epoch)
    return p


def format_seconds(seconds: float | None) -> str:
    """12s, 3m 05s, 1h 02m; an em dash when unknown."""
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {(seconds % 3600) // 60:02d}m"
