"""Dataset loaders, each fed small files in its real on-disk format written in tmp_path."""
from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from icbpl_core.datasets import DatasetError, dataset_names, get_entry, load_dataset
from icbpl_core.datasets import cifar, folder as folder_mod, imagenet, mnist, stl10
from icbpl_core.datasets.base import IndexedSubset
from icbpl_core.datasets.images import FileDataset, to_8bit
from icbpl_core.store.files import file_sha256
from tests.conftest import MISSING

RNG = np.random.default_rng(0)


def test_all_loaders_registered():
    names = set(dataset_names())
    assert {"mnist", "fashion-mnist", "cifar10", "cifar100-20", "cifar100", "stl10", "stl10-unlabeled",
            "imagenet10", "imagenet50", "imagenet100", "imagenet200", "folder", "zip"} <= names
    assert get_entry("mnist").default_backbone == "scratch"
    assert get_entry("cifar10").default_backbone == "mobilenet_v2"
    assert get_entry("folder").needs_root and get_entry("zip").needs_root and get_entry("imagenet50").needs_root


def test_every_entry_names_a_loader_that_exists():
    import importlib

    from icbpl_core.datasets import DATASETS
    for entry in DATASETS.values():
        module, _, function = entry.loader.partition(":")
        assert callable(getattr(importlib.import_module(f"icbpl_core.datasets.{module}"), function)), entry.name


# --- MNIST / Fashion-MNIST (idx) ------------------------------------------------------------

def write_idx(path: Path, arr: np.ndarray, gz: bool = True) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def make_mnist(folder: Path, gz: bool = True, n_train: int = 12, n_test: int = 8):
    x = RNG.integers(0, 256, (n_train + n_test, 28, 28), dtype=np.uint8)
    y = np.arange(n_train + n_test) % 10
    write_idx(folder / "train-images-idx3-ubyte", x[:n_train], gz)
    write_idx(folder / "train-labels-idx1-ubyte", y[:n_train], gz)
    write_idx(folder / "t10k-images-idx3-ubyte", x[n_train:], gz)
    write_idx(folder / "t10k-labels-idx1-ubyte", y[n_train:], gz)
    return x, y


def test_mnist_reads_gzipped_idx_in_root(tmp_path):
    x, y = make_mnist(tmp_path)
    ds = load_dataset("mnist", root=str(tmp_path))
    assert len(ds) == 20 and ds.images.shape == (20, 28, 28, 1)
    np.testing.assert_array_equal(ds.images[..., 0], x)
    np.testing.assert_array_equal(ds.labels, y)
    assert ds.class_names == [str(d) for d in range(10)]
    assert np.asarray(ds.image(3)).tolist() == x[3].tolist() and ds.image(3).mode == "L"


def test_fashion_mnist_reads_torchvision_raw_layout_uncompressed(tmp_path):
    x, y = make_mnist(tmp_path / "FashionMNIST" / "raw", gz=False)
    ds = load_dataset("fashion-mnist", root=str(tmp_path))
    np.testing.assert_array_equal(ds.images[..., 0], x)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"


def test_idx_errors(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x12\x34\x56\x78rest")
    with pytest.raises(DatasetError, match="not an idx file"):
        mnist.read_idx(tmp_path / "bad")
    write_idx(tmp_path / "short", np.zeros((4, 2, 2)), gz=False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-3])
    with pytest.raises(DatasetError, match="truncated"):
        mnist.read_idx(tmp_path / "short")


