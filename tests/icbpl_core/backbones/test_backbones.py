import shutil

import pytest
import torch

from icbpl_core.backbones import BackboneError, backbone_names, create_backbone
from icbpl_core.backbones import catalog, weights


def test_registry_lists_the_defaults():
    assert {"scratch", "mobilenet_v2"} <= set(backbone_names())
    with pytest.raises(BackboneError, match="unknown backbone 'nope'"):
        create_backbone("nope")


def test_mobilenet_v2_loads_offline_bundled_weights_with_hash_check(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # empty hub cache
    backbone = create_backbone("mobilenet_v2")
    assert backbone.pretrained and backbone.weights_id.startswith("b0353104")
    assert backbone.feature_dim == 1280 and backbone.input_size == 224
    grey = torch.rand(2, 1, 28, 28)
    features = backbone(backbone.prepare(grey))
    assert features.shape == (2, 1280) and torch.isfinite(features).all()
    # ImageNet weights, not random: the classifier-free features of two images differ
    # and are non-negative (ReLU6 then average pooling).
    assert (features >= 0).all() and not torch.allclose(features[0], features[1])


def test_a_corrupt_weights_file_is_refused(tmp_path):
    bad = tmp_path / catalog.MOBILENET_V2_FILE
    shutil.copy(weights.bundled_file(catalog.MOBILENET_V2_FILE), bad)
    with open(bad, "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\0" * 16)
    with pytest.raises(BackboneError, match="corrupt"):
        weights.verify_hash_prefix(bad)


def test_fine_tuning_trains_only_the_last_blocks():
    backbone = create_backbone("mobilenet_v2")
    backbone.set_trainable()
    trained = {n for n, p in backbone.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith(("trunk.features.16", "trunk.features.17", "trunk.features.18"))
                           for n in trained)
    assert not backbone.trunk.features[0][0].weight.requires_grad


def test_mobilenet_v2_mid_is_the_pooled_grid_of_block_13_with_the_same_weights():
    mid, full = create_backbone("mobilenet_v2_mid"), create_backbone("mobilenet_v2")
    assert mid.pretrained and mid.weights_id == full.weights_id and mid.feature_dim == 96 * 9
    images = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        features = mid(mid.prepare(images, 96))
        block13 = full.trunk.features[:14](full.prepare(images, 96))            # (3, 96, 6, 6)
    assert block13.shape == (3, 96, 6, 6)
    # cell (i, j) of the 3 x 3 grid is the mean of the 2 x 2 patch of block 13's map it covers
    expected = block13.reshape(3, 96, 3, 2, 3, 2).mean((3, 5)).flatten(1)
    torch.testing.assert_close(features, expected)
    assert not torch.allclose(features[:, :9], features[:, :9].mean(1, keepdim=True))   # where things are counts
    mid.set_trainable()
    trained = {".".join(n.split(".")[:3]) for n, p in mid.named_parameters() if p.requires_grad}
    assert trained == {"trunk.features.12", "trunk.features.13"}


def test_scratch_encoder_handles_small_and_larger_images():
    backbone = create_backbone("scratch", in_channels=1)
    assert not backbone.pretrained
    for side in (8, 28, 32):
        assert backbone(backbone.prepare(torch.rand(3, 1, side, side))).shape == (3, backbone.feature_dim)
    rgb = backbone.prepare(torch.rand(2, 3, 8, 8))   # RGB into a grey encoder: luma
    assert rgb.shape == (2, 1, 8, 8)


def test_the_registry_says_where_each_backbones_weights_come_from():
    from icbpl_core.backbones import BACKBONES, from_scratch, pretrained_names
    assert BACKBONES["mobilenet_v2"].weights == BACKBONES["mobilenet_v2_mid"].weights == "bundled"
    assert BACKBONES["resnet50"].weights == "download" and BACKBONES["dinov2_vits14"].weights == "download"
    assert BACKBONES["resnet18_cifar"].weights == "file" and not BACKBONES["resnet18_cifar"].has_pretrained
    assert from_scratch("scratch") and from_scratch("scratch-mlp") and not from_scratch("timm:resnet18")
    assert "resnet18_cifar" not in pretrained_names() and "scratch" not in pretrained_names()
    assert "mobilenet_v2_mid" in pretrained_names()
