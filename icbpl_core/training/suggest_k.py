"""Suggest K: how many clusters a set of images holds, from the images alone.

    suggestion = suggest_k(spec, k_min=2, k_max=15, given={"backbone"})
    suggestion.k, suggestion.why, suggestion.table()

1. A seeded sample of SAMPLE images, drawn by index without their labels (datasets.base.Unlabelled),
   and its features and augmented copies (choice._features, through the feature cache) from one
   pretrained backbone: the one given, else the auto recipe's choice for own folders and zips,
   else the dataset's default (for a scratch encoder, the backbone its neighbours come from).
   SAMPLE is twice the auto recipe's: on 1,000 images the 5-class folder's short runs agreed
   best at K = 2, on 2,000 at K = 5.
2. For every K in the range, choice.score on ROUNDS pairs of seeds: short head-only ICBPL runs,
   each scored without labels (stability, view consistency, silhouette, balance, loss, and the
   share of the K clusters the runs use), averaged over the pairs.
3. The suggestion (pick below) is the K with the highest CRITERION: the stability across seeds
   (adjusted Rand index of two runs' partitions, averaged over ROUNDS pairs) times the share of
   the K clusters the runs use. Stability alone keeps rising past the true K on some sets, where
   the extra clusters stay empty and so cost no agreement; chosen by measurement on four image
   sets of known K (docs/BENCHMARKS.md#suggest-k).

Suggestions are cached by what they depend on, as choices are.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np

from ..config import RunSpec
from ..datasets import get_entry, load_dataset
from ..datasets.base import IndexedSubset, Unlabelled
from ..errors import ConfigError
from ..features.cache import ids_digest
from ..store.result_cache import ResultCache
from . import choice as auto

K_MIN, K_MAX = 2, 15
SAMPLE = 2000            # images scored (docs/BENCHMARKS.md#suggest-k)
CRITERION = "stability_used"     # stability x used (docs/BENCHMARKS.md#suggest-k)
ROUNDS = 2               # choice.score per K, on seeds (s, s+1), (s+2, s+3), ...: scores are their means
SUGGEST_VERSION = 1
NAMES = {"stability_used": "stability across seeds times the share of clusters used"}
SCORES = ("stability_used", "stability", "view_consistency", "silhouette", "balance", "used", "loss")


@dataclass
class Suggestion:
    k: int
    why: str
    backbone: str
    backbone_from: str                   # given, the auto recipe's choice, the dataset's default, ...
    criterion: str = CRITERION
    scores: dict = field(default_factory=dict)    # str(K) -> {score: value, seconds}
    sample: int = 0
    images: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Suggestion":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def ks(self) -> list[int]:
        return sorted(int(k) for k in self.scores)

    def table(self) -> str:
        """One line per K, the suggestion marked, as the command line prints it."""
        lines = ["   K  " + "  ".join(f"{name:>16}" for name in SCORES)]
        for k in self.ks():
            row = self.scores[str(k)]
            mark = "*" if k == self.k else " "
            lines.append(f"{mark}{k:>3}  " + "  ".join(f"{row.get(n, float('nan')):>16.4f}" for n in SCORES))
        return "\n".join(lines)


CACHE = ResultCache("suggest_k", Suggestion.from_dict)     # one entry per images and settings


def pick(scores: dict[int, dict], criterion: str = CRITERION) -> tuple[int, str]:
    """The suggested K and why: the K with the highest `criterion`; ties (within 0.005) go to the
    larger K."""
    best = max(scores[k][criterion] for k in scores)
    k = max(k for k in scores if scores[k][criterion] >= best - 0.005)
    name = NAMES.get(criterion, criterion.replace("_", " "))
    others = sorted((s[criterion], j) for j, s in scores.items() if j != k)[-1:]
    why = (f"K = {k} has the highest {name} ({scores[k][criterion]:.3f}"
           + (f", against {others[0][0]:.3f} for K = {others[0][1]}" if others else "") + ")")
    if criterion == "stability_used":
        why += ": short runs with different seeds agree most on its partition, and leave no cluster empty"
    return k, why


def sweep(features: np.ndarray, views: np.ndarray, ks, train, progress=None) -> dict[int, dict]:
    """choice.score for every K in `ks` (features: N x D, views: PROBE_VIEWS x N x D), with its seconds."""
    progress = progress or (lambda what, done, total: None)
    ks, scores = list(ks), {}
    for i, k in enumerate(ks):
        progress(f"scoring K = {k} ({i + 1}/{len(ks)})", i, len(ks))
        t0 = time.perf_counter()
        rounds = [auto.score(features, views, k, replace(train, seed=train.seed + 2 * r)) for r in range(ROUNDS)]
        scores[k] = {name: float(np.mean([r[name] for r in rounds])) for name in rounds[0]}
        scores[k]["stability_used"] = scores[k]["stability"] * scores[k]["used"]
        scores[k]["seconds"] = round(time.perf_counter() - t0, 2)
    progress("scored", len(ks), len(ks))
    return scores


def probe_backbone(spec: RunSpec, given: set[str] | frozenset, progress, cache_dir) -> tuple[str, str]:
    """(backbone whose features are scored, where it comes from)."""
    from ..backbones import BACKBONES

    if "backbone" in given and spec.backbone:
        if spec.backbone in BACKBONES and not BACKBONES[spec.backbone].has_pretrained:
            raise ConfigError(f"suggesting K needs a pretrained backbone's features, and {spec.backbone} has no "
                              "pretrained weights; give another --backbone", setting="backbone")
        return spec.backbone, "given"
    from ..recipes import default_recipe

    entry = get_entry(spec.dataset)
    if (spec.recipe or default_recipe(spec.dataset)) == "auto":
        choice = auto.choose(spec, set(given) | {"n_clusters"}, progress=progress, cache_dir=cache_dir)
        chosen = choice.values.get("neighbours_from") if choice.chosen == "pixels" else choice.values["backbone"]
        return chosen, f"the auto recipe's choice ({choice.chosen})"
    name = entry.default_backbone
    if name in BACKBONES and not BACKBONES[name].has_pretrained:
        tap = entry.scratch_neighbours if entry.scratch_neighbours != "pixels" else "mobilenet_v2"
        return tap, f"where the dataset's {name} mines its neighbours"
    return name, "the dataset's default"


def suggest_k(spec: RunSpec, k_min: int = K_MIN, k_max: int = K_MAX, given: set[str] | frozenset = frozenset(),
              progress: Callable[[str, int, int], None] | None = None, cache_dir=None) -> Suggestion:
    """The suggested number of clusters for `spec`'s images (see the module's docstring); `given`
    names the options set explicitly (a given backbone is the one scored)."""
    started = time.perf_counter()
    progress = progress or (lambda what, done, total: None)
    if not 2 <= k_min <= k_max:
        raise ConfigError(f"the K range must have 2 <= k-min <= k-max, got {k_min}..{k_max}", setting="k_min")
    dataset = Unlabelled(load_dataset(spec.dataset, spec.data_root, spec.limit, spec.train.seed, spec.download))
    n = len(dataset)
    if k_max > n:
        raise ConfigError(f"K up to {k_max} is more than the {n} images; choose a k-max of {n} or less",
                          setting="k_max")
    backbone, source = probe_backbone(spec, given, progress, cache_dir)
    rng = np.random.default_rng(spec.train.seed)
    sample = dataset if n <= SAMPLE else IndexedSubset(dataset, np.sort(rng.choice(n, SAMPLE, replace=False)))
    key = _key(spec, backbone, k_min, k_max, dataset, sample)
    cached = CACHE.read(key, cache_dir)
    if cached is not None:
        return cached
    features, views = auto._features(spec, backbone, sample, progress, cache_dir, backbone)
    scores = sweep(features, views, range(k_min, k_max + 1), spec.train, progress)
    k, why = pick(scores)
    why += f"; {backbone} features ({source}) of {len(sample):,} of the {n:,} images"
    suggestion = Suggestion(k, why, backbone, source, scores={str(j): s for j, s in scores.items()},
                            sample=len(sample), images=n, seconds=round(time.perf_counter() - started, 2))
    CACHE.write(key, suggestion, cache_dir)
    return suggestion


def _key(spec: RunSpec, backbone: str, k_min: int, k_max: int, dataset, sample) -> str:
    ids = ids_digest([dataset.item_id(i) for i in range(len(dataset))])
    parts = {"version": SUGGEST_VERSION, "dataset": spec.dataset, "root": spec.data_root, "limit": spec.limit,
             "ids": ids, "sample": len(sample), "ks": [k_min, k_max], "seed": spec.train.seed, "backbone": backbone,
             "augment": spec.augment, "precision": spec.precision, "latent_dim": spec.train.latent_dim,
             "criterion": CRITERION, "probe": [SAMPLE, auto.PROBE_VIEWS, auto.PROBE_EPOCHS,
                                               list(auto.PROBE_SEEDS), auto.PROBE_HEAD, ROUNDS]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]