def test_mnist_missing_offline_names_the_file(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match=r"missing train-images-idx3-ubyte.*MNIST/raw"):
        load_dataset("mnist", root=str(tmp_path))
    monkeypatch.setattr(mnist, "DEBIAN_FASHION_DIR", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", root=str(tmp_path))


def fake_torchvision(monkeypatch, name: str, make):
    """Replace torchvision.datasets.<name> by a class that writes files instead of downloading."""
    import torchvision.datasets

    calls = []

    def fake(root, *args, download=False, **kwargs):
        calls.append((root, download))
        make(Path(root))

    monkeypatch.setattr(torchvision.datasets, name, fake)
    return calls


def test_mnist_download_uses_torchvision(tmp_path, monkeypatch):
    calls = fake_torchvision(monkeypatch, "MNIST", lambda root: make_mnist(root / "MNIST" / "raw"))
    ds = load_dataset("mnist", root=str(tmp_path), download=True)
    assert calls == [(str(tmp_path), True)] and len(ds) == 20
    load_dataset("mnist", root=str(tmp_path), download=True)  # present now: no second download
    assert len(calls) == 1


def test_download_failure_is_a_dataset_error(tmp_path, monkeypatch):
    def offline(root):
        raise RuntimeError("network unreachable")
    fake_torchvision(monkeypatch, "FashionMNIST", offline)
    monkeypatch.setattr(mnist, "DEBIAN_FASHION_DIR", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="could not download FashionMNIST.*network unreachable"):
        load_dataset("fashion-mnist", root=str(tmp_path), download=True)


@pytest.mark.skipif(not mnist.DEBIAN_FASHION_DIR.is_dir(),
                    reason=f"{MISSING} dataset-fashion-mnist; install: sudo apt-get install dataset-fashion-mnist")
def test_fashion_mnist_from_debian_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./data here: the system copy must be found
    ds = load_dataset("fashion-mnist")
    assert len(ds) == 70_000 and ds.images.shape[1:] == (28, 28, 1) and ds.n_classes == 10
    assert np.bincount(ds.labels).tolist() == [7000] * 10
    sub = load_dataset("fashion-mnist", limit=200, seed=3)
    assert len(sub) == 200 and np.bincount(sub.labels).tolist() == [20] * 10
    again = load_dataset("fashion-mnist", limit=200, seed=3)
    assert [sub.item_id(i) for i in range(200)] == [again.item_id(i) for i in range(200)]
    np.testing.assert_array_equal(sub.images[5], ds.images[int(sub.item_id(5).split(":")[1])])


# --- CIFAR (python pickles) -----------------------------------------------------------------

def cifar_rows(n: int) -> np.ndarray:
    return RNG.integers(0, 256, (n, 3072), dtype=np.uint8)


def dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def make_cifar10(root: Path):
    folder = root / "cifar-10-batches-py"
    rows, labels = [], []
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data, y = cifar_rows(3), [(i + k) % 10 for k in range(3)]
        batch = {"data": data, "labels": y, "batch_label": name}
        if name == "test_batch":  # python-2 style bytes keys must work too
            batch = {k.encode(): v for k, v in batch.items()}
        dump(folder / name, batch)
        rows.append(data), labels.extend(y)
    dump(folder / "batches.meta", {"label_names": cifar.CIFAR10_CLASSES, "num_vis": 3072})
    return np.concatenate(rows), np.asarray(labels)


def test_cifar10_pickles_round_trip(tmp_path):
    rows, labels = make_cifar10(tmp_path)
    ds = load_dataset("cifar10", root=str(tmp_path))
    assert len(ds) == 18 and ds.images.shape == (18, 32, 32, 3)
    np.testing.assert_array_equal(ds.labels, labels)
    # row layout: 1024 red values (32 rows of 32), then green, then blue
    for i in (0, 17):
        assert ds.images[i, 0, 1, 0] == rows[i][1]
        assert ds.images[i, 2, 0, 1] == rows[i][1024 + 64]
        assert ds.images[i, 31, 31, 2] == rows[i][3071]
    assert ds.class_names == cifar.CIFAR10_CLASSES
    # a root that is the batches folder itself works too
    assert len(load_dataset("cifar10", root=str(tmp_path / "cifar-10-batches-py"))) == 18


def make_cifar100(root: Path):
    folder = root / "cifar-100-python"
    fine = {"train": np.arange(10) % 100 * 7 % 100, "test": np.arange(4) + 90}
    data = {}
    for split, f in fine.items():
        data[split] = cifar_rows(len(f))
        dump(folder / split, {"data": data[split], "fine_labels": f.tolist(),
                              "coarse_labels": (f // 5).tolist(), "filenames": ["x"] * len(f)})
    dump(folder / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)],
                           "coarse_label_names": [f"coarse{i}" for i in range(20)]})
    return data, np.concatenate([fine["train"], fine["test"]])


def test_cifar100_fine_and_coarse(tmp_path):
    data, fine = make_cifar100(tmp_path)
    ds100 = load_dataset("cifar100", root=str(tmp_path))
    ds20 = load_dataset("cifar100-20", root=str(tmp_path))
    np.testing.assert_array_equal(ds100.labels, fine)
    np.testing.assert_array_equal(ds20.labels, fine // 5)
    assert len(ds100.class_names) == 100 and ds20.class_names == [f"coarse{i}" for i in range(20)]
    expected = data["test"][0].reshape(3, 32, 32).transpose(1, 2, 0)
    np.testing.assert_array_equal(ds20.images[10], expected)


def test_cifar_missing_and_malicious(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match=r"missing .*cifar-10-batches-py/data_batch_1"):
        load_dataset("cifar10", root=str(tmp_path))
    with pytest.raises(DatasetError, match=r"missing .*cifar-100-python/train"):
        load_dataset("cifar100-20", root=str(tmp_path))
    make_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    dump(tmp_path / "cifar-10-batches-py" / "data_batch_3", {"data": Evil()})
    with pytest.raises(DatasetError, match="refusing to load"):
        load_dataset("cifar10", root=str(tmp_path))


def test_cifar_download_uses_torchvision(tmp_path, monkeypatch):
    calls = fake_torchvision(monkeypatch, "CIFAR100", make_cifar100)
    ds = load_dataset("cifar100", root=str(tmp_path / "data"), download=True)
    assert calls == [(str(tmp_path / "data"), True)] and len(ds) == 14


# --- STL-10 (binary) ------------------------------------------------------------------------

def write_stl_x(path: Path, images: np.ndarray) -> None:
    """Images (N, 96, 96, 3) in STL-10's layout: N x 3 x 96 x 96, planes column-major."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.ascontiguousarray(images.transpose(0, 3, 2, 1)).tobytes())


def make_stl10(root: Path, n_train=4, n_test=3, n_unlabeled=5):
    folder = root / "stl10_binary"
    x = {s: RNG.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)
         for s, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled))}
    for split, images in x.items():
        write_stl_x(folder / f"{split}_X.bin", images)
    y = {"train": np.array([1, 2, 10, 5], np.uint8)[:n_train], "test": np.array([3, 3, 7], np.uint8)[:n_test]}
    for split, labels in y.items():
        (folder / f"{split}_y.bin").write_bytes(labels.tobytes())
    (folder / "class_names.txt").write_text("\n".join(stl10.STL10_CLASSES) + "\n")
    return x, y


def test_stl10_binary_round_trip(tmp_path):
    x, y = make_stl10(tmp_path)
    ds = load_dataset("stl10", root=str(tmp_path))
    assert len(ds) == 7 and ds.images.shape == (7, 96, 96, 3)
    np.testing.assert_array_equal(ds.images, np.concatenate([x["train"], x["test"]]))
    assert ds.labels.tolist() == [0, 1, 9, 4, 2, 2, 6]
    assert ds.class_names[2] == "car"
    # the format itself: byte 96 of the file is red, column 1, row 0 of image 0
    raw = (tmp_path / "stl10_binary" / "train_X.bin").read_bytes()
    assert ds.images[0, 0, 1, 0] == raw[96] and ds.images[0, 1, 0, 0] == raw[1]


def test_stl10_unlabeled_has_no_labels(tmp_path):
    x, _ = make_stl10(tmp_path)
    ds = load_dataset("stl10-unlabeled", root=str(tmp_path))
    assert len(ds) == 12 and ds.labels is None and not ds.has_labels
    np.testing.assert_array_equal(ds.images[7:], x["unlabeled"])
    assert len(load_dataset("stl10-unlabeled", root=str(tmp_path), limit=5)) == 5


def test_stl10_missing_and_download(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match=r"missing .*stl10_binary/train_X\.bin"):
        load_dataset("stl10", root=str(tmp_path))
    calls = fake_torchvision(monkeypatch, "STL10", make_stl10)
    assert len(load_dataset("stl10", root=str(tmp_path), download=True)) == 7 and len(calls) == 1


# --- ImageNet subsets -----------------------------------------------------------------------

def test_imagenet_subset_lists():
    lists = {n: [w for w, _ in imagenet.read_subset(n)] for n in (10, 50, 100, 200)}
    for n, wnids in lists.items():
        assert len(wnids) == len(set(wnids)) == n and all(w.startswith("n") and len(w) == 9 for w in wnids)
    assert set(lists[50]) <= set(lists[100]) <= set(lists[200])  # SCAN's lists are nested
    assert lists[10][0] == "n02056570" and lists[10][-1] == "n07747607"
    assert imagenet.read_subset(100)[1] == ("n01601694", "water ouzel")


def test_imagenet10_reads_lazily(tmp_path):
    classes = imagenet.read_subset(10)
    for k, (wnid, _) in enumerate(classes):
        (tmp_path / wnid).mkdir()
        for j in range(2):
            Image.new("RGB", (12 + j, 10), (k * 20, j * 50, 7)).save(tmp_path / wnid / f"{wnid}_{j}.JPEG")
    (tmp_path / "n99999999").mkdir()  # other ImageNet classes are ignored
    ds = load_dataset("imagenet10", root=str(tmp_path))
    assert isinstance(ds, FileDataset) and len(ds) == 20
    assert ds.labels.tolist() == [k for k in range(10) for _ in range(2)]
    assert ds.class_names[0] == "king penguin" and ds.item_id(3) == "n02085936/n02085936_1.JPEG"
    img = ds.image(3)
    assert img.mode == "RGB" and img.size == (13, 10)
    assert abs(img.getpixel((5, 5))[0] - 20) <= 3  # JPEG: close, not exact
    assert ds.to_array(8).shape == (20, 8, 8, 3)
    sub = load_dataset("imagenet10", root=str(tmp_path), limit=10, seed=1)
    assert isinstance(sub, IndexedSubset) and np.bincount(sub.labels).tolist() == [1] * 10


def test_imagenet_missing_folders(tmp_path):
    for wnid, _ in imagenet.read_subset(50)[3:]:
        (tmp_path / wnid).mkdir()
    with pytest.raises(DatasetError, match=r"3 of 50 class folders missing .*n01601694, n01669191"):
        load_dataset("imagenet50", root=str(tmp_path))
    with pytest.raises(DatasetError, match="needs a data root"):
        load_dataset("imagenet100")


# --- image folders --------------------------------------------------------------------------

def blend(c: int, a: int) -> int:
    return round(c * a / 255 + 255 * (255 - a) / 255)


@pytest.fixture()
def image_tree(tmp_path):
    root = tmp_path / "tree"
    (root / "ants").mkdir(parents=True)
    (root / "bees" / "deep").mkdir(parents=True)
    (root / "empty").mkdir()
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey, "L").save(root / "ants" / "a_grey.png")
    Image.fromarray(np.dstack([grey, np.array([[255, 0, 128, 255]] * 3, np.uint8)]), "LA").save(
        root / "ants" / "b_la.png")
    pal = Image.new("P", (4, 3), 1)
    pal.putpalette([0, 0, 0, 10, 20, 30, 200, 100, 50] + [0] * 759)
    pal.putpixel((0, 0), 2)
    pal.putpixel((1, 0), 0)
    pal.save(root / "ants" / "c_palette.PNG", transparency=0)  # index 0 transparent
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., :3] = (100, 150, 200)
    rgba[..., 3] = 255
    rgba[0, 0, 3], rgba[0, 1, 3] = 0, 128
    Image.fromarray(rgba, "RGBA").save(root / "bees" / "d_rgba.png")
    Image.new("CMYK", (4, 3), (55, 0, 0, 0)).save(root / "bees" / "e_cmyk.tif")
    deep = np.array([[0, 257, 65535, 32768]] * 3, dtype=np.uint16)
    Image.fromarray(deep).save(root / "bees" / "deep" / "f_16bit.png")
    Image.fromarray(grey, "L").save(root / "bees" / "g.bmp")
    Image.fromarray(rgba[..., :3]).save(root / "bees" / "h.webp", lossless=True)
    png = (root / "ants" / "a_grey.png").read_bytes()
    (root / "ants" / "corrupt.png").write_bytes(png[: len(png) - 20])
    (root / "ants" / "not_really.jpg").write_text("hello")
    (root / "bees" / "notes.txt").write_text("not an image")
    (root / "bees" / ".DS_Store").write_bytes(b"\0\1")
    (root / "empty" / "readme.md").write_text("nothing")
    Image.fromarray(grey, "L").save(root / "stray.png")
    return root, grey, deep


def test_folder_modes_labels_and_skips(image_tree):
    root, grey, _ = image_tree
    ds = load_dataset("folder", root=str(root))
    ids = [ds.item_id(i) for i in range(len(ds))]
    assert ids == ["ants/a_grey.png", "ants/b_la.png", "ants/c_palette.PNG", "bees/d_rgba.png",
                   "bees/deep/f_16bit.png", "bees/e_cmyk.tif", "bees/g.bmp", "bees/h.webp"]
    assert ds.class_names == ["ants", "bees"] and ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    assert ds.mode == "RGB" and all(ds.image(i).mode == "RGB" for i in range(len(ds)))
    arr = {i: np.asarray(ds.image(k)) for k, i in enumerate(ids)}
    np.testing.assert_array_equal(arr["ants/a_grey.png"][..., 1], grey)  # grey repeated in R, G, B
    assert arr["ants/b_la.png"][0, :, 0].tolist() == [0, 255, blend(40, 128), 60]
    assert arr["ants/c_palette.PNG"][0, 0].tolist() == [200, 100, 50]
    assert arr["ants/c_palette.PNG"][0, 1].tolist() == [255, 255, 255]  # transparent -> white
    assert arr["ants/c_palette.PNG"][1, 1].tolist() == [10, 20, 30]
    assert arr["bees/d_rgba.png"][0, 0].tolist() == [255, 255, 255]
    assert arr["bees/d_rgba.png"][0, 1].tolist() == [blend(100, 128), blend(150, 128), blend(200, 128)]
    assert arr["bees/d_rgba.png"][1, 1].tolist() == [100, 150, 200]
    assert arr["bees/e_cmyk.tif"][0, 0].tolist() == [200, 255, 255]
    assert arr["bees/deep/f_16bit.png"][0, :, 0].tolist() == [0, 1, 255, 128]  # scaled, not clipped
    np.testing.assert_array_equal(arr["bees/g.bmp"][..., 2], grey)
    assert arr["bees/h.webp"][2, 3].tolist() == [100, 150, 200]
    skipped = dict(ds.skipped)
    assert set(skipped) == {"ants/corrupt.png", "ants/not_really.jpg", "bees/notes.txt",
                            "empty/readme.md", "stray.png"}
    assert "unreadable image" in skipped["ants/corrupt.png"]
    assert "cannot identify image file" in skipped["ants/not_really.jpg"]
    assert "not an image file" in skipped["bees/notes.txt"] and "outside any class" in skipped["stray.png"]
    assert ds.to_array().shape == (8, 3, 4, 3)


def test_flat_grey_folder_has_no_labels(tmp_path):
    grey = RNG.integers(0, 256, (5, 6), dtype=np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "one.png")
    Image.fromarray(np.full((5, 6), 65535, np.uint16)).save(tmp_path / "two.TIFF")
    Image.fromarray(grey, "L").convert("1").save(tmp_path / "three.gif")
    Image.fromarray(grey, "L").save(tmp_path / "four.jpeg", quality=100)
    ds = load_dataset("folder", root=str(tmp_path))
    assert ds.labels is None and ds.class_names is None and ds.mode == "L"
    assert [ds.item_id(i) for i in range(4)] == ["four.jpeg", "one.png", "three.gif", "two.TIFF"]
    out = ds.to_array()
    assert out.shape == (4, 5, 6, 1)
    np.testing.assert_array_equal(out[1, ..., 0], grey)
    assert np.abs(out[0, ..., 0].astype(int) - grey).max() <= 2  # JPEG
    assert (out[3] == 255).all() and set(np.unique(out[2])) <= {0, 255}
    assert len(load_dataset("folder", root=str(tmp_path), limit=2)) == 2


def test_unusual_modes_scale_to_8bit():
    assert np.asarray(to_8bit(Image.fromarray(np.array([[0, 1000, 65535]], np.int32), "I"))).tolist() \
        == [[0, 4, 255]]
    assert np.asarray(to_8bit(Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F"))).tolist() \
        == [[0, 128, 255]]
    assert np.asarray(to_8bit(Image.fromarray(np.array([[-1.0, 0.0, 3.0]], np.float32), "F"))).tolist() \
        == [[0, 64, 255]]


def test_truncated_file_found_late_gives_placeholder(tmp_path):
    (tmp_path / "c").mkdir()
    Image.fromarray(RNG.integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(tmp_path / "c" / "ok.jpg")
    good = (tmp_path / "c" / "ok.jpg").read_bytes()
    (tmp_path / "c" / "half.jpg").write_bytes(good[: len(good) * 3 // 4])  # passes the cheap check
    ds = load_dataset("folder", root=str(tmp_path))
    assert len(ds) == 2 and ds.skipped == []
    img = ds.image(0)
    assert img.size == (48, 64) and img.getpixel((0, 0)) == (128, 128, 128)
    ds.image(0)
    assert len(ds.skipped) == 1 and ds.skipped[0][0] == "c/half.jpg"
    assert "unreadable when loaded" in ds.skipped[0][1]


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="not a folder"):
        load_dataset("folder", root=str(tmp_path / "missing"))
    with pytest.raises(DatasetError, match="needs a data root"):
        load_dataset("folder")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(DatasetError, match="has no images"):
        load_dataset("folder", root=str(tmp_path))


# --- zip archives ---------------------------------------------------------------------------

def png_bytes(value: int, size=(4, 3)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (value, 0, 255 - value)).save(buf, "PNG")
    return buf.getvalue()


def make_zip(path: Path, entries: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = 0o120777 << 16
            zf.writestr(info, target)
    return path


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ICBPL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "archives"


def test_zip_extracts_to_sha_keyed_cache(tmp_path, cache, monkeypatch):
    archive = make_zip(tmp_path / "pets.zip", {
        "pets/cats/a.png": png_bytes(10), "pets/cats/b.png": png_bytes(20), "pets/dogs/c.png": png_bytes(30),
        "pets/readme.txt": b"hi", "__MACOSX/pets/._a.png": b"junk", "pets/": b""},
        symlinks={"pets/dogs/link.png": "../../../etc/passwd"})
    ds = load_dataset("zip", root=str(archive))
    assert ds.name == "zip" and ds.class_names == ["cats", "dogs"] and ds.labels.tolist() == [0, 0, 1]
    assert [ds.item_id(i) for i in range(3)] == ["cats/a.png", "cats/b.png", "dogs/c.png"]
    assert ds.image(2).getpixel((0, 0)) == (30, 0, 225)
    skipped = dict(ds.skipped)
    assert "symbolic link" in skipped["pets/dogs/link.png"] and "not an image" in skipped["pets/readme.txt"]
    folder = cache / file_sha256(archive)
    assert folder.is_dir() and not (folder / "pets" / "dogs" / "link.png").exists()
    assert not (folder / "__MACOSX").exists() and [p.name for p in cache.iterdir()] == [folder.name]
    # second open reuses the cache without reading the archive's entries again
    monkeypatch.setattr(folder_mod.zipfile, "ZipFile", None)
    again = load_dataset("zip", root=str(archive))
    assert len(again) == 3 and dict(again.skipped) == skipped
    # the folder loader accepts a zip too
    monkeypatch.undo()
    monkeypatch.setenv("ICBPL_CACHE_DIR", str(tmp_path / "cache"))
    assert len(load_dataset("folder", root=str(archive))) == 3


@pytest.mark.parametrize("name, message", [
    ("../evil.png", r"'\.\./evil\.png' escapes the extraction folder"),
    ("ok/../../evil.png", "escapes the extraction folder"),
    ("/abs/evil.png", "absolute path"),
    ("C:\\evil.png", "absolute path"),
])
def test_zip_rejects_escaping_paths(tmp_path, cache, name, message):
    archive = make_zip(tmp_path / "evil.zip", {"fine.png": png_bytes(1), name: png_bytes(2)})
    with pytest.raises(DatasetError, match=message):
        load_dataset("zip", root=str(archive))
    assert not (tmp_path / "evil.png").exists()
    assert not cache.exists() or list(cache.iterdir()) == []


def test_zip_file_count_cap(tmp_path, cache, monkeypatch):
    archive = make_zip(tmp_path / "many.zip", {f"{i}.png": png_bytes(i) for i in range(6)})
    with pytest.raises(DatasetError, match="holds 6 files, more than the limit of 5"):
        folder_mod.load_zip(str(archive), max_files=5)
    monkeypatch.setenv("ICBPL_ZIP_MAX_FILES", "4")
    with pytest.raises(DatasetError, match="limit of 4 .*ICBPL_ZIP_MAX_FILES"):
        load_dataset("zip", root=str(archive))
    monkeypatch.setenv("ICBPL_ZIP_MAX_FILES", "6")
    assert len(load_dataset("zip", root=str(archive))) == 6


def test_zip_bomb_declared_size_cap(tmp_path, cache, monkeypatch):
    archive = make_zip(tmp_path / "bomb.zip", {"a.png": png_bytes(1), "bomb.png": bytes(3_000_000)})
    assert archive.stat().st_size < 20_000
    monkeypatch.setenv("ICBPL_ZIP_MAX_BYTES", "1000000")
    with pytest.raises(DatasetError, match="declares .* bytes .*more than the limit of 1000000"):
        load_dataset("zip", root=str(archive))
    assert not cache.exists() or list(cache.iterdir()) == []


def understate_size(archive: Path, name: str, fake_size: int) -> None:
    """Rewrite the uncompressed size recorded for `name` (local and central headers)."""
    data = bytearray(archive.read_bytes())
    encoded = name.encode()
    for signature, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        pos = data.find(signature)
        while pos >= 0:
            if data[pos + name_at:pos + name_at + len(encoded)] == encoded:
                data[pos + size_at:pos + size_at + 4] = struct.pack("<I", fake_size)
            pos = data.find(signature, pos + 1)
    archive.write_bytes(bytes(data))


def test_zip_bomb_lying_about_its_size(tmp_path, cache):
    archive = make_zip(tmp_path / "liar.zip", {"a.png": png_bytes(5), "liar.png": bytes(3_000_000)})
    understate_size(archive, "liar.png", 100)
    ds = folder_mod.load_zip(str(archive), max_bytes=1_000_000)
    # the declared 100 bytes pass the cap; no more than that is ever written, the entry is refused
    assert len(ds) == 1 and "liar.png" in dict(ds.skipped)
    assert not any(p.name == "liar.png" for p in cache.rglob("*"))


def test_copy_counts_actual_bytes():
    with pytest.raises(DatasetError, match="inflates beyond its declared 10 bytes"):
        folder_mod.copy_capped(io.BytesIO(bytes(100)), io.BytesIO(), 10, 1000, "x.png", 1000)
    with pytest.raises(DatasetError, match="beyond the limit of 1000 bytes"):
        folder_mod.copy_capped(io.BytesIO(bytes(100)), io.BytesIO(), 200, 50, "x.png", 1000)


def test_zip_failure_mid_extraction_leaves_nothing(tmp_path, cache, monkeypatch):
    archive = make_zip(tmp_path / "ok.zip", {f"{i}.png": png_bytes(i) for i in range(3)})

    def boom(*args):
        raise DatasetError("simulated bomb")
    monkeypatch.setattr(folder_mod, "copy_capped", boom)
    with pytest.raises(DatasetError, match="simulated bomb"):
        load_dataset("zip", root=str(archive))
    assert list(cache.iterdir()) == []


def test_zip_flat_and_not_a_zip(tmp_path, cache):
    archive = make_zip(tmp_path / "flat.zip", {"x.png": png_bytes(1), "y.png": png_bytes(2),
                                              "broken.png": b"\x89PNG nope"})
    ds = load_dataset("zip", root=str(archive))
    assert ds.labels is None and len(ds) == 2 and "broken.png" in dict(ds.skipped)
    (tmp_path / "fake.zip").write_text("not a zip")
    with pytest.raises(DatasetError, match="not a readable zip archive"):
        load_dataset("zip", root=str(tmp_path / "fake.zip"))
    with pytest.raises(DatasetError, match="not a zip file"):
        load_dataset("zip", root=str(tmp_path / "absent.zip"))
