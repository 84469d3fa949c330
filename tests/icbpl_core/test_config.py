"""RunSpec and TrainConfig: built from the parameter table, resolved per dataset and backbone,
and refusing what cannot work before anything is written."""
import pytest

from icbpl_core import params
from icbpl_core.config import ConfigError, ParamError, RunSpec, TrainConfig


def test_fields_and_defaults_are_the_tables():
    assert TrainConfig().to_dict() == params.defaults("train")
    spec = RunSpec().to_dict()
    assert {k: v for k, v in spec.items() if k != "train"} == params.defaults("spec")


def test_head_mode_needs_a_pretrained_backbone():
    with pytest.raises(ConfigError, match="needs a pretrained backbone") as caught:
        RunSpec(dataset="digits", backbone="scratch", mode="head").resolved()
    assert caught.value.setting == "mode"
    with pytest.raises(ConfigError, match="is set to random weights"):
        RunSpec(dataset="digits", backbone="mobilenet_v2", mode="head", pretrained=False).resolved()


def test_weights_files_go_only_where_they_can_load():
    with pytest.raises(ConfigError, match="takes no weights file"):
        RunSpec(backbone="scratch-mlp", weights="w.pth").resolved()
    with pytest.raises(ConfigError, match="give it a weights file") as caught:
        RunSpec(backbone="resnet18_cifar").resolved()
    assert caught.value.setting == "weights"
    spec = RunSpec(backbone="resnet18_cifar", weights="w.pth").resolved()     # a file makes it pretrained
    assert spec.mode == "head"
    assert RunSpec(backbone="resnet18_cifar", pretrained=False).resolved().mode == "finetune"


def test_auto_mode_and_default_backbone_resolve():
    spec = RunSpec(dataset="digits").resolved()
    assert spec.backbone == "scratch-mlp" and spec.mode == "finetune"
    assert RunSpec(dataset="digits", backbone="mobilenet_v2").resolved().mode == "head"
    with pytest.raises(ParamError, match="mode must be one of auto, head, finetune; got 'sideways'"):
        RunSpec(mode="sideways").resolved()
    assert RunSpec(precision="fp32").resolved().precision == "fp32"
    assert RunSpec().resolved().precision in ("fp32", "bf16")           # auto, as this CPU runs it
    with pytest.raises(ParamError, match="precision must be one of"):
        RunSpec(precision="fp8").resolved()


@pytest.mark.parametrize("train, message", [
    ({"lr": float("nan")}, "lr must be a finite number"),
    ({"w_mmd": float("inf")}, "w_mmd must be a finite number"),
    ({"n_clusters": 5000}, "n_clusters must be between 2 and 1000, got 5000"),
    ({"batch_size": 1}, "batch_size must be between 2 and 8192, got 1"),
    ({"epochs": 2.5}, "epochs must be a whole number"),
])
def test_every_training_value_is_bounded_where_it_is_declared(train, message):
    with pytest.raises(ParamError, match=message):
        RunSpec(train=TrainConfig(**train)).resolved()


def test_dataset_recipe_sits_under_explicit_options():
    assert TrainConfig.for_dataset("digits").hidden_dim == 1024            # the recipe
    assert TrainConfig.for_dataset("fashion-mnist").hidden_dim == 1024
    assert TrainConfig.for_dataset("fashion-mnist").n_heads == 4
    assert TrainConfig.for_dataset("fashion-mnist", n_heads=1).n_heads == 1
    assert TrainConfig.for_dataset("digits", hidden_dim=64).hidden_dim == 64
    assert TrainConfig.for_dataset("folder").hidden_dim == TrainConfig().hidden_dim


def test_the_dataset_sets_the_input_size_of_pretrained_backbones_unless_told():
    assert RunSpec(dataset="fashion-mnist").resolved().image_size == 96          # its default, mobilenet_v2_mid
    assert RunSpec(dataset="fashion-mnist", backbone="resnet18").resolved().image_size == 96
    assert RunSpec(dataset="fashion-mnist", image_size=128).resolved().image_size == 128
    assert RunSpec(dataset="fashion-mnist", backbone="scratch").resolved().image_size is None
    assert RunSpec(dataset="fashion-mnist", pretrained=False).resolved().image_size is None
    assert RunSpec(dataset="cifar10").resolved().image_size is None              # the backbone's own (224)


def test_neighbour_sources_resolve_by_encoder_and_dataset():
    assert RunSpec(dataset="digits").resolved().neighbours_from == "mobilenet_v2_mid"     # digits' recipe
    assert RunSpec(dataset="mnist").resolved().neighbours_from == "pixels"                 # scratch elsewhere
    assert RunSpec(dataset="digits", backbone="mobilenet_v2").resolved().neighbours_from == "backbone"
    assert RunSpec(dataset="digits", neighbours_from="pixels").resolved().neighbours_from == "pixels"
    with pytest.raises(ConfigError, match="no features to mine neighbours in"):
        RunSpec(dataset="digits", neighbours_from="backbone").resolved()
    with pytest.raises(ParamError, match="neighbours_from must be one of auto, backbone, pixels, "):
        RunSpec(dataset="digits", neighbours_from="scratch").resolved()
    # configs written before the option keep the neighbours they were trained with
    assert RunSpec.from_dict({"dataset": "digits", "backbone": "scratch-mlp"}).neighbours_from == "pixels"
    assert RunSpec.from_dict({"dataset": "digits", "backbone": "mobilenet_v2"}).neighbours_from == "backbone"


def test_older_config_names_are_read_as_todays():
    spec = RunSpec.from_dict({"dataset": "digits", "train": {"n_neighbors": 7, "epochs": 3}})
    assert spec.train.n_neighbours == 7 and spec.train.epochs == 3
