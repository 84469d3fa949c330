"""A whole run: data -> backbone -> (features) -> training -> latents, assignments, metrics.

`run(spec, run)` executes a resolved RunSpec (config.py) inside a run folder (store/runs.py),
writing events as it goes (events.py) and a checkpoint every epoch; `resume=True` continues
from the last checkpoint of a stopped run, to exactly the result an uninterrupted run has.

Every stage runs on the run's device (device.py). Under torchrun every process executes the
same pipeline (distributed.py): extraction is sharded between them and merged into one cache
entry, neighbours are mined once and shared, and only rank 0 holds the run's lock and writes
its status, events, checkpoints and results.
"""
from __future__ import annotations

import re
import signal
import threading
import time
from typing import Callable

import numpy as np
import torch

from .. import events as ev
from .. import params
from ..backbones import create_backbone
from ..config import RunSpec
from ..datasets import load_dataset
from ..datasets.base import channels_of
from ..errors import ConfigError, DatasetError, RunError
from ..method.model import Encoder, MultiHead
from ..method.knn import choose_backend, nearest_neighbours
from ..method.pedcc import make_pedcc
from ..store import atomic
from ..store.clock import iso
from ..store.runs import Run
from . import corrections, distributed
from .device import Placement, placement
from .distributed import World
from .inputs import Features, Inputs, check_finite
from .results import write_results
from .sources import FeatureSource, ImageSource
from .trainer import StopRequested, Trainer

PROGRESS_SECONDS = 1.0     # extraction progress events at most this often
CHECKPOINT, PREVIOUS_CHECKPOINT = "checkpoint.pt", "checkpoint.prev.pt"   # the last two epochs


class StopFlag:
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
    """Execute `spec` in `run`; returns metrics.json's content ({} on ranks other than 0). The
    outcome is recorded in the run's status and events whatever happens (finished, failed with
    the reason, cancelled)."""
    place = placement(spec.train.device)
    world = distributed.init_world(place.device)
    if not world.main:
        stop = StopFlag()
        stop.install()
        _train(spec, run, resume, lambda event: None, stop, cache_dir, place, world)
        return {}
    with run.training_lock():
        return _run_locked(spec, run, resume, on_event, cache_dir, place, world)


def _run_locked(spec: RunSpec, run: Run, resume: bool, on_event, cache_dir, place: Placement,
                world: World) -> dict:
    stop = StopFlag()
    stop.install()

    def emit(event: dict) -> None:
        run.log_event(event)
        if on_event is not None:
            on_event(event)

    started = time.time()
    run.set_status("running", started_at=run.status().get("started_at") or iso(started))
    emit({"type": ev.START, "resume": resume, **place.describe(), **world.describe()})
    try:
        metrics = _train(spec, run, resume, emit, stop, cache_dir, place, world)
    except StopRequested as exc:
        run.set_status("cancelled", error=f"{exc}; resume to continue from the last epoch")
        emit({"type": ev.CANCELLED, "message": str(exc)})
        raise
    except Exception as exc:
        setting = getattr(exc, "setting", None)
        message = str(exc)
        if world.distributed and _lost_contact(exc):
            cause = re.search(r"(Connection[^.;\n]*|[^.;\n]*timed out[^.;\n]*)", message)
            message = ("another training process ended or lost contact with this one"
                       + (f" ({cause.group(1).strip()})" if cause else "") + "; resume the run to continue from its "
                       "last epoch")
        run.set_status("failed", error=message, error_type=type(exc).__name__, setting=setting)
        emit({"type": ev.ERROR, "message": message, "error_type": type(exc).__name__, "setting": setting})
        if message != str(exc):
            raise RunError(message) from exc
        raise
    run.set_status("finished", finished_at=iso(), seconds=round(time.time() - started, 2))
    emit({"type": ev.DONE, "metrics": {k: metrics.get(k) for k in ("acc", "nmi", "ari", "n_clusters_used")}})
    return metrics


def _lost_contact(exc: Exception) -> bool:
    """A collective that failed because another process died (gloo: the connection closed)."""
    text = str(exc)
    return type(exc).__name__ in ("DistBackendError", "DistNetworkError") or (
        isinstance(exc, RuntimeError) and any(word in text for word in ("Connection", "closed", "peer")))


