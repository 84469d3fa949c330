"""Suggest K: every K in a range scored from the images alone, never their labels; cached; the
command line's last line is the suggested K."""
import json

import numpy as np
import pytest

from icbpl_core.config import RunSpec, TrainConfig
from icbpl_core.errors import ConfigError
from icbpl_core.training import choice as auto
from icbpl_core.training import suggest_k as sk
from tests.helpers import icbpl, write_digit_pngs


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("own") / "images"
    write_digit_pngs(root, 60, classes=True)
    return root


class _LabelsForbidden:
    """A dataset that fails the test when anything reads its labels or class names."""

    def __init__(self, dataset):
        self._dataset = dataset

    def __getattr__(self, name):
        if name in ("labels", "class_names", "has_labels", "n_classes"):
            raise AssertionError(f"suggest K read the dataset's {name}")
        return getattr(self._dataset, name)

    def __len__(self):
        return len(self._dataset)


def _forbid_labels(monkeypatch):
    for module in (sk, auto):
        load = module.load_dataset
        monkeypatch.setattr(module, "load_dataset", lambda *a, _load=load, **k: _LabelsForbidden(_load(*a, **k)))


def test_suggest_k_never_reads_labels_and_scores_every_k(folder, monkeypatch):
    _forbid_labels(monkeypatch)
    # a folder: its backbone is the auto recipe's choice, which never reads labels either
    suggestion = sk.suggest_k(RunSpec(dataset="folder", data_root=str(folder), recipe="auto"), 2, 4)
    assert suggestion.ks() == [2, 3, 4] and 2 <= suggestion.k <= 4
    assert all(set(sk.SCORES) <= set(s) for s in suggestion.scores.values())
    assert suggestion.backbone_from.startswith("the auto recipe's choice")
    assert suggestion.sample == suggestion.images == 60
    assert suggestion.backbone in suggestion.why and f"K = {suggestion.k}" in suggestion.why
    marked = [line[1:].split()[0] for line in suggestion.table().splitlines() if line.startswith("*")]
    assert marked == [str(suggestion.k)]


def test_a_given_backbone_is_scored_and_a_second_suggestion_comes_from_the_cache(folder, monkeypatch):
    spec = RunSpec(dataset="folder", data_root=str(folder), backbone="mobilenet_v2", train=TrainConfig(seed=5))
    monkeypatch.setattr(auto, "choose", lambda *a, **k: pytest.fail("a given backbone is not chosen"))
    first = sk.suggest_k(spec, 2, 3, given={"backbone"})
    assert (first.backbone, first.backbone_from) == ("mobilenet_v2", "given")
    monkeypatch.setattr(auto, "score", lambda *a, **k: pytest.fail("scored again"))
    assert sk.suggest_k(spec, 2, 3, given={"backbone"}) == first


def test_a_datasets_scratch_encoder_is_probed_through_its_neighbour_backbone():
    spec = RunSpec(dataset="digits", recipe="dataset")
    assert sk.probe_backbone(spec, set(), None, None) == (
        "mobilenet_v2_mid", "where the dataset's scratch-mlp mines its neighbours")
    assert sk.probe_backbone(RunSpec(dataset="fashion-mnist", recipe="dataset"), set(), None, None) == (
        "mobilenet_v2_mid", "the dataset's default")


@pytest.mark.parametrize("k_min,k_max,fragment", [(1, 5, "k-min"), (6, 5, "k-min"), (2, 61, "60 images")])
def test_a_range_that_cannot_work_is_refused(folder, k_min, k_max, fragment):
    with pytest.raises(ConfigError, match=fragment):
        sk.suggest_k(RunSpec(dataset="folder", data_root=str(folder), backbone="mobilenet_v2"), k_min, k_max,
                     given={"backbone"})


def test_well_separated_blobs_get_their_number_of_clusters():
    """Four Gaussian blobs of 300 points in 32 dimensions get K = 4. Stability alone ties K = 4 with
    K = 5, whose runs agree as well by leaving the fifth cluster empty: the share used breaks it."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 32)) * 4
    x = (centres[np.repeat(np.arange(4), 300)] + rng.normal(size=(1200, 32))).astype(np.float32)
    views = (x[None] + 0.3 * rng.normal(size=(1, *x.shape))).astype(np.float32)
    scores = sk.sweep(x, views, range(2, 7), TrainConfig())
    assert sorted(scores) == [2, 3, 4, 5, 6]
    assert sk.pick(scores)[0] == 4
    assert scores[5]["stability"] >= scores[4]["stability"] - 0.01 and scores[5]["used"] < 1


def test_the_command_line_prints_the_table_and_the_suggested_k_last(tmp_path):
    out = tmp_path / "scores.json"
    proc = icbpl("suggest-k", "--dataset", "digits", "--limit", "120", "--backbone", "mobilenet_v2",
                 "--k-min", "2", "--k-max", "4", "--out", out)
    last = proc.stdout.strip().splitlines()[-1]
    assert last.isdigit() and 2 <= int(last) <= 4
    saved = json.loads(out.read_text())
    assert saved["k"] == int(last) and sorted(saved["scores"], key=int) == ["2", "3", "4"]
    assert "suggested K:" in proc.stderr and "stability" in proc.stderr and "mobilenet_v2" in proc.stderr
    refused = icbpl("suggest-k", "--dataset", "digits", "--limit", "20", "--k-max", "30", check=False)
    assert refused.returncode == 2 and "more than the 20 images" in refused.stderr and not refused.stdout
