"""The device parameter: resolved the same way from the command line, the estimator and the app,
refused in plain words where the machine lacks it, recorded in the run."""
import json

import numpy as np
import pytest
import torch

from icbpl_app import jobs, state
from icbpl_core import ICBPL
from icbpl_core.config import ConfigError
from icbpl_core.training import device as devices
from tests.helpers import icbpl, run_folder


@pytest.fixture
def two_gpus(monkeypatch):
    """torch as it looks on a machine with two CUDA GPUs (nothing is computed on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_auto_is_the_cpu_without_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    assert devices.resolve_device("auto") == torch.device("cpu")
    place = devices.placement("auto")
    assert place.amp_dtype is None and place.precision == "fp32" and not place.needs_scaler


def test_auto_prefers_cuda_then_mps(monkeypatch, two_gpus):
    monkeypatch.setenv("LOCAL_RANK", "1")            # under torchrun: the process's own GPU
    assert devices.resolve_device("auto") == torch.device("cuda", 1)
    assert devices.resolve_device("cuda") == torch.device("cuda", 1)
    assert devices.resolve_device("cuda:0") == torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: True)
    assert devices.resolve_device("auto") == torch.device("mps")


@pytest.mark.parametrize("bf16, dtype, scaler", [(True, torch.bfloat16, False), (False, torch.float16, True)])
def test_gpus_train_in_bf16_or_fp16_with_a_scaler(monkeypatch, two_gpus, bf16, dtype, scaler):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
    place = devices.placement("cuda:1")
    assert place.device == torch.device("cuda", 1) and place.amp_dtype is dtype and place.needs_scaler is scaler


@pytest.mark.parametrize("name, words", [("cuda:7", "there is no GPU cuda:7: this machine has 2"),
                                         ("cuda:x", "there is no GPU cuda:x")])
def test_a_gpu_the_machine_lacks_is_named(two_gpus, name, words):
    with pytest.raises(ConfigError, match=words):
        devices.resolve_device(name)


def test_cuda_on_a_machine_without_one_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            devices.resolve_device(name)
    with pytest.raises(ConfigError, match="no MPS device"):
        devices.resolve_device("mps")


def test_command_line_refuses_a_missing_gpu_before_writing_a_run(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    done = icbpl("train", "--device", "cuda", "--runs-dir", tmp_path / "runs", check=False)
    assert done.returncode == 2 and "no CUDA GPU" in done.stderr and "--device" in done.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())
    done = icbpl("train", "--device", "tpu", check=False)
    assert done.returncode == 2 and "--device" in done.stderr and "one of auto, cpu, cuda, mps" in done.stderr


def test_command_line_records_where_a_run_trained(tmp_path):
    done = icbpl("train", "--device", "cpu", "--limit", "200", "--epochs", "2", "--neighbours-from", "pixels",
                 "--quiet", "--runs-dir", tmp_path / "runs")
    run = run_folder(done)
    metrics = json.loads((run / "metrics.json").read_text())
    runtime = json.loads((run / "config.json").read_text())["runtime"]
    assert metrics["device"] == runtime["device"] == "cpu"
    assert metrics["training_precision"] == "fp32" and metrics["world_size"] == runtime["world_size"] == 1
    assert metrics["knn_backend"] == "exact"       # 200 points: below the faiss crossover


def test_estimator_takes_the_device(blobs):
    x, y = blobs
    fitted = ICBPL(n_clusters=3, epochs=3, device="cpu", random_state=0).fit(x)
    same = ICBPL(n_clusters=3, epochs=3, random_state=0).fit(x)      # auto is the CPU here
    if not torch.cuda.is_available():
        np.testing.assert_array_equal(fitted.labels_, same.labels_)
    assert fitted.get_params()["device"] == "cpu"
    with pytest.raises(Exception, match="device"):
        ICBPL(n_clusters=3, device="gpu").fit(x)


@pytest.fixture
def blobs():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 8)) * 5
    labels = rng.integers(0, 3, 300)
    return (centres[labels] + rng.standard_normal((300, 8))).astype(np.float32), labels


def test_app_form_has_device_and_processes_and_launches_them(tmp_path, monkeypatch):
    from icbpl_app import form
    assert {"device", "gpus", "num_workers", "knn_backend"} <= set(form.FIELDS)
    draft = state.Draft({"dataset": "digits", "device": "cpu", "gpus": 2, "limit": 100})
    assert draft.spec().train.device == "cpu" and draft["gpus"] == 2
    started = []
    monkeypatch.setattr(jobs, "spawn", lambda module, args, log, env: started.append((args, env)) or _Proc())
    run = jobs.launch(tmp_path / "runs", draft.spec(), gpus=2)
    args, env = started[0]
    assert args == ["resume", str(run.path), "--gpus", "2"] and run.job()["gpus"] == 2
    jobs._spawn(run, "resume")                       # a resume keeps the processes it had
    assert started[1][0][-2:] == ["--gpus", "2"]


class _Proc:
    pid, args = 999_999, ["python"]


@pytest.mark.parametrize("bf16, expected", [(True, "bf16"), (False, "fp32")])
def test_extraction_precision_auto_follows_the_gpu(monkeypatch, two_gpus, bf16, expected):
    from icbpl_core.features.extract import resolve_precision
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
    assert resolve_precision("auto", torch.device("cuda", 0)) == expected
    assert resolve_precision("fp32", torch.device("cuda", 0)) == "fp32"
