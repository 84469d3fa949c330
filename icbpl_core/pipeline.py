"""A whole run: data -> backbone -> (features) -> training -> latents, assignments, metrics.

`RunSpec` holds everything a run depends on; `run(spec, run_dir)` executes it inside
a run folder (see runs.py), writing events as it goes and a checkpoint every epoch, and
`resume=True` continues from the last checkpoint of a stopped run.
"""
from __future__ import annotations

import signal
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Callable

import numpy as np
import torch

from . import atomic
from .augment import get_augmentation
from .backbones import create_backbone
from .config import TrainConfig
from .datasets import ArrayDataset, DatasetError, ImageDataset, get_entry, load_dataset
from .features import cache_key, cached_features, extract, extract_dataset, ids_digest, resolve_precision
from .metrics import cluster_stats, evaluate, matched_classes
from .model import Encoder, MultiHead
from .neighbours import cosine_topk
from .pedcc import make_pedcc
from .runs import Run
from .sources import FeatureSource, ImageSource
from .trainer import StopRequested, Trainer

MODES = ("auto", "head", "finetune")


class ConfigError(ValueError):
    """A run specification that cannot work; the message says what to change."""


@dataclass
class RunSpec:
    dataset: str = "digits"
    data_root: str | None = None
    download: bool = False
    limit: int | None = None
    backbone: str | None = None      # None: the dataset's default backbone
    pretrained: bool = True
    weights: str | None = None       # a local weights file overriding the backbone's default
    mode: str = "auto"               # head: head-only on cached features; finetune: on images
    image_size: int | None = None    # None: the backbone's input size
    augment: str = "auto"
    n_views: int = 4                 # augmented views per image (head mode: their features are cached)
    average_views: bool = True       # predict from the mean latent over the image and its views
    precision: str = "auto"          # feature extraction: fp32, bf16, auto (bf16 where the CPU has it)
    neighbours_from: str = "auto"    # features the kNN loss's neighbours are mined in (neighbour_sources())
    train: TrainConfig = field(default_factory=TrainConfig)

    def resolved(self) -> "RunSpec":
        """A copy with defaults filled in (backbone, mode), as stored in config.json."""
        spec = RunSpec(**{f.name: getattr(self, f.name) for f in fields(self)})
        spec.train = TrainConfig.from_dict(self.train.to_dict())
        if spec.backbone is None:
            spec.backbone = get_entry(spec.dataset).default_backbone
        pretrained = spec.pretrained and spec.backbone not in SCRATCH_BACKBONES
        if spec.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {spec.mode!r}")
        if spec.mode == "auto":
            spec.mode = "head" if pretrained else "finetune"
        try:
            spec.precision = resolve_precision(spec.precision)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if spec.image_size is None and pretrained:
            spec.image_size = get_entry(spec.dataset).image_size
        spec.neighbours_from = _neighbour_source(spec.neighbours_from, spec.dataset, pretrained)
        return spec

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunSpec":
        known = {f.name for f in fields(cls)} - {"train"}
        data = {"precision": "fp32", **data}   # configs from before the option were extracted in fp32
        if "neighbours_from" not in data and data.get("backbone"):   # resolved before the option existed
            data["neighbours_from"] = "pixels" if data["backbone"] in SCRATCH_BACKBONES else "backbone"
        spec = cls(**{k: v for k, v in data.items() if k in known})
        spec.train = TrainConfig.from_dict(data.get("train", {}))
        return spec


SCRATCH_BACKBONES = ("scratch", "scratch-mlp")


def neighbour_sources() -> list[str]:
    """What neighbours_from takes: auto, backbone, pixels, or a pretrained backbone's name
    (timm:<name> too)."""
    from .backbones import BACKBONES

    return ["auto", "backbone", "pixels"] + sorted(n for n, e in BACKBONES.items() if e.has_pretrained)


def _neighbour_source(source: str, dataset: str, pretrained: bool) -> str:
    """Resolve neighbours_from. auto: a pretrained encoder's own features; for a scratch encoder,
    the dataset's recipe (digits: mobilenet_v2_mid features, purer neighbours than the pixels),
    else the centred pixels."""
    if source == "auto":
        return "backbone" if pretrained else get_entry(dataset).scratch_neighbours
    if source == "backbone" and not pretrained:
        raise ConfigError("a backbone without pretrained weights has no features to mine neighbours in; "
                          "mine them in the pixels or in a pretrained backbone's features instead")
    choices = neighbour_sources()
    if source not in choices and not source.startswith("timm:"):
        raise ConfigError(f"cannot mine neighbours in {source!r}; choose one of: {', '.join(choices[1:])}")
    return source