def _train(spec: RunSpec, run: Run, resume: bool, emit, stop: StopFlag, cache_dir, place: Placement,
           world: World) -> dict:
    cfg = spec.train
    cfg.validate()
    dataset = _open_dataset(spec, emit)
    torch.manual_seed(cfg.seed)
    backbone = create_backbone(spec.backbone, spec.pretrained, in_channels=channels_of(dataset.image(0)),
                               weights=spec.weights)
    inputs = Inputs.prepare(dataset, backbone, spec.image_size, spec.mode, spec.augment)
    if not inputs.streamed:            # every image is decoded now: leave out those that failed
        inputs = _without_unreadable(inputs, inputs.dataset.unreadable(), emit)
    emit({"type": ev.DATA, "n_images": len(inputs.dataset), "shape": inputs.shape, "input_size": inputs.side,
          "labels": dataset.has_labels, "backbone": spec.backbone, "backbone_info": _describe(backbone),
          "mode": spec.mode, "augment": inputs.augment_name, "streamed": inputs.streamed})
    features = Features(spec, inputs, backbone, _progress(emit, stop), cache_dir, place.device, world)
    model, source = _model_and_source(spec, backbone, inputs, features, place)
    if features.dropped:               # streamed images are decoded by the first extraction pass
        inputs = _without_unreadable(inputs, features.dropped, emit)
    dataset = inputs.dataset
    _check_size(len(dataset), cfg.n_clusters)
    guidance = corrections.read(run)
    centroids = make_pedcc(cfg.n_clusters, cfg.latent_dim, cfg.seed) if guidance is None else \
        corrections.centroids(guidance, cfg)
    rows = features.neighbour_rows()
    k = min(cfg.n_neighbours, len(dataset) - 1)
    neighbours = distributed.broadcast(
        nearest_neighbours(rows, k, cfg.knn_backend, place.device)[0] if world.main else None, world)
    targets = None if guidance is None else _guidance_targets(guidance, dataset, model, cfg, emit, resume)
    trainer = Trainer(model, source, centroids, neighbours, cfg, labels=dataset.labels, on_event=emit,
                      place=place, world=world, targets=targets)
    stored = spec.to_dict()
    if resume:
        _resume(trainer, run, stored, emit)
    if world.main:     # where this attempt runs, once the checkpoint has been accepted
        atomic.write_json(run.file("config.json"), {**run.config, "runtime": {**place.describe(), **world.describe()}})

    def save_checkpoint(t: Trainer) -> None:
        if not world.main:
            return
        atomic.torch_save(run.file(CHECKPOINT), {"spec": stored, "trainer": t.state_dict()},
                          keep_previous=run.file(PREVIOUS_CHECKPOINT))
        run.set_status("running", epoch=t.epoch, epochs=cfg.epochs)

    trainer.fit(on_epoch_end=save_checkpoint, should_stop=lambda: stop.set)
    if not world.main:
        return {}
    metrics = write_results(run, trainer, dataset, centroids, model, source, spec)
    metrics.update({**place.describe(), **world.describe(),
                    "knn_backend": choose_backend(len(dataset), cfg.knn_backend)})
    atomic.write_json(run.file("metrics.json"), metrics)
    return metrics


def _open_dataset(spec: RunSpec, emit):
    dataset = load_dataset(spec.dataset, spec.data_root, spec.limit, spec.train.seed, spec.download)
    if dataset.skipped:
        emit({"type": ev.SKIPPED, "count": len(dataset.skipped),
              "files": [f"{p}: {why}" for p, why in dataset.skipped[:50]]})
    _check_size(len(dataset), spec.train.n_clusters)
    return dataset


def _guidance_targets(guidance, dataset, model, cfg, emit, resume: bool) -> np.ndarray:
    """The trainer's targets when the run retrains from a person's corrections (corrections.py);
    with warm_start, the model starts as the curated run's (a resume restores its own instead)."""
    targets = corrections.targets_for(guidance, dataset, cfg.n_clusters)
    if cfg.warm_start and not resume:
        corrections.load_model(guidance, model)
    emit({"type": ev.GUIDED, "source_run": guidance.source_run, "images": int((targets >= 0).sum()),
          "guide": cfg.guide, "w_guide": cfg.w_guide, "warm_start": cfg.warm_start})
    return targets


def _check_size(n: int, k: int) -> None:
    if n < 2:
        raise DatasetError(f"the dataset has {n} readable image(s); clustering needs at least 2", setting="data_root")
    if k > n:
        raise ConfigError(f"{k} clusters is more than the {n} images; choose {n} clusters or fewer",
                          setting="n_clusters")


def _describe(backbone) -> dict:
    """The backbone as the run records it; a checkpoint's load report by counts of tensors."""
    info = backbone.describe()
    report = info.pop("load_report", None)
    if report:
        info["load_report"] = {k: len(v) if isinstance(v, list) else v for k, v in report.items()}
    return info


