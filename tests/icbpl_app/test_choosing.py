"""The app's "choose for me": one background `icbpl choose` per set of images and settings."""
import time

from icbpl_app import background, choosing
from icbpl_app.state import Draft
from icbpl_core.training.choice import CANDIDATES, CHOSEN
from tests.helpers import write_digit_pngs


def test_the_job_key_follows_what_the_choice_depends_on_and_not_what_it_sets(tmp_path):
    draft = Draft({"dataset": "folder", "data_root": str(tmp_path), "n_clusters": 3}).to_dict()
    args = choosing.arguments(draft)
    assert "--data-root" in args and "--n-clusters" in args
    assert not any(arg in args for arg in ("--backbone", "--n-heads", "--hidden-dim", "--epochs", "--recipe"))
    same = choosing.job_for(tmp_path, {**draft, "backbone": "efficientnet_lite0", "epochs": 5, "n_heads": 2})
    assert same.key == choosing.job_for(tmp_path, draft).key
    assert choosing.job_for(tmp_path, {**draft, "n_clusters": 4}).key != same.key
    assert choosing.job_for(tmp_path, draft).state == "none"


def test_a_choice_runs_in_the_background_and_fills_the_form(tmp_path, monkeypatch):
    monkeypatch.setenv("ICBPL_CACHE_DIR", str(tmp_path / "cache"))
    images = tmp_path / "images"
    write_digit_pngs(images, 30, classes=True)
    draft = Draft({"dataset": "folder", "data_root": str(images), "n_clusters": 3}).to_dict()
    job = choosing.start(tmp_path / "runs", draft)
    assert choosing.start(tmp_path / "runs", draft).folder == job.folder      # asked twice: one job
    deadline = time.monotonic() + 600
    while job.state == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert job.state == "done", (job.folder / background.LOG).read_text()
    choice = job.choice
    assert choice.chosen in CANDIDATES and choice.images == 30
    values = choosing.form_values(choice)
    assert set(values) <= set(CHOSEN) and values["backbone"] == CANDIDATES[choice.chosen]["backbone"]
    assert choosing.overridden(choice, {**draft, **values}) == []
    assert choosing.overridden(choice, {**draft, **values, "n_heads": 7}) == ["n_heads"]


def test_a_failed_choice_says_why(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    draft = Draft({"dataset": "folder", "data_root": str(empty), "n_clusters": 3}).to_dict()
    job = choosing.start(tmp_path / "runs", draft)
    deadline = time.monotonic() + 120
    while job.state == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.state == "failed"
    assert "no images" in job.progress
