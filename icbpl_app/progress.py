"""A run's progress read from its events: phase, fraction done, elapsed and remaining time,
and the per-epoch history of every loss term and metric (for the live Train page).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from icbpl_core import events as ev
from icbpl_core.store.runs import ACTIVE, RESUMABLE

LOSS_TERMS = ("total", "mmd", "aug", "knn", "cos")
METRIC_NAMES = ("acc", "nmi", "ari")


@dataclass
class Progress:
    phase: str = "waiting"              # waiting, loading data, extracting features, training, done, ...
    detail: str = ""
    fraction: float = 0.0               # 0..1 of the training (while extracting features: of the extraction)
    epoch: int = 0                      # epochs completed
    epochs: int | None = None
    elapsed: float | None = None        # seconds, this attempt (since the last start event)
    remaining: float | None = None      # seconds, estimated (of the current stage); None while unknown
    history: list[dict] = field(default_factory=list)   # one row per epoch: epoch, losses, metrics
    has_labels: bool | None = None
    n_images: int | None = None
    skipped: int = 0
    passes: list[dict] = field(default_factory=list)   # this attempt's extraction passes: what, done, total, start, last

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


def extraction_passes(config: dict) -> int:
    """How many feature extraction passes a run makes at most (config.json as the run resolved it):
    head mode extracts the images and each augmented view with the backbone; neighbours mined in
    another backbone's features take one more pass. Passes the feature cache already holds make none."""
    source = config.get("neighbours_from")
    passes = 1 + int(config.get("n_views") or 0) if config.get("mode") == "head" else int(source == "backbone")
    return max(1, passes + int(source not in (None, "auto", "backbone", "pixels")))


def summarize(events: list[dict], state: str, epochs: int | None = None, now: float | None = None,
              passes: int | None = None) -> Progress:
    """Progress of a run from its events (all attempts) and its current state. passes: how many
    extraction passes to expect (extraction_passes), for the extraction's share of the bar."""
    now = time.time() if now is None else now
    p = Progress(epochs=epochs)
    starts = [i for i, e in enumerate(events) if e.get("type") == ev.START]
    current = events[starts[-1]:] if starts else events    # this attempt
    _read_history(p, events)
    # files skipped when this attempt opened the data, and images that failed to decode
    p.skipped = sum(int(e.get("count") or 0) for e in current if e.get("type") == ev.SKIPPED)
    _read_elapsed(p, current, state, now)
    step_frac = _read_phase(p, current, state)
    _read_fraction(p, current, state, step_frac)
    if p.phase == "extracting features" and p.passes:
        _read_extraction(p, passes or 1, now)
    return p


def _read_extraction(p: Progress, expected: int, now: float) -> None:
    """While features are extracted: the bar is the extraction's share done (passes done and the
    current pass's images), the time left that of the extraction, from its pace so far."""
    current = p.passes[-1]
    expected = max(expected, len(p.passes))
    number, done, total = len(p.passes), current["done"], max(1, current["total"])
    p.fraction = min(1.0, (number - 1 + done / total) / expected)
    of = f" (pass {number} of {expected})" if expected > 1 else ""
    if done >= total:
        waiting = max(0.0, now - current["last"])
        p.detail = (f"{current['what']}: all {total:,} images extracted{of}; preparing the next step"
                    + (f" ({format_seconds(waiting)})" if waiting >= 3 else ""))
    else:
        p.detail = f"{current['what']}: {done:,}/{total:,} images{of}"
    images = sum(x["done"] for x in p.passes)
    seconds = sum(max(0.0, x["last"] - x["start"]) for x in p.passes)
    if images and seconds > 0.5:
        left = (total - done) + (expected - number) * total
        p.remaining = max(0.0, left * seconds / images - (now - current["last"] if done < total else 0.0)) \
            if left else None


def _read_history(p: Progress, events: list[dict]) -> None:
    """History over all attempts (a repeated epoch replaces the old one), and labels."""
    by_epoch: dict[int, dict] = {}
    for e in events:
        if e.get("type") == ev.EPOCH:
            by_epoch[int(e["epoch"])] = e
        elif e.get("type") == ev.DATA:
            p.has_labels = bool(e.get("labels"))
            p.n_images = e.get("n_images")
    p.history = [by_epoch[k] for k in sorted(by_epoch)]
    if p.history:
        p.epoch = int(p.history[-1]["epoch"])
        p.epochs = p.epochs or p.history[-1].get("epochs")


