"""The automatic recipe (`--recipe auto`): choose the features and the recipe for a user's own
images from the images alone.

    choice = choose(spec, given={"n_clusters"})     # spec: the run as asked, `given`: set explicitly
    spec = choice.applied(spec)                     # the chosen values, under what was given

1. A seeded sample of at most SAMPLE images, drawn by index from the images without their
   labels (datasets.base.Unlabelled): nothing here can read them.
2. For each candidate (CANDIDATES: a backbone and its feature tap, all shipped offline), the
   features of the sample and of PROBE_VIEWS augmented copies, at the input side the images call
   for (input_side below). They go through the run's feature cache: when the sample is the whole
   data set, the run that follows reuses them.
3. Short ICBPL runs (the estimator, head mode, PROBE_EPOCHS epochs) on those features, one per
   seed in PROBE_SEEDS, each scored without labels (score below).
4. The candidate with the highest CRITERION wins (docs/BENCHMARKS.md#own-folders: chosen by
   measurement over folders none of the recipes was tuned on).

Choices are cached by what they depend on, so asking twice (the app's "choose for me", then the
run) costs nothing the second time.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from ..config import RunSpec
from ..datasets import load_dataset
from ..datasets.base import IndexedSubset, Unlabelled, channels_of
from ..errors import ConfigError
from ..features.cache import ids_digest
from ..store.result_cache import ResultCache

SAMPLE = 1000            # images scored per candidate (a few thousand-image folder: ~40 % of its extraction)
PROBE_VIEWS = 1          # augmented copies of the sample (pass 1 of the run's own)
PROBE_EPOCHS = 15
PROBE_HEAD = {"hidden_dim": 512, "n_heads": 1}      # the probe's head: one, the table's width (4 x cheaper)
PROBE_SEEDS = (0, 1)     # offsets from the run's seed
SMALL_SIDE = 96          # images up to this side go into a backbone at 96 px (docs/BENCHMARKS.md#feature-study)
HEAD_RECIPE = {"hidden_dim": 1024, "n_heads": 4}     # Fashion-MNIST's measured head recipe
CRITERION = "view_consistency"
CHOICE_VERSION = 1

# name -> the spec values it sets (head mode on the backbone's own features)
CANDIDATES: dict[str, dict] = {
    "mobilenet_v2": {"backbone": "mobilenet_v2"},
    "mobilenet_v2_mid": {"backbone": "mobilenet_v2_mid"},
    "efficientnet_lite0": {"backbone": "efficientnet_lite0"},
    # Tiny images of one size: the small MLP trained on the pixels (digits' recipe), its neighbours
    # mined in the best-scoring pretrained features above.
    "pixels": {"backbone": "scratch-mlp", "mode": "finetune", "hidden_dim": 1024, "n_heads": 1},
}
TINY_SIDE = 16           # the pixels candidate is scored for images of one size up to this side
CHOSEN = ("backbone", "image_size", "mode", "neighbours_from", "hidden_dim", "n_heads")   # what auto sets


@dataclass
class Choice:
    chosen: str
    values: dict                          # spec and train values the chosen candidate sets
    why: str
    criterion: str = CRITERION
    scores: dict = field(default_factory=dict)    # candidate -> {criterion: value, seconds}
    sample: int = 0
    images: int = 0
    seconds: float = 0.0
    given: list = field(default_factory=list)     # parameters the user set, which auto left alone

    def applied(self, spec: RunSpec) -> RunSpec:
        """`spec` with the chosen values wherever the user gave none."""
        data = spec.to_dict()
        for name, value in self.values.items():
            if name in self.given:
                continue
            if name in data["train"]:
                data["train"][name] = value
            else:
                data[name] = value
        return RunSpec.from_dict(data)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Choice":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def table(self) -> str:
        """One line per candidate, best first, as the command line prints it."""
        names = sorted(self.scores, key=lambda n: -self.scores[n].get(self.criterion, -1))
        keys = [k for k in SCORES if any(k in self.scores[n] for n in names)]
        lines = ["candidate            " + "  ".join(f"{k:>16}" for k in keys)]
        for n in names:
            mark = "*" if n == self.chosen else " "
            lines.append(f"{mark}{n:<20}" + "  ".join(f"{self.scores[n].get(k, float('nan')):>16.4f}" for k in keys))
        return "\n".join(lines)


SCORES = ("view_consistency", "stability", "silhouette", "balance", "loss", "view_neighbours")


CACHE = ResultCache("choices", Choice.from_dict)     # one entry per images and settings


def input_side(backbone, first_image) -> int | None:
    """Small images (up to SMALL_SIDE) at 96 px, as good as larger inputs on 28 px images at a
    fifth of 224 px's compute; larger ones at the backbone's own size."""
    native = backbone.input_size
    if native is not None and max(first_image.size) <= SMALL_SIDE:
        return min(native, SMALL_SIDE)
    return native


def choose(spec: RunSpec, given: set[str] | frozenset = frozenset(),
           progress: Callable[[str, int, int], None] | None = None, cache_dir=None) -> Choice:
    """The automatic recipe for `spec`'s images (see the module's docstring); `given` names the
    parameters the user set explicitly, which the choice keeps. `progress(what, done, total)`."""
    started = time.perf_counter()
    progress = progress or (lambda what, done, total: None)
    dataset = Unlabelled(load_dataset(spec.dataset, spec.data_root, spec.limit, spec.train.seed, spec.download))
    given = sorted(set(given) & set(CHOSEN))
    if "backbone" in given:
        return Choice(spec.backbone, {}, f"the backbone was given ({spec.backbone}): nothing left to choose",
                      images=len(dataset), given=given)
    k = spec.train.n_clusters
    if k > len(dataset):
        raise ConfigError(f"{k} clusters is more than the {len(dataset)} images; choose {len(dataset)} clusters or "
                          "fewer", setting="n_clusters")
    rng = np.random.default_rng(spec.train.seed)
    n = len(dataset)
    sample = dataset if n <= SAMPLE else IndexedSubset(dataset, np.sort(rng.choice(n, SAMPLE, replace=False)))
    candidates = [c for c in CANDIDATES if c != "pixels" or _tiny(sample)]
    key = _key(spec, given, candidates, dataset, sample)
    cached = CACHE.read(key, cache_dir)
    if cached is not None:
        return cached
    scores, taps = {}, {}
    for i, name in enumerate(candidates):
        progress(f"scoring {name} ({i + 1}/{len(candidates)})", i, len(candidates))
        t0 = time.perf_counter()
        if name == "pixels":
            tap = max(taps, key=lambda c: scores[c][CRITERION])
            features, views = _pixels(sample, spec.augment)
            neighbours = _neighbours(taps[tap], spec.train)
            scores[name] = {**score(features, views, k, spec.train, neighbours), "neighbours_from": tap}
        else:
            features, views = _features(spec, CANDIDATES[name]["backbone"], sample, progress, cache_dir, name)
            taps[name] = features
            scores[name] = score(features, views, k, spec.train)
        scores[name]["seconds"] = round(time.perf_counter() - t0, 2)
    progress("scored", len(candidates), len(candidates))
    best = max(candidates, key=lambda c: scores[c][CRITERION])
    values = candidate_values(best, dataset, scores[best].get("neighbours_from"))
    runner_up = sorted(candidates, key=lambda c: -scores[c][CRITERION])[1:2]
    why = (f"{best} has the highest {CRITERION.replace('_', ' ')} ({scores[best][CRITERION]:.3f}"
           + (f", against {scores[runner_up[0]][CRITERION]:.3f} for {runner_up[0]}" if runner_up else "")
           + f") on {len(sample):,} of the {n:,} images: the share of images whose augmented copy a short "
           "ICBPL run puts in the same cluster")
    choice = Choice(best, values, why, scores=scores, sample=len(sample), images=n,
                    seconds=round(time.perf_counter() - started, 2), given=given)
    CACHE.write(key, choice, cache_dir)
    return choice


def candidate_values(name: str, dataset, neighbours_from: str | None = None) -> dict:
    """The values candidate `name` sets for `dataset` (pixels: with neighbours from that candidate)."""
    from ..backbones import create_backbone

    if name == "pixels":
        return {**CANDIDATES[name], "neighbours_from": CANDIDATES[neighbours_from]["backbone"], "image_size": None}
    backbone_name = CANDIDATES[name]["backbone"]
    backbone = create_backbone(backbone_name, True, in_channels=channels_of(dataset.image(0)))
    return {**CANDIDATES[name], "mode": "head", "neighbours_from": "backbone",
            "image_size": input_side(backbone, dataset.image(0)), **HEAD_RECIPE}


def _tiny(sample) -> bool:
    first = sample.image(0).size
    return max(first) <= TINY_SIDE and all(sample.image(i).size == first for i in range(min(len(sample), 200)))


def _pixels(sample, augment: str) -> tuple[np.ndarray, np.ndarray]:
    """Centred pixels of the sample and of PROBE_VIEWS augmented copies (what the MLP would see)."""
    import torch

    from ..method.augment import get_augmentation

    images = sample.to_array()
    _, policy = get_augmentation(augment, images.shape[-1], images.shape[1])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    copies = [policy(x, torch.Generator().manual_seed(v)) for v in range(1, PROBE_VIEWS + 1)]
    flat = [c.reshape(len(c), -1).numpy() for c in (x, *copies)]
    mean = flat[0].mean(axis=0)
    return flat[0] - mean, np.stack([f - mean for f in flat[1:]])


def _neighbours(features: np.ndarray, train) -> np.ndarray:
    from ..method.knn import nearest_neighbours
    return nearest_neighbours(features, min(train.n_neighbours, len(features) - 1), "exact")[0]


def _features(spec: RunSpec, backbone_name: str, sample, progress, cache_dir, label: str):
    """The sample's features, clean and PROBE_VIEWS augmented copies, through the feature cache."""
    from ..backbones import create_backbone
    from .device import placement
    from .inputs import Features, Inputs

    backbone = create_backbone(backbone_name, True, in_channels=channels_of(sample.image(0)))
    side = input_side(backbone, sample.image(0))
    inputs = Inputs.prepare(sample, backbone, side, "head", spec.augment)
    # resolved as the run's will be (its precision, for one), so the run reads the same cache entries
    probe_spec = RunSpec.from_dict({**spec.to_dict(), "backbone": backbone_name, "image_size": side,
                                    "mode": "head", "neighbours_from": "backbone"}).resolved()

    def reporter(what: str):
        return lambda done, total: progress(f"{label}: {what}", done, total)
    place = placement(spec.train.device)
    features = Features(probe_spec, inputs, backbone, reporter, cache_dir, place.device)
    clean = np.asarray(features.backbone_pass(0), dtype=np.float32)
    views = np.stack([np.asarray(features.backbone_pass(v), dtype=np.float32) for v in range(1, PROBE_VIEWS + 1)])
    return clean, views


