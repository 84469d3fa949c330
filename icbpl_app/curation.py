"""The Clusters page's curation, in the app's words: the curated labelling as a table the
galleries read, the images an edit applies to, each edit done with a one-line outcome, the
edit history, and the curated CSV. The edits themselves are icbpl_core.store.curation's.

No Streamlit here: pages turn these values into widgets and messages.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from icbpl_core.errors import IcbplError, RunError
from icbpl_core.store.curation import FLAGS, Curated, Curation, SplitPreview, describe, parse_ids
from icbpl_core.store.runs import Run
from icbpl_core.training import corrections
from icbpl_core.training.corrections import Guidance

from . import state as app_state

FLAG_CHOICES = (*FLAGS, "none")
MODEL, CURATED = "model's clusters", "curated"
LABELLINGS = (MODEL, CURATED)


@dataclass
class Outcome:
    """What an edit did (ok) or why it was refused, as a sentence."""
    ok: bool
    message: str


def waiting_reason(run: Run) -> str | None:
    """Why the run cannot be curated now (it is being trained), or None when it can."""
    try:
        Curation(run).check_editable()
    except RunError as exc:
        return app_state.message(exc)
    return None


def curated_state(run: Run, raw: np.ndarray) -> tuple[Curated, str | None]:
    """The run's curated state, or (when its edit log cannot be replayed over these assignments)
    the model's, with what is wrong."""
    try:
        return Curation(run).state(raw), None
    except RunError as exc:
        return Curation(run).unedited(raw), app_state.message(exc)


def curated_table(table, curated: Curated):
    """The run's assignments with the curated cluster in `cluster` (what galleries and cluster
    statistics read), the model's in `model cluster`, and each image's flag."""
    out = table.copy()
    out["model cluster"] = out["cluster"]
    out["cluster"] = curated.cluster
    out["flag"] = curated.flag
    return out


def default_labelling(curated: Curated) -> str:
    """What the result pages show first: the curated labelling once the run has edits in effect."""
    return CURATED if curated.done else MODEL


def labelled(table, curated: Curated, labelling: str):
    """(The table the result pages read, the cluster names) for a labelling: the model's
    assignments as they are, or with the curated cluster in `cluster` (curated_table) and the
    clusters' names."""
    if labelling == CURATED:
        return curated_table(table, curated), dict(curated.names)
    return table, {}


def cluster_label(curated: Curated, cluster: int, size: int | None = None) -> str:
    """"cluster 3 · cats (120 images)"."""
    name = curated.name_of(cluster)
    return f"cluster {cluster}" + (f" · {name}" if name else "") + (f" ({size:,} images)" if size is not None else "")


def selection(picked, typed: str, latent: list[int] | None, n_images: int) -> tuple[list[int], str | None]:
    """The images an edit applies to: those picked in the gallery, typed ("3, 17, 40-45") and,
    when given, the Latent space page's selection; with a problem to show (or None)."""
    try:
        ids = {int(i) for i in picked} | set(parse_ids(typed or "")) | {int(i) for i in latent or []}
    except IcbplError as exc:
        return [], app_state.message(exc)
    bad = sorted(i for i in ids if not 0 <= i < n_images)
    if bad:
        return [], f"There is no image {bad[0]} in this run: its images are 0 to {n_images - 1}."
    return sorted(ids), None


def edit(run: Run, action: str, *args) -> Outcome:
    """Do one edit (Curation's method `action`: name, merge, split, move, flag, undo, redo)."""
    try:
        entry = getattr(Curation(run), action)(*args)
    except IcbplError as exc:
        return Outcome(False, app_state.message(exc))
    return Outcome(True, f"Edit {entry['seq']}: {describe(entry)}.")


def preview_split(run: Run, cluster: int, k: int, curated: Curated) -> SplitPreview | str:
    """The parts a split would make, or why it cannot."""
    try:
        return Curation(run).preview_split(cluster, k, curated)
    except IcbplError as exc:
        return app_state.message(exc)


def history_rows(curated: Curated) -> list[dict]:
    """The edit log newest first: number, time, what, and whether it is in effect."""
    rows = []
    for e in reversed(curated.history):
        undoable = e["op"] not in ("undo", "redo")
        rows.append({"edit": e["seq"], "time": e["time"].replace("T", " ")[:19], "what": describe(e),
                     "in effect": ("yes" if e["in_effect"] else "undone") if undoable else ""})
    return rows


def curated_csv(run: Run, indices=None) -> tuple[bytes, int]:
    """The curated export (the command line's `export --curated`) as CSV bytes and its row count."""
    from icbpl_core.store.export import export_table

    table = export_table(run, None if indices is None else np.asarray(indices, dtype=np.int64), curated=True)
    return table.to_csv(index=False).encode("utf-8"), len(table)


def retrain_plan(run: Run, curated: Curated, ids, given: dict) -> tuple[Guidance, object] | str:
    """(the guidance, the new run's RunSpec) a retrain from this run's corrections (`curated`, the
    images' dataset `ids`) with the settings `given` (guide, w_guide, warm_start) would start, or why
    it cannot."""
    try:
        guidance = corrections.from_state(run, curated, ids)
        return guidance, corrections.retrain_spec(run, guidance, given)
    except IcbplError as exc:
        return app_state.message(exc)


def guidance_summary(guidance: Guidance, curated: Curated, run: Run, warm_start: bool) -> str:
    verified = int((curated.flag == "verified").sum())
    start = "starting from this run's model" if warm_start else "trained from scratch"
    return (f"A new run with this run's settings and its seed, {start}, guided by the **{len(guidance.ids):,} images** you "
            f"decided ({verified:,} verified; the rest moved, merged or split off; outliers and unsure ones left "
            f"out) into **{guidance.n_clusters} clusters**, one PEDCC point each. The same as "
            f"`icbpl retrain {run.path}{' --warm-start' if warm_start else ''}`.")
