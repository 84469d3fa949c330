"""Named recipes: several parameters set at once, over the table's and the dataset's defaults
and under anything given explicitly (`icbpl train --recipe paper --epochs 100`).

    dataset  the dataset's own measured recipe (datasets registry), nothing more
    auto     chosen from the images themselves before training (training/choice.py): the
             backbone and feature tap, input size, neighbour source and head recipe that score
             best on a sample, without labels; the default for own folders and zips
    paper    the published setup (docs/METHOD.md): a self-supervised ResNet-50 (MoCo v2, downloaded,
             or any checkpoint the registry reads with --weights), conv1 to layer2 frozen, layer3,
             layer4 and the head trained on 224 px images with SimCLR views; batch 512, Adam 1e-3,
             400 epochs. On one GPU a global batch of 512 may not fit: --gpus N splits it.

Adding a recipe is one entry. Recipes import nothing heavy (the command line reads them for --help).
"""
from __future__ import annotations

RECIPES: dict[str, dict] = {
    "dataset": {},
    "auto": {},            # its values come from training/choice.py, per data set
    "paper": {"backbone": "mocov2_resnet50", "mode": "finetune", "image_size": 224, "augment": "simclr",
              "batch_size": 512, "lr": 1e-3, "epochs": 400},
}


def recipe_values(name: str) -> dict:
    return dict(RECIPES[name])


def default_recipe(dataset: str) -> str:
    """Not given: auto for the user's own images (a folder, a zip), else the dataset's own."""
    from .datasets import get_entry
    return "auto" if get_entry(dataset).own_data else "dataset"
