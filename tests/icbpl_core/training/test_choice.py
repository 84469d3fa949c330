"""The automatic recipe: chosen from the images alone, recorded, cached, and under what was given."""
import json

import numpy as np
import pytest

from icbpl_core.config import RunSpec, TrainConfig
from icbpl_core.training import choice as auto
from tests.helpers import icbpl, run_folder, write_digit_pngs


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("own") / "images"
    write_digit_pngs(root, 60, classes=True)
    return root


def _spec(folder, **train):
    return RunSpec(dataset="folder", data_root=str(folder), train=TrainConfig(n_clusters=3, **train))


class _LabelsForbidden:
    """A dataset that fails the test when anything reads its labels or class names."""

    def __init__(self, dataset):
        self._dataset = dataset

    def __getattr__(self, name):
        if name in ("labels", "class_names", "has_labels", "n_classes"):
            raise AssertionError(f"the choice read the dataset's {name}")
        return getattr(self._dataset, name)

    def __len__(self):
        return len(self._dataset)


def test_the_choice_never_reads_labels_and_records_every_candidate(folder, monkeypatch):
    load = auto.load_dataset
    monkeypatch.setattr(auto, "load_dataset", lambda *a, **k: _LabelsForbidden(load(*a, **k)))
    choice = auto.choose(_spec(folder), given={"n_clusters"})
    # 8 x 8 images: the pretrained taps and the pixels are all scored, with every criterion
    assert set(choice.scores) == {"mobilenet_v2", "mobilenet_v2_mid", "efficientnet_lite0", "pixels"}
    assert all(set(auto.SCORES) <= set(s) for s in choice.scores.values())
    assert choice.chosen == max(choice.scores, key=lambda c: choice.scores[c][auto.CRITERION])
    assert choice.sample == choice.images == 60
    assert choice.chosen in choice.why and auto.CRITERION.replace("_", " ") in choice.why
    assert choice.values["backbone"] == auto.CANDIDATES[choice.chosen]["backbone"]
    if choice.chosen == "pixels":     # the MLP's neighbours come from the best pretrained tap
        assert choice.values["neighbours_from"] in {"mobilenet_v2", "mobilenet_v2_mid", "efficientnet_lite0"}


def test_a_second_choice_comes_from_the_cache(folder, monkeypatch):
    first = auto.choose(_spec(folder, seed=3), given={"n_clusters"})
    monkeypatch.setattr(auto, "score", lambda *a, **k: pytest.fail("scored again"))
    assert auto.choose(_spec(folder, seed=3), given={"n_clusters"}) == first


def test_given_values_win_and_a_given_backbone_leaves_nothing_to_choose(folder, monkeypatch):
    monkeypatch.setattr(auto, "score", lambda *a, **k: pytest.fail("nothing to score"))
    spec = _spec(folder)
    spec.backbone = "mobilenet_v2"
    choice = auto.choose(spec, given={"backbone"})
    assert choice.values == {} and "given" in choice.why
    picked = auto.Choice("mobilenet_v2_mid", {"backbone": "mobilenet_v2_mid", "n_heads": 4, "image_size": 96},
                         "why", given=["n_heads"])
    spec = _spec(folder, n_heads=2)
    applied = picked.applied(spec)
    assert (applied.backbone, applied.image_size, applied.train.n_heads) == ("mobilenet_v2_mid", 96, 2)


def test_scores_rank_features_that_separate_the_clusters_above_noise():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 32)) * 4
    clustered = (centres[np.repeat(np.arange(3), 50)] + rng.normal(size=(150, 32))).astype(np.float32)
    noise = rng.normal(size=(150, 32)).astype(np.float32)
    jitter = lambda x: (x[None] + 0.3 * rng.normal(size=(2, *x.shape))).astype(np.float32)  # noqa: E731
    train = TrainConfig(n_clusters=3)
    good, bad = auto.score(clustered, jitter(clustered), 3, train), auto.score(noise, jitter(noise), 3, train)
    assert good["view_consistency"] > bad["view_consistency"]
    assert good["stability"] > bad["stability"]


def test_a_folder_trains_with_the_auto_recipe_from_the_command_line(folder, tmp_path):
    run = run_folder(icbpl("train", "--dataset", "folder", "--data-root", folder, "--n-clusters", 3, "--epochs", 1,
                           "--runs-dir", tmp_path, "--cache-dir", tmp_path / "cache"))
    config = json.loads((run / "config.json").read_text())
    choice = json.loads((run / "choice.json").read_text())
    assert config["recipe"] == "auto"
    assert config["backbone"] == auto.CANDIDATES[choice["chosen"]]["backbone"]
    assert set(choice["scores"]) >= {"mobilenet_v2", "mobilenet_v2_mid", "efficientnet_lite0"}
    # the named recipe instead: no choice, the table's default backbone
    run = run_folder(icbpl("train", "--dataset", "folder", "--data-root", folder, "--n-clusters", 3, "--epochs", 1,
                           "--recipe", "dataset", "--runs-dir", tmp_path / "b", "--cache-dir", tmp_path / "cache"))
    assert not (run / "choice.json").exists()
    assert json.loads((run / "config.json").read_text())["backbone"] == "mobilenet_v2"
