"""torchvision and timm backbones, weights lookup (hub cache, download, offline) and
self-supervised checkpoint layouts. Everything offline: random weights, monkeypatched
downloads, checkpoints saved here from randomly initialised models."""
from __future__ import annotations

import argparse
import shutil

import pytest
import torch
import torchvision

from icbpl_core.backbones import BackboneError, backbone_names, create_backbone
from icbpl_core.backbones import checkpoints
from icbpl_core.backbones import timm_models as tm
from icbpl_core.backbones import catalog, weights
from icbpl_core.backbones import torchvision_models as tvm

DESCRIBE_KEYS = {"name", "feature_dim", "input_size", "in_channels", "mean", "std", "pretrained", "weights_id",
                 "source", "trainable_blocks", "n_params", "n_trainable_params"}


def features_of(backbone, side: int | None = None, n: int = 2) -> torch.Tensor:
    with torch.inference_mode():
        return backbone(backbone.prepare(torch.rand(n, 1, 28, 28), side))


def assert_trainable_blocks_exist(backbone):
    modules = dict(backbone.named_modules())
    for block in backbone.trainable_blocks:
        assert block in modules, f"{block} is not a submodule"
    trained = backbone.set_trainable()
    names = {n for n, p in backbone.named_parameters() if p.requires_grad}
    assert names and all(any(n.startswith(b + ".") for b in trained) for n in names)
    assert len(names) < len(list(backbone.parameters()))          # something stays frozen


# --- torchvision ------------------------------------------------------------------------------

ARCHITECTURES = sorted(name for name, spec in catalog.TORCHVISION.items() if spec.weights_url is None)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_torchvision_model_builds_offline_with_its_feature_size(name):
    spec = catalog.TORCHVISION[name]
    backbone = create_backbone(name, pretrained=False)
    info = backbone.describe()
    assert DESCRIBE_KEYS <= set(info)
    assert info["name"] == name and info["feature_dim"] == spec.feature_dim and info["input_size"] == spec.input_size
    assert not info["pretrained"] and info["weights_id"] == "random"
    assert info["trainable_blocks"] == [f"trunk.{b}" for b in spec.trainable]
    side = 224 if spec.builder.startswith("vit") else 32        # torchvision's ViT needs its own size
    feats = features_of(backbone, side, n=1 if side == 224 else 2)
    assert feats.shape == (1 if side == 224 else 2, spec.feature_dim) and torch.isfinite(feats).all()
    assert_trainable_blocks_exist(backbone)


def test_self_supervised_resnet50_entries_are_resnet50s_with_a_checkpoint_url():
    ssl = [name for name, spec in catalog.TORCHVISION.items() if spec.weights_url is not None]
    assert {"mocov2_resnet50", "mocov3_resnet50", "dino_resnet50", "swav_resnet50", "barlowtwins_resnet50"} == set(ssl)
    for name in ssl:
        spec = catalog.TORCHVISION[name]
        assert (spec.builder, spec.feature_dim, spec.trainable) == ("resnet50", 2048, ("layer3", "layer4"))
        assert spec.weights_url.startswith("https://dl.fbaipublicfiles.com/") and name in backbone_names()


def test_resnets_fine_tune_layer3_and_layer4_vit_its_last_blocks():
    resnet = create_backbone("resnet50", pretrained=False)
    assert resnet.set_trainable() == ["trunk.layer3", "trunk.layer4"]
    assert not resnet.trunk.conv1.weight.requires_grad and not resnet.trunk.layer2[0].conv1.weight.requires_grad
    assert resnet.trunk.layer3[0].conv1.weight.requires_grad and resnet.trunk.layer4[2].conv3.weight.requires_grad
    vit = catalog.TORCHVISION["vit_b_16"]
    assert vit.trainable == ("encoder.layers.encoder_layer_10", "encoder.layers.encoder_layer_11", "encoder.ln")


