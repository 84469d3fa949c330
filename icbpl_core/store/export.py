"""Export a run's cluster labels as CSV, one row per image.

Text cells that a spreadsheet would run as a formula (starting with =, +, -, @, a tab or a
carriage return: a file or class name such as `=HYPERLINK(...)`) are written with a leading
apostrophe, as the OWASP guidance on CSV injection recommends; numbers are left alone.
"""
from __future__ import annotations

import errno
from pathlib import Path

import numpy as np

from ..errors import RunError
from . import atomic
from .runs import Run

COLUMNS = ["index", "path", "cluster", "confidence", "margin"]
LABEL_COLUMNS = ["label", "matched_class"]
CURATED_COLUMNS = ["curated_cluster", "cluster_name", "flag", "edited"]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ExportError(RunError):
    """The CSV cannot be written where asked; the message says why."""


def export_table(run: Run, indices: np.ndarray | None = None, curated: bool = False):
    """The export as a DataFrame: index, path (or dataset id), cluster, confidence, margin,
    and label, matched_class when the data has labels (class names where known). `curated`
    adds the curation's columns after those: curated_cluster, cluster_name (its name, or
    empty), flag (outlier, unsure, verified or empty) and edited (curated cluster or flag differ
    from the model's)."""
    table = run.assignments().rename(columns={"id": "path"})
    columns = COLUMNS + [c for c in LABEL_COLUMNS if c in table.columns]
    table = table[columns]
    names = (run.metrics or {}).get("class_names")
    if names and "label" in table.columns:
        name_of = dict(enumerate(names))
        table["label_name"] = table["label"].map(name_of)
        table["matched_class_name"] = table["matched_class"].map(name_of)
    if curated:
        from .curation import Curation

        state = Curation(run).state()
        table["curated_cluster"] = state.cluster
        table["cluster_name"] = [state.names.get(int(c), "") for c in state.cluster]
        table["flag"] = state.flag
        table["edited"] = state.edited
    if indices is not None:
        table = table.iloc[np.asarray(indices, dtype=np.int64)]
    for column in ("path", "label_name", "matched_class_name", "cluster_name"):
        if column in table.columns:
            table[column] = table[column].map(neutralise)
    return table


def neutralise(value):
    """A text cell a spreadsheet would read as a formula, prefixed with an apostrophe."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def export_csv(run: Run, out: str | Path, indices: np.ndarray | None = None, force: bool = False,
               curated: bool = False) -> int:
    """Write the export atomically; returns the number of rows. Refuses to write inside a run
    folder, onto a folder or a link, or over an existing file unless `force`."""
    out = Path(out)
    _check_target(out, force)
    table = export_table(run, indices, curated=curated)
    try:
        atomic.write_text(out, table.to_csv(index=False))
    except OSError as exc:
        raise ExportError(f"cannot write {out}: " + ("the disk is full" if exc.errno == errno.ENOSPC else
                                                     exc.strerror or str(exc))) from None
    return len(table)


def _check_target(out: Path, force: bool) -> None:
    if out.is_symlink():
        raise ExportError(f"{out} is a link; give the path of a new file")
    if out.is_dir():
        raise ExportError(f"{out} is a folder; give the path of a CSV file in it")
    for folder in out.absolute().parents:
        if Run(folder).exists():
            raise ExportError(f"{out} is inside the run folder {folder}; write the CSV somewhere else")
    if out.exists() and not force:
        raise ExportError(f"{out} exists; choose another name, or overwrite it on purpose", setting="force")
    if not out.parent.is_dir():
        raise ExportError(f"{out.parent} is not a folder")
