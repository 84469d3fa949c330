"""Files that are not what they seem: an image that fails to decode is reported and left out of
the results; a file name that is not UTF-8 is kept and shown escaped."""
import csv
import json
import os

import numpy as np
from PIL import Image

from tests.helpers import icbpl, run_folder


def _folder(root, n: int = 10):
    rng = np.random.default_rng(0)
    for i in range(n):
        (root / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "ab"[i % 2] / f"{i}.jpg")
    return root


def test_a_truncated_jpeg_is_reported_and_left_out(tmp_path):
    data = _folder(tmp_path / "data")
    broken = data / "a" / "0.jpg"
    data_bytes = broken.read_bytes()
    broken.write_bytes(data_bytes[: len(data_bytes) // 2])   # passes the open-time check, fails to decode
    proc = icbpl("train", "--dataset", "folder", "--data-root", data, "--backbone", "scratch-mlp",
                 "--n-clusters", 2, "--epochs", 1, "--runs-dir", tmp_path / "runs")
    assert "skipped 1 unreadable file(s): a/0.jpg: unreadable when decoded, left out" in proc.stderr
    run = run_folder(proc)
    assert json.loads((run / "metrics.json").read_text())["n_samples"] == 9
    icbpl("export", run, "--out", tmp_path / "x.csv")
    paths = [row["path"] for row in csv.DictReader((tmp_path / "x.csv").open())]
    assert len(paths) == 9 and "a/0.jpg" not in paths
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert any(e["type"] == "skipped" and "a/0.jpg" in e["files"][0] for e in events)


def test_a_name_that_is_not_utf8_is_kept_and_shown_escaped(tmp_path):
    data = _folder(tmp_path / "data")
    os.rename(data / "a" / "0.jpg", os.path.join(os.fsencode(data / "a"), b"caf\xe9.jpg"))
    run = run_folder(icbpl("train", "--dataset", "folder", "--data-root", data, "--backbone", "scratch-mlp",
                           "--n-clusters", 2, "--epochs", 1, "--runs-dir", tmp_path / "runs", "--quiet"))
    icbpl("export", run, "--out", tmp_path / "x.csv")
    paths = [row["path"] for row in csv.DictReader((tmp_path / "x.csv").open(encoding="utf-8"))]
    assert "a/caf\\xe9.jpg" in paths and len(paths) == 10
