"""The app's "suggest K": one background `icbpl suggest-k` per set of images and settings, its
figure, and the number of clusters it fills in."""
import time

from icbpl_app import background, suggest_k
from icbpl_app.state import Draft
from tests.helpers import write_digit_pngs


def test_the_job_key_follows_what_the_suggestion_depends_on_and_not_what_it_sets(tmp_path):
    draft = Draft({"dataset": "folder", "data_root": str(tmp_path), "n_clusters": 3}).to_dict()
    args = suggest_k.arguments(draft)
    assert "--data-root" in args and args[-4:] == ["--k-min", "2", "--k-max", "15"]
    assert not any(arg in args for arg in ("--n-clusters", "--epochs", "--n-heads"))
    same = suggest_k.job_for(tmp_path, {**draft, "n_clusters": 7, "epochs": 5})
    assert same.key == suggest_k.job_for(tmp_path, draft).key
    assert suggest_k.job_for(tmp_path, draft, 2, 8).key != same.key
    assert suggest_k.job_for(tmp_path, {**draft, "seed": 4}).key != same.key
    assert same.state == "none"


def test_a_suggestion_runs_in_the_background_and_fills_the_number_of_clusters(tmp_path, monkeypatch):
    monkeypatch.setenv("ICBPL_CACHE_DIR", str(tmp_path / "cache"))
    images = tmp_path / "images"
    write_digit_pngs(images, 30, classes=True)
    draft = Draft({"dataset": "folder", "data_root": str(images), "backbone": "mobilenet_v2"}).to_dict()
    job = suggest_k.start(tmp_path / "runs", draft, 2, 4)
    assert suggest_k.start(tmp_path / "runs", draft, 2, 4).folder == job.folder      # asked twice: one job
    deadline = time.monotonic() + 600
    while job.state == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert job.state == "done", (job.folder / background.LOG).read_text()
    suggestion = job.suggestion
    assert suggestion.ks() == [2, 3, 4] and suggestion.backbone == "mobilenet_v2" and suggestion.images == 30
    assert suggest_k.form_values(suggestion) == {"n_clusters": suggestion.k}
    fig = suggest_k.figure(suggestion)
    assert [list(trace.x) for trace in fig.data] == [[2, 3, 4]] * len(suggest_k.SHOWN)
    assert f"suggested K = {suggestion.k}" in str(fig.layout.annotations)


def test_a_failed_suggestion_says_why(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    draft = Draft({"dataset": "folder", "data_root": str(empty), "backbone": "mobilenet_v2"}).to_dict()
    job = suggest_k.start(tmp_path / "runs", draft)
    deadline = time.monotonic() + 120
    while job.state == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.state == "failed"
    assert "no images" in job.progress