class _StopFlag:
    """Set by SIGTERM/SIGINT (the app's Cancel, Ctrl-C): training stops after the current step."""

    def __init__(self) -> None:
        self.set = False

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.set = True


def run(spec: RunSpec, run: Run, resume: bool = False,
        on_event: Callable[[dict], None] | None = None, cache_dir=None) -> dict:
    """Execute `spec` in `run`; returns metrics.json's content."""
    stop = _StopFlag()
    stop.install()

    def emit(event: dict) -> None:
        run.log_event(event)
        if on_event is not None:
            on_event(event)

    started = time.time()
    run.set_status("running", started_at=run.status().get("started_at") or _iso(started))
    emit({"type": "start", "resume": resume})
    try:
        metrics = _execute(spec, run, resume, emit, stop, cache_dir)
    except StopRequested as exc:
        run.set_status("cancelled", error=f"{exc}; resume to continue from the last epoch")
        emit({"type": "cancelled", "message": str(exc)})
        raise
    except Exception as exc:
        run.set_status("failed", error=str(exc), error_type=type(exc).__name__)
        emit({"type": "error", "message": str(exc), "error_type": type(exc).__name__})
        raise
    run.set_status("finished", finished_at=_iso(time.time()), seconds=round(time.time() - started, 2))
    emit({"type": "done", "metrics": {k: metrics.get(k) for k in ("acc", "nmi", "ari", "n_clusters_used")}})
    return metrics


