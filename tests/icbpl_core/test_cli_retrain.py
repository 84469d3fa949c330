"""`icbpl retrain` as a user drives it: a digits run, a person's edits, a new run guided by them."""
import json
import shutil

import numpy as np
import pytest

from icbpl_core.store.runs import Run
from icbpl_core.training.corrections import GUIDANCE_FILE
from tests.helpers import icbpl, run_folder


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    return run_folder(icbpl("train", "--dataset", "digits", "--limit", "300", "--epochs", "2",
                            "--neighbours-from", "pixels", "--runs-dir", runs, "--quiet"))


def test_retrain_follows_the_curation(run_dir, tmp_path):
    curated = tmp_path / "curated"
    shutil.copytree(run_dir, curated)
    ids = Run(curated).assignments()
    a, b = ids["cluster"].value_counts().index[:2]
    icbpl("curate", curated, "--flag", "0-9", "verified")
    icbpl("curate", curated, "--flag", "10-14", "outlier")
    icbpl("curate", curated, "--move", "10-19", "--to", a)      # 10-14 stay outliers: not decided
    icbpl("curate", curated, "--merge", a, b)
    done = icbpl("retrain", curated, "--epochs", "2", "--runs-dir", tmp_path / "new")
    assert "retraining from" in done.stderr and "guided by" in done.stderr
    new = Run(run_folder(done))
    guidance = json.loads(new.file(GUIDANCE_FILE).read_text())
    assert guidance["source_run"] == "curated" and len(guidance["clusters"]) == len(set(ids["cluster"])) - 1
    decided = set(guidance["ids"])
    merged_in = ids.loc[(ids["cluster"] == b) & ~ids["index"].between(10, 14), "id"].astype(str)
    assert set(map(str, ids["id"][:10])) <= decided and set(map(str, ids["id"][10:15])).isdisjoint(decided)
    moved = ids.loc[ids["index"].between(15, 19) & (ids["cluster"] != a), "id"].astype(str)
    assert set(merged_in) | set(moved) <= decided
    assert new.config["train"]["n_clusters"] == len(guidance["clusters"])
    assert new.config["train"]["epochs"] == 2 and new.config["dataset"] == "digits"    # the source's settings
    assert new.state == "finished" and any(e["type"] == "guided" for e in new.events())
    assert new.metrics["n_clusters"] == len(guidance["clusters"])


def test_retrain_without_corrections_or_from_a_bad_folder_says_why(run_dir, tmp_path):
    done = icbpl("retrain", run_dir, "--runs-dir", tmp_path, check=False)
    assert done.returncode == 2 and "no corrections to learn from" in done.stderr
    assert not any(tmp_path.iterdir())                 # no run folder made
    done = icbpl("retrain", tmp_path / "nowhere", check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_warm_start_begins_from_the_curated_runs_model(run_dir, tmp_path):
    curated = tmp_path / "curated"
    shutil.copytree(run_dir, curated)
    icbpl("curate", curated, "--flag", "0-9", "verified")
    source = Run(curated).assignments()["cluster"].to_numpy()

    def agreement(*options) -> float:
        new = Run(run_folder(icbpl("retrain", curated, "--epochs", "1", "--lr", "1e-6", *options,
                                   "--runs-dir", tmp_path / "new")))
        curated_id = json.loads(new.file(GUIDANCE_FILE).read_text())["clusters"]    # new cluster j -> curated id
        return float((np.asarray(curated_id)[new.assignments()["cluster"].to_numpy()] == source).mean())
    assert agreement("--warm-start") > 0.95           # a step of lr 1e-6 away from the curated model
    assert agreement() < 0.5                          # from scratch: one epoch at 1e-6 is a random head
    (curated / "checkpoint.pt").unlink()
    done = icbpl("retrain", curated, "--warm-start", "--runs-dir", tmp_path / "gone", check=False)
    assert done.returncode == 1 and "cannot start from the curated run's model" in done.stderr
