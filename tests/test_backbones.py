import shutil

import pytest
import torch

from icbpl_core.backbones import BackboneError, backbone_names, create_backbone
from icbpl_core.backbones import torchvision_models as tvm


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
    bad = tmp_path / tvm.MOBILENET_V2_FILE
    shutil.copy(tvm.bundled_mobilenet_v2(), bad)
    with open(bad, "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\0" * 16)
    with pytest.raises(BackboneError, match="corrupt"):
        tvm.verify_hash_prefix(bad)


def test_fine_tuning_trains_only_the_last_blocks():
    backbone = create_backbone("mobilenet_v2")
    backbone.set_trainable()
    trained = {n for n, p in backbone.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith(("trunk.features.16", "trunk.features.17", "trunk.features.18"))
                           for n in trained)
    assert not backbone.trunk.features[0][0].weight.requires_grad


def test_scratch_encoder_handles_small_and_larger_images():
    backbone = create_backbone("scratch", in_channels=1)
    assert not backbone.pretrained
    for side in (8, 28, 32):
        assert backbone(backbone.prepare(torch.rand(3, 1, side, side))).shape == (3, backbone.feature_dim)
    rgb = backbone.prepare(torch.rand(2, 3, 8, 8))   # RGB into a grey encoder: luma
    assert rgb.shape == (2, 1, 8, 8)
