"""Pipeline behaviour on bad input: clear errors, recorded in the run, nothing lost."""
import json

import pytest
import torch

from icbpl_core.backbones import BACKBONES, register
from icbpl_core.backbones.base import Backbone
from icbpl_core.config import ConfigError, RunSpec, TrainConfig
from icbpl_core.store.runs import create_run
from icbpl_core.training import inputs, pipeline


class NaNBackbone(Backbone):
    feature_dim = 8
    in_channels = 1
    mean, std = (0.5,), (0.5,)
    pretrained = True
    weights_id = "nan"

    def forward(self, x):
        return torch.full((x.shape[0], self.feature_dim), float("nan"))


@pytest.fixture(scope="module", autouse=True)
def nan_backbone():
    register("test-nan", "emits NaN features", lambda **kw: NaNBackbone())
    yield
    BACKBONES.pop("test-nan")


def _spec(**train):
    return RunSpec(dataset="digits", limit=100, backbone="test-nan", mode="head", n_views=1,
                   train=TrainConfig(epochs=1, **train)).resolved()


def test_nan_features_fail_the_run_with_a_clear_message(tmp_path):
    spec = _spec()
    run = create_run(tmp_path, spec.to_dict())
    with pytest.raises(ValueError, match="100 feature rows contain NaN or inf"):
        pipeline.run(spec, run, cache_dir=tmp_path / "cache")
    status = run.status()
    assert status["state"] == "failed" and "NaN" in status["error"]
    assert run.events()[-1]["type"] == "error"
    assert not run.file("metrics.json").exists()


def test_config_json_holds_everything_to_reproduce(tmp_path):
    spec = RunSpec(dataset="digits", limit=50, train=TrainConfig(epochs=1, n_clusters=5, seed=4)).resolved()
    run = create_run(tmp_path, spec.to_dict())
    pipeline.run(spec, run, cache_dir=tmp_path / "cache")
    stored = RunSpec.from_dict(json.loads(run.file("config.json").read_text()))
    assert stored == spec
    assert run.metrics["n_clusters"] == 5 and len(run.assignments()) == 50


def test_a_run_from_before_the_precision_option_resumes_in_fp32(tmp_path):
    spec = RunSpec(dataset="digits", limit=50, train=TrainConfig(epochs=1, n_clusters=5)).resolved()
    run = create_run(tmp_path, spec.to_dict())
    pipeline.run(spec, run, cache_dir=tmp_path / "cache")
    config = json.loads(run.file("config.json").read_text())
    del config["precision"]                                    # as such runs were written
    state = torch.load(run.file("checkpoint.pt"), weights_only=True)
    del state["spec"]["precision"]
    torch.save(state, run.file("checkpoint.pt"))
    old = RunSpec.from_dict(config)
    assert old.precision == "fp32"
    events = []
    pipeline.run(old, run, resume=True, on_event=events.append, cache_dir=tmp_path / "cache")
    assert any(e["type"] == "resumed" for e in events)
    state["spec"]["train"]["epochs"] = 2                       # a real difference is still refused
    torch.save(state, run.file("checkpoint.pt"))
    with pytest.raises(ConfigError, match="train.epochs: 2 -> 1"):
        pipeline.run(old, run, resume=True, cache_dir=tmp_path / "cache")