def _execute(spec: RunSpec, run: Run, resume: bool, emit, stop: _StopFlag, cache_dir) -> dict:
    cfg = spec.train
    cfg.validate()
    dataset = load_dataset(spec.dataset, spec.data_root, spec.limit, cfg.seed, spec.download)
    if dataset.skipped:
        emit({"type": "skipped", "count": len(dataset.skipped),
              "files": [f"{p}: {why}" for p, why in dataset.skipped[:50]]})
    n = len(dataset)
    if n < 2:
        raise DatasetError(f"dataset {spec.dataset!r} has {n} image(s); clustering needs at least 2")
    if cfg.n_clusters > n:
        raise ConfigError(f"{cfg.n_clusters} clusters is more than the {n} images; use --clusters {n} or fewer")
    torch.manual_seed(cfg.seed)
    first = dataset.image(0)
    channels = 1 if first.mode == "L" else 3      # ImageDataset.to_array's rule
    backbone = create_backbone(spec.backbone, spec.pretrained, in_channels=channels, weights=spec.weights)
    side = spec.image_size or _input_side(backbone, first, channels)
    # Head-only training needs the images only to extract features: a lazily read dataset that
    # would not fit comfortably in memory (ImageNet subsets at 224 px) is streamed instead.
    streamed = (spec.mode == "head" and not isinstance(dataset, ArrayDataset)
                and n * (side or max(first.size)) ** 2 * channels > IN_MEMORY_BYTES)
    images = None if streamed else _image_array(dataset, side, first.size)
    shape = list(images.shape[1:]) if images is not None else [side, side, channels]
    aug_name, augment = get_augmentation(spec.augment, channels, shape[0])
    k = min(cfg.n_neighbors, n - 1)
    emit({"type": "data", "n_images": n, "shape": shape, "input_size": side, "labels": dataset.has_labels,
          "backbone": spec.backbone, "mode": spec.mode, "augment": aug_name, "streamed": streamed})

    def progress(what: str) -> Callable[[int, int], None]:
        last = [0.0]

        def report(done: int, total: int) -> None:
            if stop.set:    # Cancel / SIGTERM during extraction: passes already cached are kept
                raise StopRequested(f"stopped while extracting {what} ({done:,}/{total:,})")
            if time.perf_counter() - last[0] > 1.0 or done == total:
                last[0] = time.perf_counter()
                emit({"type": "extract", "what": what, "done": done, "total": total})
        return report

    key_parts = dict(dataset=spec.dataset, root=spec.data_root, ids=ids_digest(
        [dataset.item_id(i) for i in range(n)]), backbone=spec.backbone, weights=backbone.weights_id,
        size=side, augment=aug_name, precision=spec.precision)

    def features_of(net, net_side: int | None, parts: dict, view: int, what: str) -> np.ndarray:
        """`net`'s features of the clean images (view 0) or of augmented copy `view`, each pass
        cached on its own, so an interrupted extraction keeps the passes it finished."""
        def compute() -> dict[str, np.ndarray]:
            copy = augment if view else None
            if images is None:
                return {"features": extract_dataset(net, dataset, net_side, copy, seed=view,
                                                    progress=progress(what), precision=spec.precision)}
            return {"features": extract(net, images, copy, seed=view, size=net_side,
                                        progress=progress(what), precision=spec.precision)}
        return cached_features(cache_key(**parts, view=view, streamed=streamed), compute, cache_dir)["features"]

    def extracted(view: int) -> np.ndarray:
        """The backbone's features. Views are data, not training randomness: copy v is drawn with
        seed v whatever the run's seed, so runs over seeds share one extraction (the cache key
        has no seed)."""
        return features_of(backbone, side, key_parts, view, "features" if view == 0 else f"view {view}/{spec.n_views}")

    def neighbour_features() -> np.ndarray:
        """The rows the neighbours are mined in (cosine), by spec.neighbours_from."""
        if spec.neighbours_from == "backbone":
            return np.asarray(extracted(0))
        if spec.neighbours_from == "pixels":
            if images is None:
                raise ConfigError("these images are streamed, not held in memory, so neighbours cannot be "
                                  "mined in their pixels; mine them in the backbone's features instead")
            pixels = images.reshape(n, -1).astype(np.float32)
            return pixels - pixels.mean(axis=0)
        other = create_backbone(spec.neighbours_from, True, in_channels=channels)
        other_side = get_entry(spec.dataset).image_size or _input_side(other, first, channels)
        parts = {**key_parts, "backbone": spec.neighbours_from, "weights": other.weights_id, "size": other_side}
        return np.asarray(features_of(other, other_side, parts, 0, "neighbour features"))

    if spec.mode == "head":
        if not backbone.pretrained:
            raise ConfigError("head-only training needs a pretrained backbone; use --mode finetune "
                              "to train a scratch encoder on the images")
        features = np.asarray(extracted(0))
        _check_finite(features)
        views = [extracted(v) for v in range(1, spec.n_views + 1)]
        source = FeatureSource(features, views or None, noise=0.1)
        model: torch.nn.Module = MultiHead(features.shape[1], cfg.hidden_dim, cfg.latent_dim, cfg.n_heads)
        model.set_input_stats(torch.from_numpy(features))
    else:
        backbone.set_trainable()
        model = Encoder(backbone, MultiHead(backbone.feature_dim, cfg.hidden_dim, cfg.latent_dim, cfg.n_heads))
        source = ImageSource(images, backbone, augment, side)

    centroids = make_pedcc(cfg.n_clusters, cfg.latent_dim, cfg.seed)
    neighbours = cosine_topk(neighbour_features(), k)[0]
    trainer = Trainer(model, source, centroids, neighbours, cfg, labels=dataset.labels, on_event=emit)
    checkpoint = run.file("checkpoint.pt")
    stored = spec.to_dict()
    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        saved = RunSpec.from_dict(state.get("spec") or {}).to_dict()   # older checkpoints lack newer fields
        if saved != stored:
            changed = sorted(_diff(saved, stored))
            raise ConfigError(f"cannot resume: the configuration differs from the checkpoint's "
                              f"({', '.join(changed)}); start a new run instead")
        trainer.load_state_dict(state["trainer"])
        emit({"type": "resumed", "epoch": trainer.epoch})

    def save_checkpoint(t: Trainer) -> None:
        atomic.torch_save(checkpoint, {"spec": stored, "trainer": t.state_dict()})
        run.set_status("running", epoch=t.epoch, epochs=cfg.epochs)

    trainer.fit(on_epoch_end=save_checkpoint, should_stop=lambda: stop.set)
    return _write_results(run, trainer, dataset, centroids, model, source, spec)


