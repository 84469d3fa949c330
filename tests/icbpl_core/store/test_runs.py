import json
import os
import subprocess
import sys

import numpy as np
import pytest

from icbpl_core.store import atomic
from icbpl_core.store.runs import RunError, create_run, list_runs, open_run


def test_create_list_open(tmp_path):
    a = create_run(tmp_path, {"dataset": "digits", "backbone": "scratch", "train": {"seed": 1}})
    b = create_run(tmp_path, {"dataset": "digits", "backbone": "scratch", "train": {"seed": 1}})
    assert a.path != b.path and a.config["dataset"] == "digits"
    assert {r.path for r in list_runs(tmp_path)} == {a.path, b.path}
    assert open_run(a.path).id == a.id
    with pytest.raises(RunError, match="not a run folder"):
        open_run(tmp_path / "nope")
    assert list_runs(tmp_path / "missing") == []


def test_running_run_whose_process_died_reads_interrupted(tmp_path):
    run = create_run(tmp_path, {"dataset": "digits"})
    run.set_status("running", epoch=2)
    assert run.state == "running"                      # this process is alive
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    status = json.loads(run.file("status.json").read_text())
    atomic.write_json(run.file("status.json"), {**status, "pid": int(dead)})
    assert run.state == "interrupted"


def test_events_skip_a_half_written_line(tmp_path):
    run = create_run(tmp_path, {"dataset": "digits"})
    run.log_event({"type": "epoch", "epoch": 1})
    with open(run.file("events.jsonl"), "a") as handle:
        handle.write('{"type": "epo')
    assert [e["type"] for e in run.events()] == ["epoch"]


def test_atomic_writes_leave_no_partial_file(tmp_path):
    target = tmp_path / "x.npy"
    atomic.save_npy(target, np.arange(3))

    class Boom:
        def __array__(self, *a, **k):
            raise RuntimeError("disk full")
    with pytest.raises(Exception):
        atomic.save_npy(target, Boom())
    np.testing.assert_array_equal(np.load(target), np.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]
    assert oct(os.stat(target).st_mode & 0o777) != oct(0o600)


def test_missing_results_say_so(tmp_path):
    run = create_run(tmp_path, {"dataset": "digits"})
    with pytest.raises(RunError, match="no latents.npy yet"):
        run.latents()
    with pytest.raises(RunError, match="no assignments"):
        run.assignments()