def score(features: np.ndarray, views: np.ndarray, k: int, train, neighbours: np.ndarray | None = None) -> dict:
    """Unsupervised scores of a feature set for ICBPL with K = k, from short runs over PROBE_SEEDS.

    view_consistency  share of (image, augmented copy) pairs the trained head puts in one cluster
    stability         adjusted Rand index between the partitions of two seeds
    silhouette        cosine silhouette of the latents under their clusters
    balance           entropy of the cluster sizes over log K (1: all equal)
    loss              minus the final ICBPL loss (higher is better, as for the others)
    view_neighbours   share of an image's 10 nearest neighbours (cosine) its augmented copy keeps
    used              share of the K clusters that hold at least one image
    """
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    from ..estimator import ICBPL

    partitions, results = [], []
    for offset in PROBE_SEEDS:
        model = ICBPL(n_clusters=k, epochs=PROBE_EPOCHS, random_state=train.seed + offset, device=train.device,
                      knn_backend=train.knn_backend, latent_dim=train.latent_dim, **PROBE_HEAD)
        model.fit(features, views=views, neighbours=neighbours)
        labels = model.labels_
        same = np.mean([np.mean(model.predict(v) == labels) for v in views])
        sizes = np.bincount(labels, minlength=k) / len(labels)
        entropy = -np.sum(sizes[sizes > 0] * np.log(sizes[sizes > 0])) / np.log(k)
        used = len(np.unique(labels))
        silhouette = silhouette_score(model.latents_, labels, metric="cosine") if 1 < used < len(labels) else -1.0
        results.append({"view_consistency": same, "silhouette": silhouette, "balance": entropy,
                        "loss": -model.history_[-1]["losses"]["total"], "used": used / k})
        partitions.append(labels)
    out = {name: float(np.mean([r[name] for r in results])) for name in results[0]}
    out["stability"] = float(adjusted_rand_score(partitions[0], partitions[1]))
    out["view_neighbours"] = view_neighbours(features, views[0])
    return out