def test_offline_missing_weights_name_the_file_and_the_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(BackboneError) as err:
        create_backbone("resnet18")
    message = str(err.value)
    assert "resnet18-f37072fd.pth" in message and str(tmp_path / "hub" / "checkpoints") in message
    assert "ICBPL_OFFLINE" in message
    with pytest.raises(BackboneError, match="moco_v2_800ep_pretrain.pth.tar"):
        create_backbone("mocov2_resnet50")
    with pytest.raises(BackboneError, match="needs a checkpoint file"):
        create_backbone("resnet18_cifar")            # no downloadable weights at all


def test_weights_in_the_hub_cache_are_used(monkeypatch, tmp_path):
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    shutil.copy(weights.bundled_file(catalog.MOBILENET_V2_FILE), hub / "checkpoints" / catalog.MOBILENET_V2_FILE)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.setattr(tvm, "bundled_file", lambda name: None)
    backbone = create_backbone("mobilenet_v2")
    assert backbone.pretrained and backbone.weights_id.startswith("b0353104")
    assert backbone.describe()["source"] == f"imagenet:{catalog.MOBILENET_V2_FILE}"


@pytest.fixture
def online(monkeypatch, tmp_path):
    """Downloads allowed, an empty hub cache, no bundled weights; returns the download calls."""
    monkeypatch.delenv("ICBPL_OFFLINE", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(tvm, "bundled_file", lambda name: None)
    calls = []
    return calls


def test_download_goes_to_the_hub_cache_and_is_hash_checked(monkeypatch, online, tmp_path):
    def fake_download(url, dst, hash_prefix=None, progress=True):
        online.append((url, dst))
        shutil.copy(weights.bundled_file(catalog.MOBILENET_V2_FILE), dst)
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    backbone = create_backbone("mobilenet_v2")
    assert online == [("https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
                       str(tmp_path / "hub" / "checkpoints" / catalog.MOBILENET_V2_FILE))]
    assert backbone.weights_id.startswith("b0353104")
    create_backbone("mobilenet_v2")                  # now cached: no second download
    assert len(online) == 1


def test_a_corrupt_download_is_deleted_and_a_failed_one_explained(monkeypatch, online, tmp_path):
    def garbage(url, dst, hash_prefix=None, progress=True):
        open(dst, "wb").write(b"not a checkpoint")
    monkeypatch.setattr(torch.hub, "download_url_to_file", garbage)
    with pytest.raises(BackboneError, match="corrupt"):
        create_backbone("resnet18")
    assert not (tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth").exists()

    def unreachable(url, dst, hash_prefix=None, progress=True):
        raise OSError("network is unreachable")
    monkeypatch.setattr(torch.hub, "download_url_to_file", unreachable)
    with pytest.raises(BackboneError, match="could not download .*resnet18-f37072fd.pth.*network is unreachable"):
        create_backbone("resnet18")


def test_self_supervised_resnet50_aliases_download_the_authors_checkpoint(monkeypatch, online, tmp_path):
    source = torchvision.models.resnet50()
    body = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}

    def moco_file(url, dst, hash_prefix=None, progress=True):
        online.append(url)
        torch.save({"epoch": 800, "arch": "resnet50",
                    "state_dict": {f"module.encoder_q.{k}": v for k, v in body.items()}}, dst)
    monkeypatch.setattr(torch.hub, "download_url_to_file", moco_file)
    backbone = create_backbone("mocov2_resnet50")
    assert online[0].endswith("moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar")
    got = backbone.trunk.state_dict()
    assert all(torch.equal(got[k], v) for k, v in body.items())
    info = backbone.describe()
    assert info["pretrained"] and info["load_report"]["format"] == "MoCo v1/v2"
    assert info["source"] == "mocov2_resnet50:moco_v2_800ep_pretrain.pth.tar"


# --- timm ---------------------------------------------------------------------------------------

def test_any_timm_model_by_name():
    backbone = create_backbone("timm:resnet18", pretrained=False)
    info = backbone.describe()
    assert info["name"] == "timm:resnet18" and info["feature_dim"] == 512 and info["input_size"] == 224
    assert info["trainable_blocks"] == ["trunk.layer3", "trunk.layer4"]
    assert features_of(backbone, 32).shape == (2, 512)
    with pytest.raises(BackboneError, match="timm has no model 'not_a_model_xyz'"):
        create_backbone("timm:not_a_model_xyz", pretrained=False)
    with pytest.raises(BackboneError, match="timm:<any timm model name>"):
        create_backbone("no_such_backbone")


def test_timm_vit_features_blocks_and_data_config():
    backbone = create_backbone("timm:vit_tiny_patch16_224", pretrained=False)
    assert backbone.feature_dim == 192 and backbone.input_size == 224
    assert backbone.mean == (0.5, 0.5, 0.5) and backbone.std == (0.5, 0.5, 0.5)    # from timm's config
    assert backbone.trainable_blocks == ("trunk.blocks.10", "trunk.blocks.11", "trunk.norm")
    assert features_of(backbone, n=1).shape == (1, 192)
    assert_trainable_blocks_exist(backbone)


def test_self_supervised_aliases_point_at_timm_models():
    import timm
    from timm.models import get_pretrained_cfg

    assert {"dino_vits16", "dino_vitb16", "dinov2_vits14", "dinov2_vitb14", "clip_vitb16",
            "mocov3_vits16"} <= set(backbone_names())
    for alias, entry in catalog.TIMM.items():
        assert timm.is_model(entry.model.split(".")[0]), alias
        if entry.weights_url is None:
            assert get_pretrained_cfg(entry.model) is not None, alias
    assert catalog.TIMM["dino_vits16"].model == "vit_small_patch16_224.dino"
    assert catalog.TIMM["dinov2_vits14"].model == "vit_small_patch14_dinov2.lvd142m"
    assert catalog.TIMM["clip_vitb16"].model == "vit_base_patch16_clip_224.openai"


def shallow(alias: str, depth: int = 2):
    """An alias's model with its arguments, but only `depth` blocks (quick to build)."""
    entry = catalog.TIMM[alias]
    return tm.build_timm(entry.model, pretrained=False, kwargs={**dict(entry.kwargs), "depth": depth})


def test_dinov2_alias_runs_at_224_and_mocov3_uses_imagenet_statistics():
    dinov2 = shallow("dinov2_vits14")
    assert dinov2.input_size == 224 and dinov2.feature_dim == 384          # not timm's 518
    assert features_of(dinov2, n=1).shape == (1, 384)
    mocov3 = shallow("mocov3_vits16")
    assert mocov3.mean == (0.485, 0.456, 0.406) and mocov3.trunk.blocks[0].attn.num_heads == 12
    clip = shallow("clip_vitb16", depth=1)
    assert clip.mean == (0.48145466, 0.4578275, 0.40821073) and clip.feature_dim == 768


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """hf_hub_download serving one safetensors file saved from a random timm resnet18."""
    import huggingface_hub
    from safetensors.torch import save_file

    source = tm.create_model("resnet18", pretrained=False)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    calls = []

    def download(repo_id, filename, revision=None, local_files_only=False, **kwargs):
        calls.append((repo_id, filename, local_files_only))
        return str(path)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    return state, calls


def test_timm_pretrained_weights_come_from_the_hugging_face_cache(fake_hub):
    state, calls = fake_hub
    backbone = create_backbone("timm:resnet18.a1_in1k")
    assert calls == [("timm/resnet18.a1_in1k", "model.safetensors", True)]   # offline in tests: cache only
    got = backbone.trunk.state_dict()
    assert all(torch.equal(got[k], state[k]) for k in got)
    assert backbone.pretrained and backbone.describe()["source"] == "timm:timm/resnet18.a1_in1k"


def test_timm_weights_missing_offline_say_what_to_do(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def missing(*args, **kwargs):
        raise LocalEntryNotFoundError("not in the cache")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", missing)
    with pytest.raises(BackboneError, match=r"resnet18.a1_in1k \(timm/resnet18.a1_in1k.*not in the "
                                            r"Hugging Face cache.*downloads are off.*weights=FILE"):
        create_backbone("timm:resnet18.a1_in1k")


# --- checkpoint layouts ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def resnet18_body():
    torch.manual_seed(0)
    return {k: v for k, v in torchvision.models.resnet18().state_dict().items() if not k.startswith("fc.")}


def _prefixed(prefix, state):
    return {prefix + k: v for k, v in state.items()}


def _other(state):
    return {k: (torch.zeros_like(v) if v.is_floating_point() else v) for k, v in state.items()}


MLP = {"fc.0.weight": torch.randn(512, 512), "fc.0.bias": torch.zeros(512), "fc.2.weight": torch.randn(128, 512)}
LAYOUTS = {
    "moco_v2": (lambda b: {"epoch": 200, "arch": "resnet18", "state_dict": {
        **_prefixed("module.encoder_q.", {**b, **MLP}), **_prefixed("module.encoder_k.", _other({**b, **MLP})),
        "module.queue": torch.randn(128, 64), "module.queue_ptr": torch.zeros(1, dtype=torch.long)},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.03, "params": [0, 1]}]}},
        "MoCo v1/v2", "module.encoder_q."),
    "moco_v3": (lambda b: {"epoch": 100, "state_dict": {
        **_prefixed("module.base_encoder.", {**b, **MLP}), **_prefixed("module.momentum_encoder.", _other(b)),
        "module.predictor.0.weight": torch.randn(8, 8)}}, "MoCo v3", "module.base_encoder."),
    "simclr_backbone": (lambda b: {"epoch": 100, "arch": "resnet18",
                                   "state_dict": _prefixed("backbone.", {**b, **MLP})},
                        "SimCLR / SCAN-style (backbone.)", "backbone."),
    "simclr_encoder": (lambda b: {**_prefixed("encoder.", b), "projector.0.weight": torch.randn(64, 512)},
                       "SimCLR-style (encoder + projector)", "encoder."),
    "scan_pretext": (lambda b: {**_prefixed("backbone.", b), "contrastive_head.0.weight": torch.randn(512, 512),
                                "contrastive_head.2.weight": torch.randn(128, 512)}, "SCAN pretext", "backbone."),
    "barlow_plain": (lambda b: dict(b), "plain state dict", ""),
    "barlow_training": (lambda b: {"epoch": 3, "model": {
        **_prefixed("module.backbone.", b), "module.projector.0.weight": torch.randn(16, 512),
        "module.bn.running_mean": torch.zeros(16)}}, "Barlow Twins", "module.backbone."),
    "dino": (lambda b: {"student": _prefixed("module.backbone.", _other(b)),
                        "teacher": {**_prefixed("backbone.", b), "head.mlp.0.weight": torch.randn(4, 512)},
                        "args": argparse.Namespace(arch="resnet18", lr=0.1), "epoch": 10},
             "DINO (teacher)", "backbone."),
    "sequential_children": (lambda b: _prefixed("backbone.", {
        (str(["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"].index(k.split(".")[0]))
         + k[len(k.split(".")[0]):]): v for k, v in b.items()}), "SimCLR / SCAN-style (backbone.)", "backbone."),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_checkpoint_layouts_load_exactly(layout, resnet18_body, tmp_path):
    make, fmt, prefix = LAYOUTS[layout]
    path = tmp_path / f"{layout}.pth"
    torch.save(make(resnet18_body), path)
    backbone = create_backbone("resnet18", pretrained=False, weights=str(path))
    got = backbone.trunk.state_dict()
    for key, value in resnet18_body.items():
        assert torch.equal(got[key], value), key
    report = backbone.describe()["load_report"]
    assert report["format"] == fmt and report["prefix"] == prefix
    assert report["loaded"] == report["total"] and report["fraction"] == 1.0
    assert not report["missing"] and not report["unexpected"] and not report["mismatched"]
    assert backbone.pretrained and backbone.weights_id == report["sha256"][:16]