def _without_unreadable(inputs: Inputs, unreadable: list[int], emit) -> Inputs:
    if not unreadable:
        return inputs
    dataset = inputs.dataset
    emit({"type": ev.SKIPPED, "count": len(unreadable),
          "files": [f"{dataset.item_id(i)}: unreadable when decoded, left out" for i in unreadable[:50]]})
    return inputs.without(unreadable)


def _progress(emit, stop: StopFlag) -> Callable[[str], Callable[[int, int], None]]:
    """Extraction progress reporters: an event at most every PROGRESS_SECONDS, and a stop between batches."""
    def reporter(what: str) -> Callable[[int, int], None]:
        last = [0.0]

        def report(done: int, total: int) -> None:
            if stop.set:    # Cancel / SIGTERM during extraction: passes already cached are kept
                raise StopRequested(f"stopped while extracting {what} ({done:,}/{total:,})")
            if time.perf_counter() - last[0] > PROGRESS_SECONDS or done == total:
                last[0] = time.perf_counter()
                emit({"type": ev.EXTRACT, "what": what, "done": done, "total": total})
        return report
    return reporter


def _model_and_source(spec: RunSpec, backbone, inputs: Inputs, features: Features, place: Placement):
    """Head mode: heads on the cached features of the images and their views. Finetune: the
    backbone's trainable blocks and the heads, on the images."""
    cfg = spec.train
    if spec.mode == "head":
        if not backbone.pretrained:
            raise ConfigError("head-only training needs a pretrained backbone; train on the images "
                              "(mode finetune) instead", setting="mode")
        rows = np.asarray(features.backbone_pass(0))
        check_finite(rows)
        views = [features.backbone_pass(v) for v in range(1, spec.n_views + 1)]
        source = FeatureSource(rows, views or None, noise=0.1)
        model = MultiHead(rows.shape[1], cfg.hidden_dim, cfg.latent_dim, cfg.n_heads)
        model.set_input_stats(torch.from_numpy(rows))
        return model, source
    backbone.set_trainable()
    model = Encoder(backbone, MultiHead(backbone.feature_dim, cfg.hidden_dim, cfg.latent_dim, cfg.n_heads))
    return model, ImageSource(inputs.images, backbone, inputs.augment, inputs.side,
                              num_workers=loader_workers(spec.num_workers, place.device))


def loader_workers(given: int | None, device) -> int:
    """DataLoader workers for image training: as given; by default none on the CPU (its cores
    already run the model) and up to 8 per GPU process, by the cores."""
    if given is not None:
        return given
    if device.type == "cpu":
        return 0
    import os
    per_process = (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(8, per_process - 1))


def _resume(trainer: Trainer, run: Run, stored: dict, emit) -> None:
    """Continue from the last checkpoint, or from the one before when the last cannot be read;
    a run that had trained epochs never restarts silently from the beginning."""
    problems = []
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        path = run.file(name)
        if not path.is_file():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - truncated or damaged: try the one before
            problems.append(f"{name} cannot be read ({type(exc).__name__})")
            continue
        _restore(trainer, state, stored)
        emit({"type": ev.RESUMED, "epoch": trainer.epoch, **({"note": "; ".join(problems)} if problems else {})})
        return
    reached = int(run.status().get("epoch") or 0)
    if problems or reached:
        raise RunError(f"cannot resume run {run.id}: it had trained {reached} epoch(s) but "
                       + ("; ".join(problems) if problems else "its checkpoints are gone")
                       + "; start a new run with the same settings")


def _restore(trainer: Trainer, state: dict, stored: dict) -> None:
    """Load a checkpoint's state, after checking it was saved by this very configuration."""
    saved = _what_it_computes(RunSpec.from_dict(state.get("spec") or {}).to_dict())   # older ones lack newer fields
    stored = _what_it_computes(stored)
    if saved != stored:
        changed = sorted(_diff(saved, stored))
        raise ConfigError(f"cannot resume: the configuration differs from the checkpoint's "
                          f"({', '.join(changed)}); start a new run instead")
    trainer.load_state_dict(state["trainer"])


def _what_it_computes(spec: dict) -> dict:
    """A spec less where and how it runs (device, workers, ...): a run resumes anywhere."""
    anywhere = {p.name for p in params.PARAMS if p.runs_anywhere}
    return {k: _what_it_computes(v) if isinstance(v, dict) else v for k, v in spec.items() if k not in anywhere}


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} -> {vb!r}")
    return out