def _random_png_folder(root, n: int, shape: tuple[int, ...]) -> None:
    """n random PNGs of `shape` ((H, W): grey, (H, W, 3): colour) in two class folders, a and b."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for i in range(n):
        path = root / "ab"[i % 2] / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(path)


class SizeRecordingBackbone(Backbone):
    """Pretrained-looking, 224 px native input; records the input sides it is given."""
    feature_dim = 4
    input_size = 224
    pretrained = True
    weights_id = "size-recorder"
    seen: set = set()

    def forward(self, x):
        SizeRecordingBackbone.seen.add(x.shape[-1])
        return x.mean(dim=(2, 3)).repeat(1, 2)[:, :self.feature_dim] + torch.arange(self.feature_dim)


@pytest.mark.parametrize("mode, given, expected", [("L", None, 96), ("RGB", None, 224), ("L", 64, 64)])
def test_small_grey_folders_go_into_a_pretrained_backbone_at_96_px(tmp_path, mode, given, expected):
    """A folder of 28 px grey PNGs gets the Fashion-MNIST recipe's 96 px, not the backbone's 224
    (5.4x the compute for no better features); colour images and an explicit size are left alone."""
    register("test-size", "records input sizes", lambda **kw: SizeRecordingBackbone())
    try:
        _random_png_folder(tmp_path / "imgs", 12, (28, 28) if mode == "L" else (28, 28, 3))
        spec = RunSpec(dataset="folder", data_root=str(tmp_path / "imgs"), backbone="test-size", image_size=given,
                       n_views=1, train=TrainConfig(epochs=1, n_clusters=2, batch_size=4)).resolved()
        SizeRecordingBackbone.seen = set()
        events = []
        pipeline.run(spec, create_run(tmp_path / "runs", spec.to_dict()), cache_dir=tmp_path / "cache",
                     on_event=events.append)
        assert SizeRecordingBackbone.seen == {expected}
        assert [e["input_size"] for e in events if e["type"] == "data"] == [expected]
    finally:
        BACKBONES.pop("test-size")


def test_big_lazily_read_datasets_stream_through_extraction(tmp_path, monkeypatch):
    """Head mode never loads a big folder into memory; features match the in-memory path's."""
    import numpy as np
    _random_png_folder(tmp_path / "imgs", 40, (24, 24, 3))
    spec = RunSpec(dataset="folder", data_root=str(tmp_path / "imgs"), backbone="mobilenet_v2", image_size=32,
                   n_views=1, train=TrainConfig(epochs=1, n_clusters=2, batch_size=16)).resolved()
    in_memory = create_run(tmp_path / "a", spec.to_dict())
    pipeline.run(spec, in_memory, cache_dir=tmp_path / "cache")
    monkeypatch.setattr(inputs, "IN_MEMORY_BYTES", 1000)
    monkeypatch.setattr(inputs.ImageDataset, "to_array", lambda *a, **k: pytest.fail("images loaded whole"))
    events = []
    streamed = create_run(tmp_path / "b", spec.to_dict())
    pipeline.run(spec, streamed, cache_dir=tmp_path / "cache", on_event=events.append)
    assert [e["streamed"] for e in events if e["type"] == "data"] == [True]
    assert any(e["type"] == "extract" for e in events)            # not served from the in-memory run's cache
    a, b = (np.load(r.file("features.npy")).astype(np.float32) for r in (streamed, in_memory))
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.99    # the same images, upsampled by PIL (streamed) or by torch (in memory)


def test_a_scratch_encoder_mines_its_neighbours_in_a_pretrained_backbones_features(tmp_path):
    events = []
    spec = RunSpec(dataset="digits", limit=200, train=TrainConfig(epochs=1, hidden_dim=64)).resolved()
    run = create_run(tmp_path, spec.to_dict())
    pipeline.run(spec, run, on_event=events.append, cache_dir=tmp_path / "cache")
    assert any(e["type"] == "extract" and e["what"] == "neighbour features" for e in events)
    mined = [e for e in events if e["type"] == "extract"]
    assert mined[-1]["done"] == mined[-1]["total"] == 200
    assert json.loads(run.file("config.json").read_text())["neighbours_from"] == "mobilenet_v2_mid"
    again = []     # the second run reads the neighbour features from the cache
    pipeline.run(spec, create_run(tmp_path, spec.to_dict()), on_event=again.append, cache_dir=tmp_path / "cache")
    assert not any(e["type"] == "extract" for e in again)
    pixels = RunSpec(dataset="digits", limit=200, neighbours_from="pixels",
                     train=TrainConfig(epochs=1, hidden_dim=64)).resolved()
    plain = []
    pipeline.run(pixels, create_run(tmp_path, pixels.to_dict()), on_event=plain.append, cache_dir=tmp_path / "cache")
    assert not any(e["type"] == "extract" for e in plain)


def test_the_feature_cache_key_is_built_from_the_tables_cache_parameters():
    """The key's parts keep their names, so caches written before stay valid."""
    from icbpl_core import params
    from icbpl_core.backbones import create_backbone
    from icbpl_core.datasets import load_dataset

    spec = RunSpec(dataset="digits", limit=20, backbone="mobilenet_v2", image_size=32).resolved()
    backbone = create_backbone("mobilenet_v2", in_channels=1)
    dataset = load_dataset("digits", limit=20)
    features = inputs.Features(spec, inputs.Inputs.prepare(dataset, backbone, 32, "head", "auto"), backbone,
                               lambda what: None)
    parts = features.key_parts()
    assert set(parts) == {"dataset", "root", "backbone", "weights", "size", "augment", "precision", "ids"}
    assert {p.cache_key for p in params.PARAMS if p.cache_key} == set(parts) - {"ids"}
    assert parts["size"] == 32 and parts["weights"] == backbone.weights_id and parts["augment"] == "grey"
    other = features.key_parts(backbone="mobilenet_v2_mid", image_size=96)
    assert other["backbone"] == "mobilenet_v2_mid" and other["size"] == 96 and other["ids"] == parts["ids"]
