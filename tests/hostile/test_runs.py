"""A run is trained by one process at a time, and resuming never loses or repeats work: a damaged
last checkpoint falls back to the one before, and missing checkpoints are refused, not restarted."""
import json
import time

from icbpl_core.store.runs import open_run
from tests.helpers import icbpl, run_folder, start_icbpl

SMALL = ["--dataset", "digits", "--limit", "300", "--neighbours-from", "pixels"]


def _stopped_run(tmp_path, epochs: int = 3):
    """A finished small run turned back into a stopped one (as if cancelled after its last epoch)."""
    run = run_folder(icbpl("train", *SMALL, "--epochs", epochs, "--runs-dir", tmp_path, "--quiet"))
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps({**status, "state": "cancelled"}))
    return run


def _fresh(run):
    """The run as launched but not started: its config alone."""
    for path in run.iterdir():
        if path.name != "config.json":
            path.unlink()
    return run


def test_a_run_being_trained_refuses_a_second_process(tmp_path):
    run = _fresh(_stopped_run(tmp_path, 2))
    with open_run(run).training_lock():                  # another process is training it
        proc = icbpl("resume", run, check=False)
    assert proc.returncode == 1 and "is being trained by another process" in proc.stderr
    assert sorted(p.name for p in run.iterdir()) == [".training.lock", "config.json"]     # nothing written


def test_simultaneous_resumes_train_each_epoch_once(tmp_path):
    run = _fresh(_stopped_run(tmp_path, 2))
    procs = [start_icbpl("resume", run, "--quiet") for _ in range(3)]
    results = [(p.wait(300), p.stderr.read()) for p in procs]
    assert [code for code, _ in results].count(0) == 1, results
    assert all("is being trained by another process" in err or "already finished" in err
               for code, err in results if code)
    epochs = [e["epoch"] for e in open_run(run).events() if e["type"] == "epoch"]
    assert epochs == [1, 2]                              # each epoch once in the event log


def test_a_damaged_checkpoint_falls_back_to_the_one_before(tmp_path):
    run = _stopped_run(tmp_path)
    straight = (run / "assignments.csv").read_text()
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])      # truncated
    proc = icbpl("resume", run)
    assert "checkpoint.pt cannot be read" in proc.stderr and "used the one before" in proc.stderr
    resumed = [e for e in open_run(run).events() if e["type"] == "resumed"][-1]
    assert resumed["epoch"] == 2 and "cannot be read" in resumed["note"]
    assert (run / "assignments.csv").read_text() == straight          # the same result, exactly


def test_missing_checkpoints_are_refused_not_restarted(tmp_path):
    run = _stopped_run(tmp_path)
    (run / "checkpoint.pt").unlink()
    (run / "checkpoint.prev.pt").unlink()
    before = time.time()
    proc = icbpl("resume", run, check=False)
    assert proc.returncode == 1
    assert "had trained 3 epoch(s) but its checkpoints are gone" in proc.stderr
    assert not [e for e in open_run(run).events() if e["type"] == "epoch" and e["time"] > before]
