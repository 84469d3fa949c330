"""Backbone feature extraction: images (in memory or read lazily) -> (N, D) float32 features.

Extraction keeps the cores busy: a background thread prepares the next batches
(uint8 -> float, augmentation, resizing, normalisation) while the backbone runs on the
current one (torch releases the GIL inside its ops); `extract_dataset` also decodes
the images of the next batch with a thread pool, so a dataset read lazily from disk
is never loaded into memory whole. Results do not depend on the overlap: one thread
prepares the batches in order, drawing augmentations from one seeded generator.

The forward pass runs channels-last (oneDNN's fast layout on CPUs: 1.45x for MobileNetV2
here, same numbers to 1e-5) and, with precision "bf16", under bfloat16 autocast. "auto"
picks bf16 on CPUs with native bf16 instructions (AVX512-BF16, AMX), where it runs
MobileNetV2 about 3x faster again with features within 0.4 % (cosine) of fp32;
elsewhere bf16 is emulated and slower, so fp32 (docs/BENCHMARKS.md#feature-extraction-speed).
"""
from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from .. import params
from ..errors import ParamError
from ..backbones.base import Backbone
from ..datasets.base import channels_of, decode, size_mismatch
from ..method.augment import Augment

PREFETCH = 2          # prepared batches waiting ahead of the forward pass
PREPARE_THREADS = 1   # torch threads of the background preparation (the forward pass keeps its own)
PREPARE_NICE = 19     # the preparing thread yields the cores to the forward pass (see _Background)
PRECISIONS = tuple(params.param("precision").options())


def native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (without them oneDNN emulates bf16, slower than fp32)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes: stay exact
        return False


