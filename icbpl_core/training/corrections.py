"""A person's corrections to a finished run, as the guidance of a new run (`icbpl retrain`).

An image is *decided* when a person verified it, or its curated cluster differs from the model's
(moved there, or merged or split off); outliers and unsure ones are not. The new run has one
PEDCC point per curated cluster that holds images: target j is the j-th of them in id order, and
its point is that cluster's in the PEDCC of every cluster id the curation knows (the curated
run's own points when nothing was split), so the new run starts where the person left off and
its cluster j is the curated cluster clusters[j]. The decided images, by dataset id, go into the new run's guidance.json, which
the pipeline turns into the trainer's targets (method/guidance.py); the run is self-contained:
later edits to the old run do not change it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import RunError
from ..store import atomic
from ..store.curation import Curated, Curation
from ..store.runs import Run

GUIDANCE_FILE = "guidance.json"
NOT_DECIDED = ("outlier", "unsure")


@dataclass
class Guidance:
    source_run: str                 # the curated run's folder name
    source_path: str                # and where it was (warm_start reads its checkpoint there)
    clusters: list[int]             # curated cluster id of each target 0..K'-1
    n_points: int                   # cluster ids the curation knows (the run's K, and those splits made)
    names: dict[str, str]           # target (as text, for JSON) -> the name a person gave it
    ids: list[str]                  # dataset ids of the decided images
    targets: list[int]              # their targets
    edits: int                      # edits in effect in the source log

    @property
    def n_clusters(self) -> int:
        return len(self.clusters)

    def describe(self) -> str:
        return (f"{len(self.ids):,} images a person decided in run {self.source_run} "
                f"({self.edits} edits), {self.n_clusters} clusters")

    def to_dict(self) -> dict:
        return asdict(self)


def from_curation(run: Run) -> Guidance:
    """The guidance a run's curation gives; RunError when there is nothing to learn from."""
    table = run.assignments()
    return from_state(run, Curation(run).state(table["cluster"].to_numpy(np.int64)), table["id"].to_numpy())


def from_state(run: Run, state: Curated, ids: np.ndarray) -> Guidance:
    """from_curation() for a caller that has the curated state and the images' dataset ids already."""
    if run.state != "finished":
        raise RunError(f"run {run.id} is {run.state}; retrain from a finished run")
    clusters = sorted(int(c) for c in np.unique(state.cluster))
    if len(clusters) < 2:
        raise RunError(f"run {run.id}'s curation leaves {len(clusters)} cluster; a new run needs at least 2")
    target_of = {c: j for j, c in enumerate(clusters)}
    decided = ((state.flag == "verified") | (state.cluster != state.raw)) & ~np.isin(state.flag, NOT_DECIDED)
    if not decided.any():
        raise RunError(f"run {run.id} has no corrections to learn from: verify, move, merge or split "
                       "images first (icbpl curate, or the Clusters page)")
    rows = np.flatnonzero(decided)
    return Guidance(source_run=run.id, source_path=str(run.path.absolute()), clusters=clusters,
                    n_points=max(state.known) + 1,
                    names={str(target_of[c]): n for c, n in state.names.items() if n and c in target_of},
                    ids=[str(i) for i in np.asarray(ids)[rows]],
                    targets=[target_of[int(c)] for c in state.cluster[rows]], edits=len(state.done))


def write(run: Run, guidance: Guidance) -> None:
    atomic.write_json(run.file(GUIDANCE_FILE), guidance.to_dict())


def read(run: Run) -> Guidance | None:
    path = run.file(GUIDANCE_FILE)
    if not path.is_file():
        return None
    return Guidance(**json.loads(path.read_text(encoding="utf-8")))


def centroids(guidance: Guidance, cfg) -> np.ndarray:
    """The new run's PEDCC: the points of its curated clusters among those of every known id."""
    from ..method.pedcc import make_pedcc

    return make_pedcc(guidance.n_points, cfg.latent_dim, cfg.seed)[guidance.clusters]


def targets_for(guidance: Guidance, dataset, n_clusters: int) -> np.ndarray:
    """(N,) target of each image of `dataset` (-1: not decided), matched by dataset id."""
    if guidance.n_clusters != n_clusters:
        raise RunError(f"the corrections make {guidance.n_clusters} clusters but the run has K = {n_clusters}; "
                       f"retrain with --n-clusters {guidance.n_clusters}")
    row_of = {str(dataset.item_id(i)): i for i in range(len(dataset))}
    targets = np.full(len(dataset), -1, dtype=np.int64)
    found = [(row_of[i], t) for i, t in zip(guidance.ids, guidance.targets) if i in row_of]
    if not found:
        raise RunError(f"none of the {len(guidance.ids):,} corrected images of run {guidance.source_run} is in "
                       "this run's data; retrain on the same dataset")
    rows, values = zip(*found)
    targets[list(rows)] = values
    return targets


def load_model(guidance: Guidance, model) -> None:
    """Start `model` from the curated run's trained one (warm_start): its heads narrowed to the one
    saved when the curated run had kept only its best."""
    import torch

    path = Path(guidance.source_path) / "checkpoint.pt"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)["trainer"]["model"]
    except (OSError, KeyError, RuntimeError) as exc:
        raise RunError(f"cannot start from the curated run's model ({path}: {type(exc).__name__}); retrain "
                       "from scratch (without --warm-start)") from None
    heads = getattr(model, "head", model)           # an Encoder's heads, or the heads themselves
    saved = {key.split("heads.")[1].split(".")[0] for key in state if "heads." in key}
    if heads.n_heads > len(saved) == 1:
        heads.keep_head(0)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise RunError(f"the curated run's model does not fit this run's ({str(exc).splitlines()[0]}); "
                       "retrain from scratch (without --warm-start) or with the curated run's settings") from None


def retrain_spec(source: Run, guidance: Guidance, given: dict):
    """The new run's RunSpec: the source run's settings, K from the corrections, then `given`
    (the options a person set, by parameter name), resolved."""
    from .. import params
    from ..config import RunSpec

    config = source.config
    train = {**(config.get("train") or {}), "n_clusters": guidance.n_clusters,
             **{k: v for k, v in given.items() if params.param(k).level == "train"}}
    spec = {**config, **{k: v for k, v in given.items() if params.param(k).level == "spec"}, "train": train}
    return RunSpec.from_dict(spec).resolved()
