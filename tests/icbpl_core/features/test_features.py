"""Feature extraction (overlapped preparation, lazy datasets) and the on-disk feature cache."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from icbpl_core.features import cache as feature_cache, extract as features
from icbpl_core.errors import CacheError
from icbpl_core.method.augment import get_augmentation
from icbpl_core.backbones import create_backbone
from icbpl_core.backbones.base import Backbone
from icbpl_core.datasets.base import ArrayDataset
from icbpl_core.datasets.images import FileDataset
from icbpl_core.features.cache import cache_key, cached_features, ids_digest
from icbpl_core.features.extract import extract, extract_dataset

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return create_backbone("scratch", in_channels=1)


@pytest.fixture(scope="module")
def images():
    return RNG.integers(0, 256, (70, 12, 12, 1), dtype=np.uint8)


def reference_extract(backbone, images, augment=None, seed=0, size=None, batch_size=256):
    """The plain loop extraction must reproduce exactly: prepare, then forward, batch by batch."""
    g = torch.Generator().manual_seed(seed)
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(images[start:start + batch_size]).permute(0, 3, 1, 2).float() / 255.0
            if augment is not None:
                x = augment(x, g)
            out.append(backbone(backbone.prepare(x, size)).numpy())
    return np.concatenate(out)


# --- extraction ---------------------------------------------------------------------------------

def test_overlapped_extraction_gives_exactly_the_serial_results(backbone, images):
    _, augment = get_augmentation("auto", 1, 12)
    seen = []
    overlapped = extract(backbone, images, augment, seed=5, size=16, batch_size=16,
                         progress=lambda done, total: seen.append((done, total)))
    np.testing.assert_array_equal(overlapped, reference_extract(backbone, images, augment, 5, 16, 16))
    np.testing.assert_array_equal(overlapped, extract(backbone, images, augment, seed=5, size=16, batch_size=16,
                                                      prefetch=0))
    assert seen[-1] == (70, 70) and [d for d, _ in seen] == [16, 32, 48, 64, 70]
    assert overlapped.dtype == np.float32 and overlapped.shape == (70, backbone.feature_dim)
    assert not np.array_equal(overlapped, extract(backbone, images, augment, seed=6, size=16, batch_size=16))


def test_bf16_extraction_stays_close_to_fp32_and_auto_follows_the_cpu(images, monkeypatch):
    torch.manual_seed(0)
    conv = create_backbone("scratch", in_channels=1)
    exact = extract(conv, images, size=16, batch_size=32)
    fast = extract(conv, images, size=16, batch_size=32, precision="bf16")
    assert fast.dtype == np.float32 and not np.array_equal(fast, exact)     # bf16 arithmetic did run
    cosine = (fast * exact).sum(1) / np.linalg.norm(fast, axis=1) / np.linalg.norm(exact, axis=1)
    assert cosine.min() > 0.99, cosine.min()
    monkeypatch.setattr(features, "native_bf16", lambda: False)
    assert features.resolve_precision("auto") == "fp32"
    np.testing.assert_array_equal(extract(conv, images, size=16, batch_size=32, precision="auto"), exact)
    monkeypatch.setattr(features, "native_bf16", lambda: True)
    assert features.resolve_precision("auto") == "bf16" and features.resolve_precision("fp32") == "fp32"
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16; got 'fp16'"):
        features.resolve_precision("fp16")


class SlowBackbone(Backbone):
    """Preparation and forward pass that each take a fixed time and release the GIL (as torch ops do)."""

    feature_dim = 3
    in_channels = 1
    input_size = None

    def __init__(self, prepare_s: float, forward_s: float) -> None:
        super().__init__()
        self.prepare_s, self.forward_s = prepare_s, forward_s
        self.overlaps = 0
        self._preparing = False

    def prepare(self, images, size=None):
        self._preparing = True
        time.sleep(self.prepare_s)
        self._preparing = False
        return images

    def forward(self, x):
        self.overlaps += self._preparing
        time.sleep(self.forward_s)
        self.overlaps += self._preparing
        return x.mean(dim=(2, 3)).repeat(1, 3)


def test_preparation_of_the_next_batch_overlaps_the_forward_pass(images):
    """Behaviour, not wall time (this machine is shared): with prefetch, the next batch is being
    prepared while the model runs; without it, never."""
    serial = SlowBackbone(prepare_s=0.04, forward_s=0.04)
    extract(serial, images, batch_size=7, prefetch=0)                 # 10 batches, prepared in line
    assert serial.overlaps == 0
    overlapped = SlowBackbone(prepare_s=0.04, forward_s=0.04)
    extract(overlapped, images, batch_size=7)
    assert overlapped.overlaps >= 3                                   # most of the 9 next batches


def test_errors_in_preparation_or_forward_reach_the_caller_and_stop_the_thread(backbone, images):
    before = threading.active_count()

    def broken_augment(x, g):
        raise RuntimeError("augmentation failed")
    with pytest.raises(RuntimeError, match="augmentation failed"):
        extract(backbone, images, broken_augment, batch_size=8)

    class Failing(SlowBackbone):
        def forward(self, x):
            raise ValueError("forward failed")
    with pytest.raises(ValueError, match="forward failed"):
        extract(Failing(0.0, 0.0), images, batch_size=8)
    with pytest.raises(ValueError, match="forward failed"):          # the decoding pool stops too
        extract_dataset(Failing(0.0, 0.0), ArrayDataset("arr", images), batch_size=8, workers=3)
    for _ in range(50):
        if threading.active_count() <= before:
            break
        time.sleep(0.02)
    assert threading.active_count() <= before


def test_extract_dataset_streams_images_and_matches_extract_on_arrays(backbone, images):
    _, augment = get_augmentation("auto", 1, 12)
    dataset = ArrayDataset("arr", images)
    calls = []
    original = dataset.image
    dataset.image = lambda i: calls.append(i) or original(i)
    dataset.to_array = None                                           # streaming never loads them all
    streamed = extract_dataset(backbone, dataset, size=10, augment=augment, seed=2, batch_size=16, workers=3)
    expected = extract(backbone, ArrayDataset("arr", images).to_array(10), augment, seed=2, size=10,
                       batch_size=16)
    np.testing.assert_array_equal(streamed, expected)
    assert sorted(calls[1:]) == list(range(70))                       # each image decoded once (+ probe)


def test_extract_dataset_reads_files_lazily_and_checks_sizes(backbone, tmp_path):
    paths = []
    for i in range(9):
        side = 12 if i != 4 else 14
        Image.fromarray(RNG.integers(0, 256, (side, side), dtype=np.uint8), "L").save(tmp_path / f"{i}.png")
        paths.append(f"{i}.png")
    dataset = FileDataset("files", tmp_path, paths, None, None, mode="L")
    feats = extract_dataset(backbone, dataset, size=12, batch_size=4, workers=2)
    np.testing.assert_array_equal(feats, extract(backbone, dataset.to_array(12), size=12, batch_size=4))
    with pytest.raises(ValueError, match="4.png is 14x14, others are 12x12: give an image size"):
        extract_dataset(backbone, dataset, size=None, batch_size=4)


# --- cache --------------------------------------------------------------------------------------

def counting(arrays):
    calls = []

    def compute():
        calls.append(1)
        return {name: np.array(value, copy=True) for name, value in arrays.items()}
    return compute, calls


PARTS = dict(dataset="digits", root=None, ids=ids_digest(["a", "b"]), backbone="mobilenet_v2",
             weights="b0353104", size=96, augment="grey", seed=0, n_views=4)


def test_a_hit_is_memory_mapped_and_computes_nothing(tmp_path):
    compute, calls = counting({"features": np.arange(12, dtype=np.float32).reshape(3, 4)})
    first = cached_features("k1", compute, tmp_path)
    second = cached_features("k1", compute, tmp_path)
    assert len(calls) == 1 and isinstance(second["features"], np.memmap)
    np.testing.assert_array_equal(first["features"], second["features"])
    manifest = json.loads((tmp_path / "features" / "k1" / "complete").read_text())
    assert manifest["key"] == "k1" and manifest["arrays"]["features"] == {"shape": [3, 4], "dtype": "float32"}


@pytest.mark.parametrize("part,value", [("weights", "other-weights"), ("size", 224), ("augment", "simclr"),
                                        ("seed", 1), ("n_views", 2), ("ids", ids_digest(["a", "c"])),
                                        ("backbone", "resnet18"), ("root", "/data"), ("dataset", "mnist"),
                                        ("precision", "bf16")])
def test_a_changed_key_never_serves_stale_features(tmp_path, part, value):
    old_key, new_key = cache_key(**PARTS), cache_key(**{**PARTS, part: value})
    assert old_key != new_key
    cached_features(old_key, lambda: {"features": np.zeros((2, 3), np.float32)}, tmp_path)
    fresh = cached_features(new_key, lambda: {"features": np.ones((2, 3), np.float32)}, tmp_path)
    assert np.all(np.asarray(fresh["features"]) == 1)
    again = cached_features(new_key, lambda: pytest.fail("recomputed a cached entry"), tmp_path)
    assert np.all(np.asarray(again["features"]) == 1)
    old = cached_features(old_key, lambda: pytest.fail("recomputed a cached entry"), tmp_path)
    assert np.all(np.asarray(old["features"]) == 0)


def test_cache_keys_are_stable_and_versioned(monkeypatch):
    assert cache_key(**PARTS) == cache_key(**dict(reversed(list(PARTS.items()))))
    assert cache_key(root=None) != cache_key(root="None")
    before = cache_key(**PARTS)
    monkeypatch.setattr(feature_cache, "FEATURES_VERSION", feature_cache.FEATURES_VERSION + 1)
    assert cache_key(**PARTS) != before


def test_a_failed_computation_or_write_leaves_nothing_to_read(tmp_path, monkeypatch):
    def failing():
        raise RuntimeError("extraction interrupted")
    with pytest.raises(RuntimeError):
        cached_features("k2", failing, tmp_path)
    assert not (tmp_path / "features" / "k2").exists()

    real_save = np.save
    saved = []

    def save_then_crash(path, array, *args, **kwargs):
        if saved:                                      # the second array: the disk fills up
            raise OSError("No space left on device")
        saved.append(path)
        real_save(path, array, *args, **kwargs)
    monkeypatch.setattr(np, "save", save_then_crash)
    compute, calls = counting({"features": np.ones((2, 2), np.float32), "views": np.ones((3, 2, 2), np.float32)})
    with pytest.raises(OSError):
        cached_features("k2", compute, tmp_path)
    monkeypatch.setattr(np, "save", real_save)
    assert not (tmp_path / "features" / "k2").exists()
    assert not [p for p in (tmp_path / "features").iterdir()]              # the temporary folder is gone
    cached_features("k2", compute, tmp_path)
    assert len(calls) == 2 and (tmp_path / "features" / "k2" / "complete").is_file()


def test_a_half_written_or_damaged_entry_is_never_read(tmp_path):
    folder = tmp_path / "features" / "k3"
    good = {"features": np.full((4, 2), 7, np.float32)}
    # 1. arrays without the manifest (a writer killed before finishing, or an old-style marker)
    folder.mkdir(parents=True)
    np.save(folder / "features.npy", np.zeros((4, 2), np.float32))
    compute, calls = counting(good)
    assert np.all(np.asarray(cached_features("k3", compute, tmp_path)["features"]) == 7) and calls
    assert np.all(np.load(folder / "features.npy") == 7)                    # replaced on disk
    # 2. a truncated array file under a valid manifest
    with open(folder / "features.npy", "r+b") as handle:
        handle.truncate(100)
    compute, calls = counting(good)
    assert np.all(np.asarray(cached_features("k3", compute, tmp_path)["features"]) == 7) and calls
    # 3. a manifest for another key (a folder copied or renamed by hand)
    manifest = json.loads((folder / "complete").read_text())
    (folder / "complete").write_text(json.dumps({**manifest, "key": "other"}))
    compute, calls = counting(good)
    cached_features("k3", compute, tmp_path)
    assert calls
    # 4. a listed array that is missing
    os.remove(folder / "features.npy")
    compute, calls = counting(good)
    cached_features("k3", compute, tmp_path)
    assert calls
    compute, calls = counting(good)
    cached_features("k3", compute, tmp_path)
    assert not calls                                                        # whole again: a hit


def test_stale_temporary_folders_are_cleaned(tmp_path):
    parent = tmp_path / "features"
    stale, recent = parent / ".k4.old", parent / ".k4.new"
    for folder in (stale, recent):
        folder.mkdir(parents=True)
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    cached_features("k4", lambda: {"features": np.zeros(2, np.float32)}, tmp_path)
    assert not stale.exists() and recent.exists()


@pytest.mark.parametrize("blocker", ["dangling link", "file"])
def test_an_unusable_cache_folder_is_reported_before_computing(tmp_path, blocker):
    cache = tmp_path / "cache"
    if blocker == "dangling link":
        cache.symlink_to(tmp_path / "gone")
        said = f"{cache} is a link to {tmp_path / 'gone'}, which does not exist"
    else:
        cache.write_text("not a folder")
        said = f"{cache} is not a folder"
    with pytest.raises(CacheError, match="cannot be used") as raised:
        cached_features("k5", lambda: pytest.fail("computed before the cache folder was checked"), cache)
    assert said in str(raised.value) and raised.value.setting == "cache_dir"     # each surface adds its hint
    assert "--cache-dir" not in str(raised.value)


def test_a_read_only_cache_folder_is_reported_before_computing(tmp_path, monkeypatch):
    # root may write anywhere, so the permission itself is stood in for
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path / "features")
    with pytest.raises(CacheError, match=f"{tmp_path / 'features'} is not writable"):
        cached_features("k6", lambda: pytest.fail("computed before the cache folder was checked"), tmp_path)
