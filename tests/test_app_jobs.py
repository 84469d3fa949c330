"""Training jobs from the app: launch from the page, progress, cancel, resume, failures,
duplicate launches; and the progress / command-line helpers behind the Train page."""
import json
import shlex
import time

import pytest

from conftest import ROOT

streamlit_testing = pytest.importorskip("streamlit.testing.v1")
AppTest = streamlit_testing.AppTest

from icbpl_core import appstate, jobs  # noqa: E402
from icbpl_core.progress import format_seconds, summarize  # noqa: E402
from icbpl_core.runs import list_runs  # noqa: E402

SMALL = {"dataset": "digits", "limit": 200, "backbone": "scratch-mlp"}


def draft(**train) -> appstate.Draft:
    d = appstate.Draft(**SMALL)
    d.train.update({"epochs": 3, **train})
    return d


def wait_for(predicate, timeout=120.0, poll=0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError("timed out")


def make_app(page: str = "pages/train.py", **state) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    for key, value in state.items():
        at.session_state[key] = value
    at.switch_page(page).run()
    return at


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ICBPL_RUNS_DIR", str(tmp_path / "runs"))
    yield tmp_path / "runs"
    for run in list_runs(tmp_path / "runs"):      # never leave a job behind
        if jobs.is_active(run):
            jobs.cancel(run)
            jobs.wait(run, 30)
    for proc in list(jobs._CHILDREN.values()):   # background projections these tests started
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def test_start_cancel_resume_from_the_train_page(runs_dir):
    at = make_app(draft=draft(epochs=12).to_dict())
    at.button(key="t_start").click().run()
    assert not at.exception
    (run,) = list_runs(runs_dir)
    assert at.session_state["run_id"] == run.id
    assert jobs.state(run) in ("starting", "running")
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
    assert jobs.wait(run, 60) == "cancelled"
    at.run()
    assert any("Cancelled" in w.value for w in at.warning)

    at.button(key=f"resume-{run.id}").click().run()
    assert not at.exception
    assert jobs.state(run) in ("starting", "running")
    events_before = len(run.events())
    assert jobs.wait(run, 240) == "finished"
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
    environ = Path(f"/proc/{jobs.job_info(run)['pid']}/environ").read_bytes().split(b"\0")
    expected = given or str(jobs.worker_threads())
    assert f"OMP_NUM_THREADS={expected}".encode() in environ
    assert jobs.wait(run, 120) == "finished"


def test_the_same_launch_request_twice_starts_one_job(runs_dir):
    spec = draft(seed=3, epochs=2).spec()
    a = jobs.launch(runs_dir, spec, request_id="tab-1-click-1")
    b = jobs.launch(runs_dir, spec, request_id="tab-1-click-1")
    assert a.path == b.path and len(list_runs(runs_dir)) == 1
    assert json.loads(a.file("job.json").read_text())["kind"] == "train"
    assert jobs.wait(a, 180) == "finished"
    assert a.metrics and a.file("assignments.csv").is_file()
    # the log holds the process's output; the config is what `train` would have written
    assert "run folder:" in jobs.log_tail(a)
    assert a.config["backbone"] == "scratch-mlp" and a.config["mode"] == "finetune"


def test_a_failed_run_shows_its_error_in_plain_words(runs_dir, tmp_path):
    bad = appstate.Draft(dataset="folder", data_root=str(tmp_path / "no-such-folder"), backbone="scratch-mlp")
    run = jobs.launch(runs_dir, bad.spec())
    assert jobs.wait(run, 120) == "failed"
    at = make_app(run_id=run.id)
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("Training failed" in e and "is not a folder of images" in e for e in errors), errors
    assert all("Traceback" not in e for e in errors)
    assert at.button(key=f"resume-{run.id}")            # it can be resumed once fixed


def test_a_launch_is_refused_with_a_message_when_the_settings_cannot_work(runs_dir):
    at = make_app(draft=draft(n_clusters=1).to_dict())
    assert at.button(key="t_start").disabled
    assert any("at least 2" in e.value for e in at.error)
    with pytest.raises(jobs.JobError):
        jobs.launch(runs_dir, draft(n_clusters=1).spec())
    assert list_runs(runs_dir) == []


# -- helpers behind the Train page ------------------------------------------------------------------

def test_progress_from_events():
    t0 = 1000.0
    events = [{"type": "start", "time": t0, "resume": False},
              {"type": "data", "time": t0 + 1, "n_images": 300, "labels": True, "backbone": "scratch"},
              {"type": "epoch", "time": t0 + 3, "epoch": 1, "epochs": 4, "seconds": 2.0,
               "losses": {"total": 3.0, "mmd": 1.0}, "metrics": {"acc": 0.3, "nmi": 0.2, "ari": 0.1},
               "n_clusters_used": 7},
              {"type": "step", "time": t0 + 4, "epoch": 2, "epochs": 4, "step": 1, "steps": 2, "loss": 2.0}]
    p = summarize(events, "running", 4, now=t0 + 4.5)
    assert p.phase == "training" and p.epoch == 1 and p.epochs == 4
    assert p.fraction == pytest.approx(1.5 / 4)
    assert p.elapsed == pytest.approx(4.5)
    assert p.remaining == pytest.approx(2.5 * 2.0)
    table = p.table()
    assert table.loc[0, "loss_mmd"] == 1.0 and table.loc[0, "acc"] == 0.3 and p.has_labels
    done = events + [{"type": "epoch", "time": t0 + 9, "epoch": 4, "epochs": 4, "seconds": 2.0, "losses": {}},
                     {"type": "done", "time": t0 + 10}]
    p = summarize(done, "finished", 4, now=t0 + 100)
    assert p.phase == "finished" and p.fraction == 1.0 and p.remaining == 0 and p.elapsed == pytest.approx(10)
    resumed = done[:3] + [{"type": "cancelled", "time": t0 + 5}, {"type": "start", "time": t0 + 50},
                          {"type": "resumed", "time": t0 + 52, "epoch": 1}]
    p = summarize(resumed, "running", 4, now=t0 + 53)
    assert p.elapsed == pytest.approx(3) and p.epoch == 1 and p.phase == "training"
    assert summarize([], "starting", 4).phase == "starting"
    restarting = summarize(resumed[:4], "starting", 4, now=t0 + 60)      # resume launched, no event yet
    assert restarting.phase == "starting" and restarting.elapsed is None and restarting.epoch == 1
    assert format_seconds(None) == "—" and format_seconds(65) == "1m 05s" and format_seconds(3700) == "1h 01m"


@pytest.mark.parametrize("average_views", [True, False])
def test_the_reproduce_command_parses_back_to_the_same_config(average_views):
    from icbpl_core.cli import _spec_from_args, build_parser

    spec = appstate.Draft(dataset="digits", limit=500, backbone="scratch", mode="finetune",
                          average_views=average_views,
                          train={"n_clusters": 12, "epochs": 7, "w_mmd": 2.5, "seed": 4, "lr": 0.0005}).spec()
    config = spec.resolved().to_dict()
    command = appstate.train_command(config)
    assert ("--no-average-views" in command) is not average_views
    args = build_parser().parse_args(shlex.split(command)[3:])
    assert _spec_from_args(args).resolved().to_dict() == config
    pinned = shlex.split(appstate.train_command(config, threads=1))
    assert pinned[0] == "OMP_NUM_THREADS=1" and pinned[1:] == shlex.split(command)
