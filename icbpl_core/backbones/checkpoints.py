"""Self-supervised checkpoints into torchvision and timm backbones, whatever layout they were saved in.

`load_checkpoint(model, FILE)` is what `--weights FILE` uses. It finds the model's
weights inside the file and renames them to the model's keys:

* the container: the file itself, or a dict under `teacher` / `student` (DINO; the
  teacher is preferred), `state_dict` (MoCo, SimCLR ports), `model` (Barlow Twins,
  many trainers), `network`, `net`, ... (searched three levels deep);
* the key prefix: whichever prefix makes the most keys fit the model, e.g.
  `module.encoder_q.` (MoCo v1/v2), `module.base_encoder.` (MoCo v3),
  `backbone.` (SCAN pretext, SimCLR ports, Barlow Twins, DINO teacher),
  `module.backbone.` (DINO student, Barlow Twins training checkpoints), `encoder.`
  (SimCLR ports), or none (plain torchvision / timm state dicts). On a tie the
  query / online / teacher copy wins over the key / momentum / target / student one;
* numbered children (`backbone.0.`, `backbone.4.1.` from `nn.Sequential(*resnet.children())`)
  are renamed to the model's children in order;
* heads and other networks (fc, head, projector, predictor, contrastive_head,
  prototypes, the momentum encoder, ...) are left out and reported as ignored;
* timm models pass the result through timm's own checkpoint filter, which resizes
  position embeddings and converts original CLIP / DINOv2 layouts.

Files load with torch.load(weights_only=True) (plus argparse.Namespace, which DINO
stores its arguments in) or safetensors. The report lists missing, unexpected,
shape-mismatched and ignored keys. When less than half of the model's weights (by
element count) are found, or a tensor has another shape in the file, nothing is loaded
and a BackboneError explains what the file seems to hold instead; a few missing tensors
only warn.
"""
from __future__ import annotations

import argparse
import pickle
import re
import sys
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import BackboneError
from ..store.files import file_sha256

PREFERRED = ("teacher", "encoder_q", "base_encoder", "online", "query")
AVOIDED = ("student", "encoder_k", "momentum", "target", "key_encoder")
HEAD_NAMES = frozenset({"fc", "head", "heads", "classifier", "contrastive_head", "cluster_head", "projector",
                        "projection", "projection_head", "predictor", "prototypes", "mlp_head", "queue",
                        "queue_ptr", "bn"})
MIN_FRACTION = 0.5


@dataclass
class LoadReport:
    file: str
    sha256: str
    format: str                     # a guess at the layout, e.g. "MoCo v1/v2"
    container: str                  # where in the file the weights were, e.g. "['teacher']"
    prefix: str                     # the key prefix removed, e.g. "module.encoder_q."
    loaded: int                     # model tensors set from the file
    fraction: float = 0.0           # share of the model's weights (elements) set from the file
    total: int = 0                  # model tensors (BatchNorm's num_batches_tracked not counted)
    missing: list[str] = field(default_factory=list)      # model tensors the file did not provide
    unexpected: list[str] = field(default_factory=list)   # file tensors (under the prefix) the model lacks
    mismatched: list[str] = field(default_factory=list)   # same name, other shape: "key: file [..] model [..]"
    ignored: list[str] = field(default_factory=list)      # heads and other networks left out on purpose

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        text = (f"{self.format}: {self.loaded}/{self.total} tensors loaded from {Path(self.file).name}"
                f" (container {self.container or 'top level'}, prefix {self.prefix!r})")
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                            ("shape mismatch", self.mismatched)):
            if keys:
                text += f"; {len(keys)} {label} (e.g. {', '.join(keys[:3])})"
        if self.ignored:
            text += f"; {len(self.ignored)} head/other-network tensors ignored"
        return text