def test_dino_teacher_is_preferred_and_the_student_can_be_chosen(resnet18_body, tmp_path):
    path = tmp_path / "dino.pth"
    torch.save(LAYOUTS["dino"][0](resnet18_body), path)
    model = torchvision.models.resnet18()
    model.fc = torch.nn.Identity()
    report = checkpoints.load_checkpoint(model, path, key="student")
    assert report.format == "DINO (student)" and report.prefix == "module.backbone."
    assert torch.equal(model.conv1.weight, torch.zeros_like(model.conv1.weight))


def test_a_vit_checkpoint_in_dino_layout_loads_into_timm(tmp_path):
    backbone = tm.build_timm("vit_tiny_patch16_224", pretrained=False, kwargs={"depth": 2})
    saved = {k: v + 1 for k, v in backbone.trunk.state_dict().items()}
    path = tmp_path / "dino_vit.pth"
    torch.save({"teacher": {**_prefixed("backbone.", saved), "head.last_layer.weight_g": torch.ones(1, 8)},
                "student": _prefixed("module.backbone.", _other(saved)), "args": argparse.Namespace(a=1)}, path)
    report = checkpoints.load_checkpoint(backbone.trunk, path)
    got = backbone.trunk.state_dict()
    assert all(torch.equal(got[k], v) for k, v in saved.items())
    assert report.format == "DINO (teacher)" and report.ignored == ["head.last_layer.weight_g"]