def _read_elapsed(p: Progress, current: list[dict], state: str, now: float) -> None:
    start_time = current[0].get("time") if current else None
    if start_time is None:
        return
    last = current[-1]
    active = state in ACTIVE
    end_time = last.get("time") if not active and last.get("type") in ev.ENDINGS else None
    p.elapsed = max(0.0, (end_time or (now if active else last.get("time", now))) - start_time)


def _read_phase(p: Progress, current: list[dict], state: str) -> float:
    """The phase and its detail from this attempt's events; returns the fraction of the current epoch done."""
    step_frac, phase, detail = 0.0, "waiting", ""
    previous_time = None
    for e in current:
        kind = e.get("type")
        if kind == ev.EXTRACT:
            _read_pass(p, e, previous_time)
        previous_time = e.get("time", previous_time)
        phase = ev.PHASES.get(kind, phase)
        if kind == ev.START:
            detail = "starting the training process"
        elif kind == ev.DATA:
            detail = f"{e.get('n_images')} images, backbone {e.get('backbone')}"
        elif kind == ev.EXTRACT:
            detail = f"{e.get('what')}: {e.get('done')}/{e.get('total')} images"
        elif kind == ev.RESUMED:
            detail = ev.line(e)
        elif kind == ev.STEP:
            p.epochs = p.epochs or e.get("epochs")
            steps = max(1, int(e.get("steps") or 1))
            step_frac = min(1.0, int(e.get("step") or 0) / steps)
            detail = f"epoch {e.get('epoch')}/{e.get('epochs')}, step {e.get('step')}/{steps}"
        elif kind == ev.EPOCH:
            step_frac = 0.0
            detail = f"epoch {e.get('epoch')}/{e.get('epochs')} done"
        elif kind == ev.DONE:
            detail = "training finished"
        elif kind in (ev.ERROR, ev.CANCELLED):
            detail = ""             # why: the page's outcome message says it, once (jobs.error_message)
    if state == "finished":
        phase = "finished"
    elif state in RESUMABLE and phase not in ("failed", "cancelled"):
        phase = state
    elif state == "starting" and (not current or current[-1].get("type") in ev.ENDINGS):
        # a resume whose process has not written its first event yet: the last attempt is over
        phase, detail = "starting", "starting the training process"
        p.elapsed = None
    if phase == "training" and step_frac == 0.0 and p.epoch < (p.epochs or 0):
        detail = detail or f"epoch {p.epoch + 1}/{p.epochs}"
    p.phase, p.detail = phase, detail
    return step_frac


def _read_pass(p: Progress, e: dict, previous_time: float | None) -> None:
    """One extraction event: a new pass starts with done 0 (or, from engines that did not say so, with
    another `what`; it then started about when the event before it was written)."""
    at, done = float(e.get("time") or 0.0), int(e.get("done") or 0)
    last = p.passes[-1] if p.passes else None
    if last is None or last["what"] != e.get("what") or (done == 0 and last["done"] > 0):
        start = at if done == 0 or previous_time is None else float(previous_time)
        p.passes.append({"what": e.get("what"), "done": done, "total": int(e.get("total") or 0), "start": start,
                         "last": at})
    else:
        last.update(done=done, total=int(e.get("total") or last["total"]), last=at)


def _read_fraction(p: Progress, current: list[dict], state: str, step_frac: float) -> None:
    """Fraction of the run done, and the time left estimated from this attempt's epochs."""
    if p.epochs:
        p.fraction = min(1.0, (p.epoch + (step_frac if p.phase == "training" else 0.0)) / p.epochs)
    if state == "finished":
        p.fraction, p.remaining = 1.0, 0.0
    elif p.phase == "training" and p.epochs:
        secs = [float(e.get("seconds") or 0.0) for e in current if e.get("type") == ev.EPOCH] or \
            [float(h.get("seconds") or 0.0) for h in p.history]
        if secs:
            p.remaining = max(0.0, (p.epochs - p.epoch - step_frac) * sum(secs) / len(secs))


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
