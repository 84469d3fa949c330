"""Export a run's cluster labels as CSV, one row per image."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import atomic
from .runs import Run

COLUMNS = ["index", "path", "cluster", "confidence", "margin"]
LABEL_COLUMNS = ["label", "matched_class"]


def export_table(run: Run, indices: np.ndarray | None = None):
    """The export as a DataFrame: index, path (or dataset id), cluster, confidence, margin,
    and label, matched_class when the data has labels (class names where known)."""
    table = run.assignments().rename(columns={"id": "path"})
    columns = COLUMNS + [c for c in LABEL_COLUMNS if c in table.columns]
    table = table[columns]
    names = (run.metrics or {}).get("class_names")
    if names and "label" in table.columns:
        name_of = dict(enumerate(names))
        table["label_name"] = table["label"].map(name_of)
        table["matched_class_name"] = table["matched_class"].map(name_of)
    if indices is not None:
        table = table.iloc[np.asarray(indices, dtype=np.int64)]
    return table


def export_csv(run: Run, out: str | Path, indices: np.ndarray | None = None) -> int:
    """Write the export atomically; returns the number of rows."""
    table = export_table(run, indices)
    atomic.write_text(Path(out), table.to_csv(index=False))
    return len(table)
