"""Training in two processes (gloo, on the CPU) is the same computation as in one.

The unit test runs one step of the real trainer in two processes, each on its half of the
global batch, and in one process on the whole batch: the loss (a person's corrections' terms
included), every parameter's gradient and the bank written by the step must agree. The command-line tests run digits through torchrun."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist

from icbpl_core.config import TrainConfig
from icbpl_core.method.model import MultiHead
from icbpl_core.method.neighbours import cosine_topk
from icbpl_core.method.pedcc import make_pedcc
from icbpl_core.store.runs import open_run
from icbpl_core.training.distributed import World, gather_rows, gather_with_grad, shard
from icbpl_core.training.sources import FeatureSource
from icbpl_core.training.trainer import Trainer, epoch_generator
from tests.helpers import icbpl, icbpl_command, run_folder

N, DIM, BATCH = 64, 12, 16


def _data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((N, DIM)).astype(np.float32)


def _trainer(world: World) -> Trainer:
    x = _data()
    cfg = TrainConfig(n_clusters=4, latent_dim=8, hidden_dim=32, batch_size=BATCH, n_neighbours=5, n_heads=2, seed=3,
                      guide="both")
    targets = np.where(np.arange(N) % 3 == 0, np.arange(N) % 4, -1)     # a person's decisions on a third
    torch.manual_seed(3)
    heads = MultiHead(DIM, cfg.hidden_dim, cfg.latent_dim, cfg.n_heads)
    heads.set_input_stats(torch.from_numpy(x))
    # noise 0: the augmented view is the feature itself, the same however the batch is split
    trainer = Trainer(heads, FeatureSource(x, noise=0.0), make_pedcc(4, 8, 3), cosine_topk(x, 5)[0], cfg,
                      world=world, targets=targets)
    trainer.bank = trainer.all_latents()
    return trainer


def _one_step(world: World) -> dict:
    trainer = _trainer(world)
    g = epoch_generator(3, 0)
    idx = torch.randperm(N, generator=g)[:BATCH]
    per = BATCH // world.size
    mine = idx[world.rank * per:(world.rank + 1) * per]
    # the step's own update would hide the gradients: capture them before the optimiser applies them
    grads = {}
    step = trainer.optimizer.step

    def capture(*args, **kwargs):
        grads.update({name: p.grad.clone() for name, p in trainer.model.named_parameters()})
        return step(*args, **kwargs)
    trainer.optimizer.step = capture
    losses = trainer._step(idx, mine, None, g, torch.Generator().manual_seed(world.rank))
    return {"losses": losses, "grads": grads, "bank": trainer.bank.clone(),
            "params": {k: v.clone() for k, v in trainer.model.state_dict().items()}}


def _run_processes(worker: str, size: int, tmp_path, out: str) -> None:
    """`worker(rank, size, store, out)` in `size` fresh Python processes joined by a gloo file store."""
    from tests.helpers import ROOT
    code = f"from tests.icbpl_core.training.test_distributed import {worker}; import sys; " \
           f"{worker}(int(sys.argv[1]), {size}, {str(tmp_path / 'store')!r}, {out!r})"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(rank)], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"}) for rank in range(size)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err


def _worker(rank: int, size: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=size)
    try:
        torch.save(_one_step(World(rank, size, rank)), f"{out}.{rank}")
    finally:       # every process done with the group before any leaves it (gloo aborts otherwise)
        dist.barrier()
        dist.destroy_process_group()


def test_two_processes_compute_the_single_process_loss_and_gradients(tmp_path):
    _run_processes("_worker", 2, tmp_path, str(tmp_path / "step"))
    single = _one_step(World())
    for rank in (0, 1):
        got = torch.load(tmp_path / f"step.{rank}", weights_only=True)
        torch.testing.assert_close(got["losses"], single["losses"], rtol=1e-5, atol=1e-6)
        for name, grad in single["grads"].items():    # after DDP's average: the one-process gradient
            torch.testing.assert_close(got["grads"][name], grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(got["bank"], single["bank"], rtol=1e-5, atol=1e-6)
        for name, value in single["params"].items():
            torch.testing.assert_close(got["params"][name], value, rtol=1e-5, atol=1e-6)


def _gather_worker(rank: int, size: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=size)
    try:
        world = World(rank, size, rank)
        rows = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
        start, stop = shard(10, world)
        whole = gather_rows(rows[start:stop], 10, world, torch.device("cpu"))
        z = torch.full((1, 2, 4), float(rank + 1), requires_grad=True)
        gathered = gather_with_grad(z, world)
        (gathered * torch.arange(1.0, 25.0).view(1, 6, 4)).sum().backward()
        torch.save({"whole": None if whole is None else torch.from_numpy(whole), "gathered": gathered.detach(),
                    "grad": z.grad}, f"{out}.{rank}")
    finally:       # every process done with the group before any leaves it (gloo aborts otherwise)
        dist.barrier()
        dist.destroy_process_group()


def test_sharded_rows_and_gathered_latents(tmp_path):
    _run_processes("_gather_worker", 3, tmp_path, str(tmp_path / "g"))
    results = [torch.load(tmp_path / f"g.{r}", weights_only=True) for r in range(3)]
    torch.testing.assert_close(results[0]["whole"], torch.arange(30.0).reshape(10, 3))    # 4 + 4 + 2 rows
    assert results[1]["whole"] is None and results[2]["whole"] is None
    weights = torch.arange(1.0, 25.0).view(1, 6, 4)
    for rank, r in enumerate(results):
        assert r["gathered"].shape == (1, 6, 4)
        assert r["gathered"][0, :, 0].tolist() == [1, 1, 2, 2, 3, 3]
        # each process's loss reaches every slice: the gradient of z is summed over the 3 processes
        torch.testing.assert_close(r["grad"], 3 * weights[:, 2 * rank:2 * rank + 2])


# -- the command line, through torchrun ------------------------------------------------------------

TWO = ["--gpus", "2", "--device", "cpu", "--dataset", "digits", "--quiet"]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_two_process_digits_run_writes_one_run_that_clusters_well(tmp_path):
    done = subprocess.run([*icbpl_command(), "train", *TWO, "--epochs", "40", "--runs-dir", tmp_path / "runs",
                           "--cache-dir", tmp_path / "cache"], capture_output=True, text=True, timeout=900, env=_env())
    assert done.returncode == 0, done.stderr
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and run_folder(done) == runs[0]
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["backend"] == "gloo" and metrics["device"] == "cpu"
    assert json.loads((runs[0] / "config.json").read_text())["runtime"]["world_size"] == 2
    assert metrics["acc"] > 0.85 and metrics["n_clusters_used"] == 10
    events = [json.loads(line) for line in (runs[0] / "events.jsonl").read_text().splitlines()]
    assert sum(e["type"] == "epoch" for e in events) == 40      # one writer: each epoch once


@pytest.mark.slow
def test_two_process_run_stopped_and_resumed_ends_as_an_uninterrupted_one(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")      # the same arithmetic in every run compared
    common = ["--epochs", "12", "--runs-dir", tmp_path / "runs", "--cache-dir", tmp_path / "cache"]
    whole = icbpl("train", *TWO, "--epochs", "12", "--runs-dir", tmp_path / "whole", "--cache-dir", tmp_path / "cache",
                  timeout=900)
    proc = subprocess.Popen([*icbpl_command(), "train", *map(str, TWO + common)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(), start_new_session=True)
    deadline = time.monotonic() + 600
    runs = tmp_path / "runs"
    while time.monotonic() < deadline:
        found = list(runs.iterdir()) if runs.is_dir() else []
        if found and (open_run(found[0]).status().get("epoch") or 0) >= 3:
            break
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)         # Ctrl-C in the terminal: every process of the group
    out, err = proc.communicate(timeout=120)
    run = open_run(found[0])
    assert run.state == "cancelled", err
    assert 3 <= run.status()["epoch"] < 12
    resumed = icbpl("resume", run.path, "--gpus", "2", "--quiet", "--cache-dir", tmp_path / "cache", timeout=900)
    assert run.state == "finished", resumed.stderr
    assert (run.path / "assignments.csv").read_text() == (run_folder(whole) / "assignments.csv").read_text()


@pytest.mark.slow
def test_two_processes_share_the_extraction_and_write_one_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    head = ["--device", "cpu", "--dataset", "digits", "--backbone", "mobilenet_v2", "--mode", "head", "--limit", "200",
            "--epochs", "2", "--n-views", "1", "--quiet", "--cache-dir", tmp_path / "cache"]
    two = run_folder(icbpl("train", "--gpus", "2", *head, "--runs-dir", tmp_path / "two", timeout=900))
    # the clean pass and the view drawn in two shares: two entries, the view's key records the shares
    assert len(list((tmp_path / "cache" / "features").iterdir())) == 2
    one = icbpl("train", *head[:-3], "--cache-dir", tmp_path / "cache", "--runs-dir", tmp_path / "one", timeout=900)
    assert len(list((tmp_path / "cache" / "features").iterdir())) == 3      # the clean pass was read, not redone
    np.testing.assert_array_equal(np.load(two / "features.npy"), np.load(run_folder(one) / "features.npy"))
