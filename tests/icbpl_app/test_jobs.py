"""Training jobs from the app: launch from the page, progress, cancel, resume, failures,
duplicate launches."""
import json
import time

import pytest
from streamlit.testing.v1 import AppTest

from icbpl_app import jobs, processes, state
from icbpl_core.store.runs import list_runs
from tests.helpers import APP, wait_until_stopped

SMALL = {"dataset": "digits", "limit": 200, "backbone": "scratch-mlp", "neighbours_from": "pixels", "epochs": 3}


def draft(**values) -> state.Draft:
    return state.Draft({**SMALL, **values})


def wait_for(predicate, timeout=120.0, poll=0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError("timed out")


def make_app(page: str = "pages/train.py", **session) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=120)
    for key, value in session.items():
        at.session_state[key] = value
    at.switch_page(page).run()
    return at


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ICBPL_RUNS_DIR", str(tmp_path / "runs"))
    yield tmp_path / "runs"
    for run in list_runs(tmp_path / "runs"):      # never leave a job behind
        if run.active:
            jobs.cancel(run)
            wait_until_stopped(run, 30)
    for proc in list(processes._CHILDREN.values()):   # background projections these tests started
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def test_start_cancel_resume_from_the_train_page(runs_dir):
    at = make_app(draft=draft(epochs=12).to_dict())
    at.button(key="t_start").click().run()
    assert not at.exception
    (run,) = list_runs(runs_dir)
    assert at.session_state["run_id"] == run.id
    assert run.state in ("starting", "running")
    assert run.file("train.log").is_file()
    # a second click, a reload, another tab: no second job for the same run
    with pytest.raises(jobs.JobError):
        jobs.resume(run)
    with pytest.raises(jobs.DuplicateJob):
        jobs.launch(runs_dir, draft(epochs=12).spec())

    wait_for(lambda: any(e["type"] == "epoch" for e in run.events()))
    at.run()
    assert not at.exception and not at.error
    assert any(p.proto.value > 0 for p in at.get("progress"))
    at.button(key=f"cancel-{run.id}").click().run()
    assert wait_until_stopped(run, 60) == "cancelled"
    at.run()
    assert any("Cancelled" in w.value for w in at.warning)

    at.button(key=f"resume-{run.id}").click().run()
    assert not at.exception
    assert run.state in ("starting", "running")
    events_before = len(run.events())
    assert wait_until_stopped(run, 240) == "finished"
    assert any(e["type"] == "resumed" for e in run.events()[events_before:])
    at.run()
    assert any("Finished" in s.value for s in at.success)
    assert len(list_runs(runs_dir)) == 1
    # having watched it finish, the page starts the latent-space projection in the background
    assert run.file("projection.log").is_file()


@pytest.mark.parametrize("given", [None, "3"])
def test_training_jobs_leave_a_core_to_the_app_unless_told(runs_dir, monkeypatch, given):
    from pathlib import Path
    if given is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", given)
    run = jobs.launch(runs_dir, draft(epochs=1).spec())
    environ = Path(f"/proc/{run.job()['pid']}/environ").read_bytes().split(b"\0")
    expected = given or str(jobs.worker_threads())
    assert f"OMP_NUM_THREADS={expected}".encode() in environ
    assert wait_until_stopped(run, 120) == "finished"


def test_the_same_launch_request_twice_starts_one_job(runs_dir):
    spec = draft(seed=3, epochs=2).spec()
    a = jobs.launch(runs_dir, spec, request_id="tab-1-click-1")
    b = jobs.launch(runs_dir, spec, request_id="tab-1-click-1")
    assert a.path == b.path and len(list_runs(runs_dir)) == 1
    assert json.loads(a.file("job.json").read_text())["kind"] == "train"
    assert wait_until_stopped(a, 180) == "finished"
    assert a.metrics and a.file("assignments.csv").is_file()
    # the log holds the process's output; the config is what `train` would have written
    assert "run folder:" in jobs.log_tail(a)
    assert a.config["backbone"] == "scratch-mlp" and a.config["mode"] == "finetune"


def test_a_failed_run_shows_its_error_in_plain_words(runs_dir, tmp_path):
    bad = state.Draft({"dataset": "folder", "data_root": str(tmp_path / "no-such-folder"), "backbone": "scratch-mlp"})
    run = jobs.launch(runs_dir, bad.spec())
    assert wait_until_stopped(run, 120) == "failed"
    at = make_app(run_id=run.id)
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("Training failed" in e and "is not a folder of images" in e for e in errors), errors
    assert all("Traceback" not in e for e in errors)
    assert at.button(key=f"resume-{run.id}")            # it can be resumed once fixed


def test_a_launch_is_refused_with_a_message_when_the_settings_cannot_work(runs_dir):
    at = make_app(draft=draft(n_clusters=1).to_dict())
    assert at.button(key="t_start").disabled
    assert any("Number of clusters K: must be between 2 and 1000, got 1" in e.value for e in at.error)
    with pytest.raises(jobs.JobError):
        jobs.launch(runs_dir, draft(n_clusters=1).spec())
    assert list_runs(runs_dir) == []


def test_a_failed_runs_message_points_at_what_the_app_can_change(tmp_path):
    from icbpl_core.store.runs import create_run

    run = create_run(tmp_path, {"dataset": "digits"})
    run.set_status("failed", error="the feature cache cannot be used: /c is not a folder (cache folder /c)",
                   setting="cache_dir")
    text = jobs.error_message(run)
    assert text.startswith("The feature cache cannot be used: /c is not a folder (cache folder /c). ")
    assert "ICBPL_CACHE_DIR" in text and "--cache-dir" not in text
    run.set_status("failed", error="3 clusters is more than the 2 images; choose 2 clusters or fewer",
                   setting="n_clusters")
    assert jobs.error_message(run).endswith("Change “Number of clusters K” on Data & model.")
