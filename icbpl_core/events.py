"""The events a run writes to events.jsonl, defined once: their types, the stage of the run
each one starts, and the line the command line prints for it.

    {"type": "epoch", "time": 1733..., "epoch": 3, "epochs": 60, "losses": {...}, ...}

The run store appends them (runs.Run.log_event), the command line prints them (line()),
and the app's Train page reads them back into progress (icbpl_app.progress).
"""
from __future__ import annotations

START = "start"          # a process began (or resumed) the run: resume
DATA = "data"            # the data is open: n_images, shape, input_size, labels, backbone (and backbone_info),
                         # mode, augment
SKIPPED = "skipped"      # unreadable files left out: count, files
EXTRACT = "extract"      # feature extraction progress: what, done, total (a pass starts with done 0)
GUIDED = "guided"        # training follows a person's corrections: source_run, images, guide, w_guide
RESUMED = "resumed"      # training continues after a checkpointed epoch: epoch (note: a checkpoint fallen back from)
STEP = "step"            # within an epoch, about once a second: epoch, epochs, step, steps, loss
EPOCH = "epoch"          # an epoch ended: epoch, epochs, losses, metrics, n_clusters_used, seconds
DONE = "done"            # finished: metrics
ERROR = "error"          # failed: message, error_type, setting
CANCELLED = "cancelled"  # stopped on request (SIGTERM, Ctrl-C): message

TYPES = (START, DATA, SKIPPED, EXTRACT, GUIDED, RESUMED, STEP, EPOCH, DONE, ERROR, CANCELLED)
ENDINGS = (DONE, ERROR, CANCELLED)       # the last event of an attempt

# The stage of the run an event starts, as the progress view names it.
PHASES = {START: "starting", DATA: "loading data", EXTRACT: "extracting features", RESUMED: "training",
          STEP: "training", EPOCH: "training", DONE: "finished", ERROR: "failed", CANCELLED: "cancelled"}


def line(event: dict) -> str | None:
    """The one-line text of an event for a terminal, or None for events not worth a line."""
    kind = event["type"]
    if kind == EPOCH:
        losses = " ".join(f"{k} {v:.3f}" for k, v in event["losses"].items() if k != "total")
        metrics = "  ".join(f"{k.upper()} {v:.3f}" for k, v in event.get("metrics", {}).items())
        return (f"epoch {event['epoch']}/{event['epochs']}  loss {event['losses']['total']:.3f} ({losses})  "
                f"clusters {event['n_clusters_used']}  {metrics}  {event['seconds']:.1f}s")
    if kind == EXTRACT:
        return f"extracting {event['what']}: {event['done']}/{event['total']}"
    if kind == DATA:
        source = (event.get("backbone_info") or {}).get("source")
        return (f"{event['n_images']} images {'x'.join(map(str, event['shape']))}, backbone {event['backbone']}"
                + (f" (weights: {source})" if source else "") + f", mode {event['mode']}, "
                f"augmentation {event['augment']}" + ("" if event["labels"] else ", no labels"))
    if kind == SKIPPED:
        return f"skipped {event['count']} unreadable file(s): " + "; ".join(event["files"][:5])
    if kind == GUIDED:
        return (f"guided by {event['images']:,} images a person decided in run {event['source_run']} "
                f"({event['guide']})")
    if kind == RESUMED:
        return f"resumed after epoch {event['epoch']}" + (f" ({event['note']}; used the one before)"
                                                          if event.get("note") else "")
    return None