def _write_results(run: Run, trainer: Trainer, dataset: ImageDataset, centroids: np.ndarray,
                   model, source, spec: RunSpec) -> dict:
    import pandas as pd

    cfg = spec.train
    views = [source.fixed_view(v) for v in range(spec.n_views)] if spec.average_views else []
    z = trainer.latents(views)
    sims = (z @ torch.from_numpy(centroids).T).numpy()
    top2 = np.sort(sims, axis=1)[:, -2:]
    clusters = sims.argmax(axis=1)
    confidence, margin = top2[:, 1], top2[:, 1] - top2[:, 0]
    z = z.numpy()
    _check_finite(z)
    atomic.save_npy(run.file("latents.npy"), z.astype(np.float32))
    atomic.save_npy(run.file("pedcc.npy"), centroids)
    atomic.save_npy(run.file("features.npy"), _backbone_features(model, source).astype(np.float16))
    table = pd.DataFrame({"index": np.arange(len(dataset)),
                          "id": [dataset.item_id(i) for i in range(len(dataset))],
                          "cluster": clusters, "confidence": confidence.round(6), "margin": margin.round(6)})
    metrics: dict = {"n_clusters": cfg.n_clusters, "n_samples": len(dataset),
                     "n_clusters_used": int(np.unique(clusters).size),
                     "mean_confidence": float(confidence.mean()), "epochs": trainer.epoch,
                     "views_averaged": len(views),
                     "threads": torch.get_num_threads()}   # float sums, so the last digits, depend on it
    labels = dataset.labels
    if labels is not None:
        metrics.update(evaluate(labels, clusters, cfg.n_clusters))
        matched = matched_classes(labels, clusters, cfg.n_clusters)
        table["label"] = labels
        table["matched_class"] = matched[clusters]
        metrics["matched_classes"] = matched.tolist()
    metrics["class_names"] = dataset.class_names
    metrics["clusters"] = cluster_stats(clusters, confidence, cfg.n_clusters, labels)
    atomic.write_text(run.file("assignments.csv"), table.to_csv(index=False))
    atomic.write_json(run.file("metrics.json"), metrics)
    return metrics


@torch.no_grad()
def _backbone_features(model, source) -> np.ndarray:
    """Features in the backbone's space: cached ones, or the trained backbone's on the images."""
    if isinstance(source, FeatureSource):
        return source.features.numpy()
    model.eval()
    n = len(source)
    return torch.cat([model.backbone(source.anchors(torch.arange(s, min(s + 1024, n))))
                      for s in range(0, n, 1024)]).numpy()


SMALL_GREY_SIDE = 32     # grey images this small (MNIST-like) ...
SMALL_GREY_INPUT = 96    # ... go into a pretrained backbone at 96 px: as good as 128 px, 5.4x cheaper than 224


def _input_side(backbone, first_image, channels: int) -> int | None:
    """The backbone input side when neither the user nor the dataset's registry entry chose one.

    Small grey images (a folder of MNIST-like PNGs) get the Fashion-MNIST recipe's 96 px rather
    than the backbone's 224 (docs/BENCHMARKS.md, feature study); everything else the backbone's own.
    """
    native = backbone.input_size
    if (backbone.pretrained and native is not None and channels == 1
            and max(first_image.size) <= SMALL_GREY_SIDE):
        return min(native, SMALL_GREY_INPUT)
    return native


IN_MEMORY_BYTES = 2 << 30   # lazily read datasets above this (as uint8 arrays) stream in head mode
MIXED_SIZE_SIDE = 64     # images of mixed sizes for a backbone without an input size (scratch)


def _image_array(dataset: ImageDataset, side: int | None, first_size: tuple[int, int]) -> np.ndarray:
    """uint8 (N, H, W, C): at the images' own size when they share one and it is no larger than
    `side` (the backbone resizes each batch: 28 px Fashion-MNIST stays 55 MB, not 645 MB at
    96 px), else every image resized to side x side (mixed sizes, big photos)."""
    if side is None or max(first_size) <= side:
        try:
            return dataset.to_array()
        except ValueError:      # mixed sizes
            pass
    return dataset.to_array(side or MIXED_SIZE_SIDE)


def _check_finite(array: np.ndarray) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(f"{len(rows)} feature rows contain NaN or inf (first: {rows[:5].tolist()}); "
                         "check the input images or the backbone weights")


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} -> {vb!r}")
    return out


def _iso(t: float) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")
