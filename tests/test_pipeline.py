"""Pipeline behaviour on bad input: clear errors, recorded in the run, nothing lost."""
import json

import pytest
import torch

from icbpl_core import pipeline
from icbpl_core.backbones import BACKBONES, Backbone, register
from icbpl_core.config import TrainConfig
from icbpl_core.pipeline import ConfigError, RunSpec
from icbpl_core.runs import create_run


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
    register("test-nan", "emits NaN features", has_pretrained=True)(lambda **kw: NaNBackbone())
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


def test_head_mode_needs_a_pretrained_backbone(tmp_path):
    spec = RunSpec(dataset="digits", limit=100, backbone="scratch", mode="head",
                   train=TrainConfig(epochs=1)).resolved()
    with pytest.raises(ConfigError, match="needs a pretrained backbone"):
        pipeline.run(spec, create_run(tmp_path, spec.to_dict()), cache_dir=tmp_path / "cache")


def test_auto_mode_and_default_backbone_resolve():
    spec = RunSpec(dataset="digits").resolved()
    assert spec.backbone == "scratch-mlp" and spec.mode == "finetune"
    assert RunSpec(dataset="digits", backbone="mobilenet_v2").resolved().mode == "head"
    with pytest.raises(ConfigError, match="mode must be one of"):
        RunSpec(mode="sideways").resolved()
    assert RunSpec(precision="fp32").resolved().precision == "fp32"
    assert RunSpec().resolved().precision in ("fp32", "bf16")           # auto, as this CPU runs it
    with pytest.raises(ConfigError, match="precision must be one of"):
        RunSpec(precision="fp8").resolved()


def test_dataset_recipe_sits_under_explicit_options():
    assert TrainConfig.for_dataset("digits").hidden_dim == 1024            # the recipe
    assert TrainConfig.for_dataset("fashion-mnist").hidden_dim == 1024
    assert TrainConfig.for_dataset("fashion-mnist").n_heads == 4
    assert TrainConfig.for_dataset("fashion-mnist", n_heads=1).n_heads == 1
    assert TrainConfig.for_dataset("digits", hidden_dim=64).hidden_dim == 64
    assert TrainConfig.for_dataset("folder").hidden_dim == TrainConfig().hidden_dim


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


def test_the_dataset_sets_the_input_size_of_pretrained_backbones_unless_told():
    assert RunSpec(dataset="fashion-mnist").resolved().image_size == 96          # its default, mobilenet_v2_mid
    assert RunSpec(dataset="fashion-mnist", backbone="resnet18").resolved().image_size == 96
    assert RunSpec(dataset="fashion-mnist", image_size=128).resolved().image_size == 128
    assert RunSpec(dataset="fashion-mnist", backbone="scratch").resolved().image_size is None
    assert RunSpec(dataset="fashion-mnist", pretrained=False).resolved().image_size is None
    assert RunSpec(dataset="cifar10").resolved().image_size is None              # the backbone's own (224)


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
    register("test-size", "records input sizes", has_pretrained=True)(lambda **kw: SizeRecordingBackbone())
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
    monkeypatch.setattr(pipeline, "IN_MEMORY_BYTES", 1000)
    monkeypatch.setattr(pipeline.ImageDataset, "to_array", lambda *a, **k: pytest.fail("images loaded whole"))
    events = []
    streamed = create_run(tmp_path / "b", spec.to_dict())
    pipeline.run(spec, streamed, cache_dir=tmp_path / "cache", on_event=events.append)
    assert [e["streamed"] for e in events if e["type"] == "data"] == [True]
    assert any(e["type"] == "extract" for e in events)            # not served from the in-memory run's cache
    a, b = (np.load(r.file("features.npy")).astype(np.float32) for r in (streamed, in_memory))
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.99    # the same images, upsampled by PIL (streamed) or by torch (in memory)


def test_neighbour_sources_resolve_by_encoder_and_dataset():
    assert RunSpec(dataset="digits").resolved().neighbours_from == "mobilenet_v2_mid"     # digits' recipe
    assert RunSpec(dataset="mnist").resolved().neighbours_from == "pixels"                 # scratch elsewhere
    assert RunSpec(dataset="digits", backbone="mobilenet_v2").resolved().neighbours_from == "backbone"
    assert RunSpec(dataset="digits", neighbours_from="pixels").resolved().neighbours_from == "pixels"
    with pytest.raises(ConfigError, match="no features to mine neighbours in"):
        RunSpec(dataset="digits", neighbours_from="backbone").resolved()
    with pytest.raises(ConfigError, match="cannot mine neighbours in 'scratch'; choose one of: backbone, pixels"):
        RunSpec(dataset="digits", neighbours_from="scratch").resolved()
    # configs written before the option keep the neighbours they were trained with
    assert RunSpec.from_dict({"dataset": "digits", "backbone": "scratch-mlp"}).neighbours_from == "pixels"
    assert RunSpec.from_dict({"dataset": "digits", "backbone": "mobilenet_v2"}).neighbours_from == "backbone"


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