def read_file(path: str | Path) -> Any:
    """The object stored in a checkpoint file, loaded safely."""
    path = Path(path)
    if not path.is_file():
        raise BackboneError(f"weights file {path} not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001
            raise BackboneError(f"{path} is not a readable safetensors file ({exc})") from exc
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if found is None:
            raise BackboneError(f"{path} is not a readable PyTorch checkpoint (it does not unpickle: "
                                f"{_last_line(exc)})") from exc
        raise BackboneError(
            f"{path} holds Python objects that safe loading (torch.load weights_only=True) refuses "
            f"({found.group(1)}). If you trust the file, re-save only its tensors, e.g. "
            f"torch.save(torch.load(FILE, weights_only=False)['state_dict'], 'weights.pth')") from exc
    except Exception as exc:  # noqa: BLE001 - truncated zip, not a checkpoint at all, ...
        raise BackboneError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    interesting = [line for line in lines if "Unsupported" in line or "error" in line.lower()]
    return (interesting or lines or [type(exc).__name__])[-1][:200]


def _tensor_dicts(obj: Any, path: tuple[str, ...] = (), depth: int = 3) -> list[tuple[tuple[str, ...], dict]]:
    """Every dict of tensors inside obj (string keys), with the keys leading to it."""
    found = []
    if isinstance(obj, dict) and all(isinstance(k, str) for k in obj):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            found.append((path, tensors))
        if depth > 0:
            for key, value in obj.items():
                if isinstance(value, dict):
                    found += _tensor_dicts(value, path + (key,), depth - 1)
    return found


def _preference(text: str) -> int:
    text = text.lower()
    return sum(token in text for token in PREFERRED) - sum(token in text for token in AVOIDED)


def _prefixes(key: str) -> list[str]:
    parts = key.split(".")
    return [""] + [".".join(parts[:i]) + "." for i in range(1, len(parts))]


def _children_renamer(model: nn.Module):
    names = [name for name, _ in model.named_children()]

    def rename(key: str) -> str:
        first, _, rest = key.partition(".")
        if first.isdigit() and int(first) < len(names) and rest:
            return f"{names[int(first)]}.{rest}"
        return key
    return rename


def _is_counted(key: str) -> bool:
    return not key.endswith("num_batches_tracked")


def _timm_filter(model: nn.Module):
    module = sys.modules.get(type(model).__module__)
    if not type(model).__module__.startswith("timm.") or module is None:
        return None
    return getattr(module, "checkpoint_filter_fn", None)


def _apply_filter(filter_fn, state: dict, model: nn.Module) -> dict:
    if filter_fn is None:
        return state
    try:
        out = filter_fn(dict(state), model)
        return out if isinstance(out, dict) and out else state
    except Exception:  # noqa: BLE001 - the filter expects timm's layouts; anything else is left as is
        return state


def _guess_format(path: tuple[str, ...], prefix: str, keys: list[str]) -> str:
    text = ".".join(path) + "." + prefix
    tops = {k.split(".")[0] for k in keys} | {k.split(".")[1] for k in keys if k.startswith("module.")
                                              and k.count(".") > 1}
    if "teacher" in path or "student" in path:
        return f"DINO ({'teacher' if 'teacher' in path else 'student'})"
    if "encoder_q" in text:
        return "MoCo v1/v2"
    if "base_encoder" in text:
        return "MoCo v3"
    if "contrastive_head" in tops:
        return "SCAN pretext"
    if "projector" in tops and "bn" in tops:
        return "Barlow Twins"
    if "projector" in tops or "encoder" in prefix:
        return "SimCLR-style (encoder + projector)"
    if prefix.rstrip(".").endswith("backbone"):
        return "SimCLR / SCAN-style (backbone.)"
    if prefix:
        return f"state dict under {prefix!r}"
    return "plain state dict"


def describe_architecture(keys, shapes: dict[str, tuple] | None = None) -> str:
    """A short guess at the network a set of state-dict keys belongs to."""
    keys = list(keys)
    shapes = shapes or {}
    blocks: dict[int, set[int]] = {}
    bottleneck = False
    for key in keys:
        m = re.search(r"(?:^|\.)layer([1-4])\.(\d+)\.", key)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
            bottleneck = bottleneck or ".conv3." in key
    if len(blocks) == 4:
        counts = tuple(len(blocks[i]) for i in range(1, 5))
        depth = {(2, 2, 2, 2): 18, (3, 4, 6, 3): 50 if bottleneck else 34, (3, 4, 23, 3): 101,
                 (3, 8, 36, 3): 152}.get(counts)
        stem = next((shapes[k] for k in keys if re.search(r"(?:^|\.)conv1\.weight$", k) and k in shapes
                     and "layer" not in k), None)
        kind = f"ResNet-{depth}" if depth else f"a ResNet with {counts} blocks"
        if stem is not None and len(stem) == 4 and stem[-1] == 3:
            kind += " with a CIFAR (3x3) stem"
        return kind + (" (Bottleneck blocks)" if bottleneck else " (BasicBlocks)")
    vit = {int(m.group(1)) for k in keys if (m := re.search(r"(?:^|\.)blocks\.(\d+)\.", k))}
    if vit:
        width = next((shapes[k][-1] for k in keys if k.endswith(("cls_token", "pos_embed")) and k in shapes), None)
        patch = next((shapes[k][-1] for k in keys if k.endswith("patch_embed.proj.weight") and k in shapes), None)
        return (f"a ViT in timm/DINO layout with {len(vit)} blocks" + (f", width {width}" if width else "")
                + (f", patch {patch}" if patch else ""))
    tv_vit = {int(m.group(1)) for k in keys if (m := re.search(r"encoder_layer_(\d+)\.", k))}
    if tv_vit:
        return f"a ViT in torchvision layout with {len(tv_vit)} blocks"
    if any(re.search(r"(?:^|\.)stages\.\d+\.", k) for k in keys):
        return "a timm staged network (ConvNeXt, timm ResNet variant, ...)"
    if any(re.search(r"(?:^|\.)features\.\d+\.", k) for k in keys):
        n = 1 + max(int(m.group(1)) for k in keys if (m := re.search(r"(?:^|\.)features\.(\d+)\.", k)))
        return f"a torchvision 'features' network with {n} stages (MobileNet, EfficientNet, ConvNeXt, ...)"
    return f"{len(keys)} tensors, e.g. {', '.join(keys[:3])}"


def load_checkpoint(model: nn.Module, weights: str | Path | dict, architecture: str = "",
                    key: str | None = None, min_fraction: float = MIN_FRACTION,
                    strict: bool = False) -> LoadReport:
    """Load a checkpoint file (or an already loaded object) into `model`; returns what was loaded.

    key: the container to use ("teacher", "student", "state_dict", dotted for nested ones);
    by default the one that fits the model best. strict: raise when any model tensor is missing.
    """
    file, digest, obj = _open(weights)
    target = dict(model.state_dict())
    what = architecture or type(model).__name__
    renamers = {"": lambda k: k, "children": _children_renamer(model)}
    path, prefix, rname, tensors = _best_match(_containers(obj, key, file), target, renamers)
    state, ignored, prefix = _renamed_state(tensors, prefix, renamers[rname], model, target, min_fraction)
    report, load = _report(file, digest, path, prefix, tensors, state, ignored, target)
    if report.fraction < min_fraction or report.mismatched:
        raise BackboneError(_misfit(file, what, report, state, target, min_fraction))
    if strict and report.missing:
        raise BackboneError(f"{file} lacks {len(report.missing)} tensors of {what}: {', '.join(report.missing[:5])}")
    if report.missing:
        warnings.warn(f"{what}: {report.summary()}; the missing tensors keep their initial values", stacklevel=2)
    model.load_state_dict(load, strict=False)
    return report


def _open(weights: str | Path | dict) -> tuple[str, str, Any]:
    """(file name, sha256, loaded object) of a checkpoint file or an already loaded object."""
    if isinstance(weights, (str, Path)):
        return str(weights), file_sha256(weights) if Path(weights).is_file() else "", read_file(weights)
    return "<in memory>", "", weights


def _containers(obj: Any, key: str | None, file: str) -> list[tuple[tuple[str, ...], dict]]:
    candidates = _tensor_dicts(obj)
    if key is not None:
        candidates = [c for c in candidates if c[0] == tuple(key.split("."))]
        if not candidates:
            raise BackboneError(f"{file} has no tensors under {key!r}")
    if not candidates:
        raise BackboneError(f"{file} holds no tensors (a {type(obj).__name__}); it is not a weights file")
    return candidates


def _fits(name: str, tensor: torch.Tensor, target: dict) -> bool:
    return name in target and _is_counted(name) and tuple(tensor.shape) == tuple(target[name].shape)


def _best_match(candidates, target: dict, renamers: dict):
    """The (container, prefix, renaming) providing the most model tensors; ties go to the
    preferred copy (teacher, query, online), then the shortest path and prefix, then no renaming."""
    best = None
    for path, tensors in candidates:
        counts: dict[tuple[str, str], int] = {}
        for k, v in tensors.items():
            for prefix in _prefixes(k):
                for rname, rename in renamers.items():
                    if _fits(rename(k[len(prefix):]), v, target):
                        counts[(prefix, rname)] = counts.get((prefix, rname), 0) + 1
        for (prefix, rname), n in (counts or {("", ""): 0}).items():
            score = (n, _preference(".".join(path) + "." + prefix), -len(path), -len(prefix), rname == "")
            if best is None or score > best[0]:
                best = (score, path, prefix, rname, tensors)
    return best[1:]


def _renamed_state(tensors: dict, prefix: str, rename, model: nn.Module, target: dict, min_fraction: float):
    """The file's tensors under the model's names (and the keys left out); timm models also get
    timm's own checkpoint filter, on the renamed tensors or, when that fits better, on the whole file."""
    fit = lambda state: sum(1 for k, v in state.items() if _fits(k, v, target))  # noqa: E731
    ignored = [k for k in tensors if not k.startswith(prefix)]
    state = {rename(k[len(prefix):]): v for k, v in tensors.items() if k.startswith(prefix)}
    filter_fn = _timm_filter(model)
    if filter_fn is None:
        return state, ignored, prefix
    filtered = _apply_filter(filter_fn, state, model)
    if fit(filtered) >= fit(state):
        state = filtered
    counted = sum(1 for k in target if _is_counted(k))
    if fit(state) < min_fraction * counted:   # e.g. an original CLIP file
        whole = _apply_filter(filter_fn, tensors, model)
        if fit(whole) > fit(state):
            return whole, [], ""
    return state, ignored, prefix


def _report(file: str, digest: str, path, prefix: str, tensors: dict, state: dict, ignored: list,
            target: dict) -> tuple[LoadReport, dict]:
    """What loading `state` into the model sets, leaves missing, or cannot use; and the tensors to load."""
    counted = [k for k in target if _is_counted(k)]
    load = {k: v for k, v in state.items() if k in target and tuple(v.shape) == tuple(target[k].shape)}
    mismatched = [f"{k}: file {list(v.shape)} model {list(target[k].shape)}" for k, v in state.items()
                  if k in target and tuple(v.shape) != tuple(target[k].shape)]
    unexpected, heads = [], []
    for k in state:
        if k not in target:
            (heads if k.split(".")[0] in HEAD_NAMES else unexpected).append(k)
    report = LoadReport(file=file, sha256=digest, format=_guess_format(path, prefix, list(tensors)),
                        container="".join(f"[{p!r}]" for p in path), prefix=prefix,
                        loaded=sum(1 for k in load if _is_counted(k)), total=len(counted),
                        missing=[k for k in counted if k not in load], unexpected=unexpected,
                        mismatched=mismatched, ignored=ignored + [prefix + k for k in heads])
    total_numel = sum(target[k].numel() for k in counted) or 1
    report.fraction = round(sum(v.numel() for k, v in load.items() if _is_counted(k)) / total_numel, 4)
    return report, load


def _misfit(file: str, what: str, report: LoadReport, state: dict, target: dict, min_fraction: float) -> str:
    """Why a file does not fit the model, and what it looks like instead."""
    seen = {k: tuple(v.shape) for k, v in state.items()}
    counted = [k for k in target if _is_counted(k)]
    found = (f"only {report.loaded} of its {report.total} weight tensors ({100 * report.fraction:.0f}% of the "
             f"weights) were found" if report.fraction < min_fraction else
             f"{len(report.mismatched)} of its weight tensors have another shape in the file")
    example = f" For example {report.mismatched[0]}." if report.mismatched else ""
    return (f"{file} does not fit {what}: {found} (best match: container {report.container or 'top level'}, key "
            f"prefix {report.prefix!r}; {len(report.mismatched)} with the right name but another shape).{example} "
            f"The file looks like {describe_architecture(list(seen), seen)}; {what} is "
            f"{describe_architecture(counted, {k: tuple(v.shape) for k, v in target.items()})}. "
            "Choose the backbone the checkpoint was trained with.")