def view_neighbours(features: np.ndarray, view: np.ndarray, k: int = 10) -> float:
    """Share of each row's k nearest neighbours (cosine) that its augmented copy's k nearest keep."""
    from ..method.knn import nearest_neighbours

    k = min(k, len(features) - 1)
    a = nearest_neighbours(features, k, "exact")[0]
    b = nearest_neighbours(view, k, "exact")[0]
    return float(np.mean([len(np.intersect1d(x, y, assume_unique=True)) / k for x, y in zip(a, b)]))


def _key(spec: RunSpec, given: list[str], candidates: list[str], dataset, sample) -> str:
    ids = ids_digest([dataset.item_id(i) for i in range(len(dataset))])
    parts = {"version": CHOICE_VERSION, "dataset": spec.dataset, "root": spec.data_root, "limit": spec.limit,
             "ids": ids, "sample": len(sample), "k": spec.train.n_clusters, "seed": spec.train.seed,
             "augment": spec.augment, "precision": spec.precision, "latent_dim": spec.train.latent_dim,
             "candidates": candidates, "criterion": CRITERION, "probe": [SAMPLE, PROBE_VIEWS, PROBE_EPOCHS,
                                                                         list(PROBE_SEEDS), PROBE_HEAD, HEAD_RECIPE],
             "given": {name: _given_value(spec, name) for name in given}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _given_value(spec: RunSpec, name: str):
    return getattr(spec.train, name) if hasattr(spec.train, name) else getattr(spec, name)
