"""Image batches gathered by DataLoader workers are the batches gathered in line: training fed
by workers gives exactly the same model."""
import numpy as np
import torch
from sklearn.datasets import load_digits

from icbpl_core.backbones import create_backbone
from icbpl_core.config import TrainConfig
from icbpl_core.method.augment import grey_affine
from icbpl_core.method.model import Encoder, MultiHead
from icbpl_core.method.neighbours import cosine_topk
from icbpl_core.method.pedcc import make_pedcc
from icbpl_core.training.sources import ImageSource
from icbpl_core.training.trainer import Trainer


def _images(n=300):
    return np.round(load_digits().images[:n] * 255 / 16).astype(np.uint8)[..., None]


def _source(workers: int) -> ImageSource:
    torch.manual_seed(0)
    backbone = create_backbone("scratch-mlp", False, in_channels=1)
    backbone.set_trainable()
    return ImageSource(_images(), backbone, grey_affine, None, num_workers=workers)


def test_workers_gather_the_rows_of_each_batch_in_order():
    source = _source(2)
    batches = [torch.randperm(300)[:64] for _ in range(5)]
    fed = list(source.feed(batches))
    assert len(fed) == 5
    for idx, rows in zip(batches, fed):
        assert torch.equal(rows, source.images[idx])
    again = list(source.feed(batches[:2]))            # the workers persist; a new epoch, a new order
    assert torch.equal(again[1], source.images[batches[1]])


def _trained(workers: int) -> Trainer:
    source = _source(workers)
    cfg = TrainConfig(n_clusters=10, latent_dim=16, hidden_dim=32, epochs=2, batch_size=64, seed=0)
    model = Encoder(source.backbone, MultiHead(source.backbone.feature_dim, 32, 16, 1))
    pixels = source.images.reshape(300, -1).float()
    return Trainer(model, source, make_pedcc(10, 16, 0), cosine_topk(pixels, 5)[0], cfg).fit()


def test_training_fed_by_workers_is_training_fed_in_line():
    inline, fed = _trained(0), _trained(2)
    torch.testing.assert_close(fed.bank, inline.bank, rtol=0, atol=0)
    for (name, a), (_, b) in zip(inline.model.state_dict().items(), fed.model.state_dict().items()):
        assert torch.equal(a, b), name
