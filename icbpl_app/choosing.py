"""The auto recipe's "choose for me": `icbpl choose` in a background process, one per set of images
and settings, that the Data & model page starts and polls; then the chosen values for the form.

    job = start(runs_dir, draft_values)      # or the one already running / done for these values
    job.state, job.progress, job.choice      # running / done / failed; the last progress line; Choice

The job folder is <runs dir>/.choices/<key>/ (log and choice.json); the key hashes the options
the choice depends on, so two tabs asking the same thing share one job.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from icbpl_core import params
from icbpl_core.store.process import pid_alive
from icbpl_core.training.choice import CHOSEN, Choice

from .processes import spawn

JOBS_DIR = ".choices"
PREFIX = "choosing the recipe: "


# What a choice depends on (training/choice.py's key), and where it runs; never what it sets.
DEPENDS_ON = ("dataset", "data_root", "limit", "download", "seed", "n_clusters", "augment", "precision",
              "latent_dim", "n_neighbours", "device", "knn_backend")


def arguments(values: dict) -> list[str]:
    """`icbpl choose` options for a draft: the settings the choice depends on."""
    args = []
    for p in params.on("cli"):
        if p.name not in DEPENDS_ON:
            continue
        value = values.get(p.name)
        if p.type is bool:
            args += [p.flag] if value is not None and value != p.default else []
        elif value is not None:
            args += [p.flag, repr(value) if isinstance(value, float) else str(value)]
    return args


@dataclass
class ChoiceJob:
    folder: Path

    @property
    def key(self) -> str:
        return self.folder.name

    @property
    def state(self) -> str:
        """none (never asked), running, done or failed."""
        if self.choice is not None:
            return "done"
        pid = self._pid()
        if pid is None:
            return "none"
        return "running" if pid_alive(pid) else "failed"

    @property
    def choice(self) -> Choice | None:
        try:
            return Choice.from_dict(json.loads((self.folder / "choice.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None

    @property
    def progress(self) -> str:
        """The last progress line (what is being scored), or the error of a failed choice."""
        lines = self._log().splitlines()
        for line in reversed(lines):
            if line.startswith("error: "):
                return line.removeprefix("error: ")
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
            return (self.folder / "choose.log").read_text(errors="replace")[-20_000:]
        except OSError:
            return ""


def job_for(runs_dir: Path, values: dict) -> ChoiceJob:
    key = hashlib.sha256(json.dumps(arguments(values)).encode()).hexdigest()[:16]
    return ChoiceJob(Path(runs_dir) / JOBS_DIR / key)


def start(runs_dir: Path, values: dict) -> ChoiceJob:
    """The choice job for these values: the one done or running already, else a new one."""
    job = job_for(runs_dir, values)
    if job.state in ("done", "running"):
        return job
    job.folder.mkdir(parents=True, exist_ok=True)
    threads = {} if os.environ.get("OMP_NUM_THREADS") else {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) - 1))}
    proc = spawn("icbpl_core", ["choose", *arguments(values), "--out", str(job.folder / "choice.json")],
                 job.folder / "choose.log", threads)
    (job.folder / "pid").write_text(str(proc.pid))
    return job


def form_values(choice: Choice) -> dict:
    """The form's values the choice sets (every one of them, to be shown and overridable)."""
    return {name: choice.values.get(name) for name in CHOSEN if name in choice.values}


def overridden(choice: Choice, values: dict) -> list[str]:
    """The chosen settings the form now holds otherwise (the user changed them after choosing)."""
    return [name for name, value in form_values(choice).items() if values.get(name) != value]
