"""The auto recipe's "choose for me": `icbpl choose` in a background process, one per set of images
and settings, that the Data & model page starts and polls; then the chosen values for the form.

    job = start(runs_dir, draft_values)      # or the one already running / done for these values
    job.state, job.progress, job.choice      # running / done / failed; the last progress line; Choice

The job (background.py) lives in <runs dir>/.choices/<key>/.
"""
from __future__ import annotations

from pathlib import Path

from icbpl_core.training.choice import CHOSEN, Choice

from . import background

JOBS_DIR = ".choices"
PREFIX = "choosing the recipe: "
# What a choice depends on (training/choice.py's key), and where it runs; never what it sets.
DEPENDS_ON = ("dataset", "data_root", "limit", "download", "seed", "n_clusters", "augment", "precision",
              "latent_dim", "n_neighbours", "device", "knn_backend")


def arguments(values: dict) -> list[str]:
    """`icbpl choose` options for a draft: the settings the choice depends on."""
    return background.options(values, DEPENDS_ON)


class ChoiceJob(background.Job):
    @property
    def choice(self) -> Choice | None:
        return self.result_as(Choice.from_dict)


def job_for(runs_dir: Path, values: dict) -> ChoiceJob:
    job = background.job_for(runs_dir, JOBS_DIR, arguments(values), PREFIX)
    return ChoiceJob(job.folder, PREFIX)


def start(runs_dir: Path, values: dict) -> ChoiceJob:
    """The choice job for these values: the one done or running already, else a new one."""
    job = job_for(runs_dir, values)
    background.start(job, "choose", arguments(values))
    return job


def form_values(choice: Choice) -> dict:
    """The form's values the choice sets (every one of them, to be shown and overridable)."""
    return {name: choice.values.get(name) for name in CHOSEN if name in choice.values}


def overridden(choice: Choice, values: dict) -> list[str]:
    """The chosen settings the form now holds otherwise (the user changed them after choosing)."""
    return [name for name, value in form_values(choice).items() if values.get(name) != value]