def test_a_wrong_architecture_is_refused_with_a_clear_message(resnet18_body, tmp_path):
    path = tmp_path / "r50.pth"
    torch.save({"state_dict": _prefixed("module.encoder_q.", torchvision.models.resnet50().state_dict())}, path)
    with pytest.raises(BackboneError, match=r"does not fit resnet18: .*another shape.*looks like ResNet-50 "
                                            r"\(Bottleneck blocks\); resnet18 is ResNet-18"):
        create_backbone("resnet18", pretrained=False, weights=str(path))
    vit = tmp_path / "vit.pth"
    torch.save({f"blocks.{i}.attn.qkv.weight": torch.zeros(3 * 64, 64) for i in range(12)}, vit)
    with pytest.raises(BackboneError, match=r"only 0 of its \d+ weight tensors.*a ViT in timm/DINO layout"):
        create_backbone("resnet18", pretrained=False, weights=str(vit))


class NotAWeight:
    pass


def test_unsafe_or_unreadable_files_are_refused(resnet18_body, tmp_path):
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"state_dict": resnet18_body, "extra": NotAWeight()}, unsafe)
    with pytest.raises(BackboneError, match="safe loading"):
        create_backbone("resnet18", pretrained=False, weights=str(unsafe))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(BackboneError, match="not a readable PyTorch checkpoint"):
        create_backbone("resnet18", pretrained=False, weights=str(junk))
    with pytest.raises(BackboneError, match="not found"):
        create_backbone("resnet18", pretrained=False, weights=str(tmp_path / "absent.pth"))


def test_a_few_missing_tensors_only_warn_and_are_reported(resnet18_body, tmp_path):
    path = tmp_path / "partial.pth"
    torch.save({k: v for k, v in resnet18_body.items() if not k.startswith("layer4.1.bn2")}, path)
    with pytest.warns(UserWarning, match="missing"):
        backbone = create_backbone("resnet18", pretrained=False, weights=str(path))
    assert sorted(backbone.load_report["missing"]) == ["layer4.1.bn2.bias", "layer4.1.bn2.running_mean",
                                                       "layer4.1.bn2.running_var", "layer4.1.bn2.weight"]
    assert backbone.load_report["loaded"] == backbone.load_report["total"] - 4


def test_scratch_backbones_describe_themselves():
    info = create_backbone("scratch", in_channels=1).describe()
    assert DESCRIBE_KEYS <= set(info) and info["in_channels"] == 1 and info["trainable_blocks"] == [""]
    assert info["n_trainable_params"] == info["n_params"] > 0