def resolve_precision(precision: str, device: torch.device | None = None) -> str:
    """'auto' -> 'bf16' where the device runs it natively (a CUDA GPU with bf16, a CPU with bf16
    instructions), else 'fp32'; others are checked and returned."""
    if precision not in PRECISIONS:
        raise ParamError("precision", f"must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "auto":
        if device is not None and device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if native_bf16() else "fp32"
    return precision


# ----------------------------------------------------------------------------- extraction

class _Background:
    """Iterates `items` in a daemon thread, at most `depth` items ahead of the consumer.

    An exception in the thread is re-raised in the consumer; leaving the `with` block
    early (an error, Ctrl-C) stops the thread at its next item.

    The thread runs torch with one intra-op thread and at the lowest CPU priority: the
    forward pass's OpenMP team already fills the cores, and a second team (or an equal
    competitor) pre-empting one of its workers stalls the whole team at its barriers. Low
    priority, the preparation fills the gaps the forward pass leaves, and when it falls
    behind the forward pass waits for it and leaves the cores to it. Measured on 2 cores
    (mobilenet_v2, 96 px): two teams at equal priority ran at ~85 % of the bare forward
    pass, one thread at equal priority ~90 %, one thread at nice 19 ~98 %.
    """

    def __init__(self, items: Iterable, depth: int = PREFETCH) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(items,), daemon=True,
                                        name="icbpl-extract-prepare")

    def __enter__(self) -> "_Background":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        while self._thread.is_alive():       # unblock a put() waiting on a full queue
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, items: Iterable) -> None:
        if PREPARE_NICE:
            try:   # Linux: the niceness of this thread only (and of the threads it starts)
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PREPARE_NICE)
            except (AttributeError, OSError):
                pass
        try:
            for item in items:
                if not self._put(("item", item)):
                    return
            self._put(("done", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put(("error", exc))
        finally:                      # a generator's own clean-up (a decoding pool) runs here, now
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Iterator:
        while True:
            kind, item = self._queue.get()
            if kind == "item":
                yield item
            elif kind == "done":
                return
            else:
                raise item


def _prepared(backbone: Backbone, batches: Iterable[tuple[int, np.ndarray]], augment: Augment | None,
              seed: int, size: int | None, threads: int | None = None,
              restore: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """uint8 (B, H, W, C) batches -> the backbone's normalised input, in order, one generator.

    threads: torch intra-op threads for the preparation, set in the thread that runs it (OpenMP
    and oneDNN keep them per thread) and restored to `restore` afterwards.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            for start, batch in batches:
                x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div_(255.0)
                if augment is not None:
                    x = augment(x, g)
                yield start, backbone.prepare(x, size).contiguous(memory_format=torch.channels_last)
        finally:
            if threads is not None:
                torch.set_num_threads(restore or torch.get_num_threads())


def _forward_all(backbone: Backbone, batches: Iterable[tuple[int, np.ndarray]], n: int,
                 augment: Augment | None, seed: int, size: int | None,
                 progress: Callable[[int, int], None] | None, prefetch: int, precision: str) -> np.ndarray:
    bf16 = resolve_precision(precision) == "bf16"
    backbone.eval().to(memory_format=torch.channels_last)
    out = np.empty((n, backbone.feature_dim), dtype=np.float32)
    # The caller's thread count, read here in the caller's thread, is what the preparing thread restores.
    prepared = _prepared(backbone, batches, augment, seed, size, PREPARE_THREADS if prefetch > 0 else None,
                         torch.get_num_threads())
    device = next(backbone.parameters(), torch.empty(0)).device

    def consume(items: Iterable[tuple[int, torch.Tensor]]) -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            for start, x in items:
                if device.type != "cpu":
                    x = x.to(device, non_blocking=True)
                out[start:start + len(x)] = backbone(x).float().cpu().numpy()
                if progress is not None:
                    progress(start + len(x), n)
    if prefetch > 0:
        with _Background(prepared, prefetch) as items:
            consume(items)
    else:
        consume(prepared)
    return out


def extract(backbone: Backbone, images: np.ndarray, augment: Augment | None = None,
            seed: int = 0, size: int | None = None, batch_size: int = 256,
            progress: Callable[[int, int], None] | None = None, prefetch: int = PREFETCH,
            precision: str = "fp32") -> np.ndarray:
    """Features (N, D) float32 of uint8 images (N, H, W, C), optionally of augmented copies.

    prefetch: batches prepared ahead in a background thread (0: prepare in line, no thread).
    precision: "fp32", "bf16" (bfloat16 autocast) or "auto" (see the module's docstring).
    """
    n = len(images)
    batches = ((start, images[start:start + batch_size]) for start in range(0, n, batch_size))
    return _forward_all(backbone, batches, n, augment, seed, size, progress, prefetch, precision)


def _dataset_batches(dataset, size: int | None, batch_size: int,
                     workers: int) -> Iterator[tuple[int, np.ndarray]]:
    """uint8 batches decoded from `dataset.image(i)` by a thread pool, one batch ahead.

    Same conversion as ImageDataset.to_array: L or RGB as the first image is, resized
    with PIL's bilinear filter when `size` is given; differing sizes without `size` fail.
    """
    n = len(dataset)
    if n == 0:
        return
    channels = channels_of(dataset.image(0))

    def load(index: int) -> np.ndarray:
        return decode(dataset.image(index), channels, size)

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="icbpl-decode")
    try:
        def submit(start: int):
            return [pool.submit(load, i) for i in range(start, min(start + batch_size, n))]
        pending, shape = submit(0), None
        for start in range(0, n, batch_size):
            ahead = submit(start + batch_size) if start + batch_size < n else []
            arrays = [future.result() for future in pending]
            for offset, arr in enumerate(arrays):
                shape = shape or arr.shape
                if arr.shape != shape:
                    raise size_mismatch(dataset.item_id(start + offset), arr.shape, shape)
            yield start, np.stack(arrays)
            pending = ahead
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def extract_dataset(backbone: Backbone, dataset, size: int | None = None, augment: Augment | None = None,
                    seed: int = 0, batch_size: int = 256, progress: Callable[[int, int], None] | None = None,
                    workers: int | None = None, prefetch: int = PREFETCH,
                    input_size: int | None = None, precision: str = "fp32") -> np.ndarray:
    """Features (N, D) float32 of an ImageDataset read lazily, image by image.

    Gives the same numbers as extract(backbone, dataset.to_array(size), augment, seed, size),
    without holding every image in memory: `workers` threads decode the next batch while
    the current one is prepared and run through the backbone. `size` resizes the decoded
    images (PIL, as to_array does); `input_size` is the backbone's input size (default:
    `size`, else the backbone's own).
    """
    batches = _dataset_batches(dataset, size, batch_size, workers or default_workers())
    return _forward_all(backbone, batches, len(dataset), augment, seed, input_size or size, progress, prefetch,
                        precision)
