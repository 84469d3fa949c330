"""Bad arguments and bad places get one line that says what is wrong, before anything is written."""
import os
import pickle

import numpy as np
import pytest

from icbpl_core.store import runs as runs_mod
from tests.helpers import icbpl


@pytest.mark.parametrize("args, fragment", [
    (["--image-size", "100000"], "--image-size: must be between 8 and 1024, got 100000"),
    (["--lr", "inf"], "--lr: must be a finite number"),
    (["--lr", "nan"], "--lr: must be a finite number"),
    (["--w-mmd", "nan"], "--w-mmd: must be a finite number"),
    (["--views", "-2"], "must be between 0 and 32, got -2"),
    (["--clusters", "5000"], "must be between 2 and 1000, got 5000"),
    (["--backbone", "scratch", "--weights", "w.pth"], "takes no weights file"),
])
def test_out_of_range_values_are_refused_before_any_run_folder(args, fragment, tmp_path):
    proc = icbpl("train", *args, "--runs-dir", tmp_path / "runs", check=False)
    assert proc.returncode == 2 and fragment in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_a_runs_folder_that_is_a_file_is_named(where, tmp_path):
    (tmp_path / "f").write_text("x")
    runs_dir = tmp_path / "f" if where == "file" else tmp_path / "f" / "sub"
    proc = icbpl("train", "--runs-dir", runs_dir, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert f"{tmp_path / 'f'} is a file, not a folder; choose another with --runs-dir" in proc.stderr


def test_a_read_only_runs_folder_is_named(tmp_path, monkeypatch):
    # root may write anywhere, so the permission itself is stood in for
    monkeypatch.setattr(runs_mod.os, "access", lambda path, mode: False)
    with pytest.raises(runs_mod.RunError, match="is not writable") as caught:
        runs_mod.create_run(tmp_path / "runs", {"dataset": "digits"})
    assert caught.value.setting == "runs_dir"


def test_cifar_names_pickled_as_bytes_are_decoded(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"airplane", b"car", b"bird", b"cat"]}))
    proc = icbpl("train", "--dataset", "cifar10", "--data-root", tmp_path, "--backbone", "scratch-mlp",
                 "--image-size", "8", "--n-clusters", 4, "--epochs", 1, "--runs-dir", tmp_path / "runs")
    assert "not JSON serializable" not in proc.stderr
    assert os.path.exists(proc.stdout.strip().splitlines()[-1])
