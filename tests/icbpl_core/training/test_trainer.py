import numpy as np
import pytest
import torch

from icbpl_core.config import TrainConfig
from icbpl_core.method.model import MultiHead
from icbpl_core.method.neighbours import cosine_topk
from icbpl_core.method.pedcc import make_pedcc
from icbpl_core.training.sources import FeatureSource
from icbpl_core.training.trainer import StopRequested, Trainer


def _blobs(n=600, k=4, dim=20, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim)) * 4
    labels = rng.integers(0, k, n)
    return (centres[labels] + rng.standard_normal((n, dim))).astype(np.float32), labels


def _trainer(x, labels, epochs, seed=0, events=None, n_heads=1, select_head_after=10):
    cfg = TrainConfig(n_clusters=4, latent_dim=16, hidden_dim=64, epochs=epochs, batch_size=100,
                      n_neighbours=10, refresh_every=2, seed=seed, n_heads=n_heads,
                      select_head_after=select_head_after)
    torch.manual_seed(seed)
    head = MultiHead(x.shape[1], cfg.hidden_dim, cfg.latent_dim, n_heads)
    head.set_input_stats(torch.from_numpy(x))
    return Trainer(head, FeatureSource(x, noise=0.1), make_pedcc(4, 16, seed), cosine_topk(x, 10)[0], cfg,
                   labels=labels, on_event=events.append if events is not None else None)


def test_learns_separable_blobs_and_reports_epochs():
    x, labels = _blobs()
    events = []
    trainer = _trainer(x, labels, epochs=8, events=events).fit()
    epochs = [e for e in events if e["type"] == "epoch"]
    assert [e["epoch"] for e in epochs] == list(range(1, 9))
    assert set(epochs[0]["losses"]) == {"mmd", "aug", "knn", "cos", "total"}
    assert epochs[-1]["losses"]["total"] < epochs[0]["losses"]["total"]
    assert epochs[-1]["metrics"]["acc"] > 0.95
    z = trainer.latents()
    np.testing.assert_allclose(z.norm(dim=1).numpy(), 1.0, atol=1e-5)


def test_same_seed_same_result_and_different_seed_differs():
    x, labels = _blobs()
    a = _trainer(x, labels, epochs=3, seed=5).fit().latents()
    b = _trainer(x, labels, epochs=3, seed=5).fit().latents()
    c = _trainer(x, labels, epochs=3, seed=6).fit().latents()
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_resuming_from_a_state_dict_continues_exactly():
    x, labels = _blobs()
    straight = _trainer(x, labels, epochs=5).fit().latents()
    first = _trainer(x, labels, epochs=5)
    first.config.epochs = 3            # stop after 3, as a killed run would
    first.fit()
    state = first.state_dict()
    resumed = _trainer(x, labels, epochs=5, seed=0)
    torch.manual_seed(123)             # fresh process: different global RNG state
    resumed.load_state_dict(state)
    assert resumed.epoch == 3
    assert torch.equal(resumed.fit().latents(), straight)


def test_several_heads_narrow_to_the_lowest_loss_one_after_select_head_after_epochs():
    x, labels = _blobs()
    events = []
    trainer = _trainer(x, labels, epochs=8, n_heads=3, select_head_after=2, events=events).fit()
    epochs = [e for e in events if e["type"] == "epoch"]
    assert [len(e.get("head_losses", [])) for e in epochs] == [3, 3] + [0] * 6
    kept = epochs[1]["kept_head"]
    assert kept == int(np.argmin(epochs[1]["head_losses"])) and "kept_head" not in epochs[0]
    assert trainer.model.n_heads == 1 and trainer.bank.shape[0] == 1 and trainer.best_head == 0
    assert len(trainer.optimizer.param_groups[0]["params"]) == len(list(trainer.model.parameters()))
    assert epochs[-1]["metrics"]["acc"] > 0.95
    # The kept head trains exactly as it would beside the others (its Adam moments go with it).
    every = _trainer(x, labels, epochs=8, n_heads=3, select_head_after=0).fit()
    assert every.model.n_heads == 3 and every.best_head == kept
    assert torch.equal(trainer.latents(), every.latents())


@pytest.mark.parametrize("stop_after", [1, 3])     # before and after the heads were narrowed
def test_resuming_across_head_selection_continues_exactly(stop_after):
    x, labels = _blobs()
    straight = _trainer(x, labels, epochs=4, n_heads=3, select_head_after=2).fit().latents()
    first = _trainer(x, labels, epochs=4, n_heads=3, select_head_after=2)
    first.config.epochs = stop_after
    first.fit()
    resumed = _trainer(x, labels, epochs=4, n_heads=3, select_head_after=2)
    resumed.load_state_dict(first.state_dict())
    assert torch.equal(resumed.fit().latents(), straight)


def test_stop_request_keeps_completed_epochs():
    x, labels = _blobs()
    trainer = _trainer(x, labels, epochs=5)
    calls = {"n": 0}

    def stop_in_second_epoch():
        calls["n"] += 1
        return calls["n"] > 8          # 6 steps per epoch
    with pytest.raises(StopRequested):
        trainer.fit(should_stop=stop_in_second_epoch)
    assert trainer.epoch == 1


def test_batchnorm_statistics_are_exact_before_eval_latents():
    # A scratch encoder with BatchNorm after very few steps: running averages still lag,
    # and eval-mode latents must not collapse (they did, to one cluster, before recalibration).
    from icbpl_core.backbones import create_backbone
    from icbpl_core.datasets import load_dataset
    from icbpl_core.method.augment import grey_affine
    from icbpl_core.method.model import Encoder
    from icbpl_core.training.sources import ImageSource

    ds = load_dataset("digits", limit=400)
    images = ds.to_array()
    torch.manual_seed(0)
    backbone = create_backbone("scratch", in_channels=1)
    model = Encoder(backbone, MultiHead(backbone.feature_dim, 64, 16, n_heads=2))
    pixels = images.reshape(len(images), -1).astype(np.float32)
    cfg = TrainConfig(n_clusters=10, latent_dim=16, epochs=2, batch_size=100, seed=0, n_heads=2, select_head_after=1)
    trainer = Trainer(model, ImageSource(images, backbone, grey_affine), make_pedcc(10, 16, 0),
                      cosine_topk(pixels - pixels.mean(0), 10)[0], cfg, labels=ds.labels).fit()
    in_training = trainer.history[-1]["n_clusters_used"]
    final = np.unique(trainer.assign(trainer.latents())).size
    assert in_training >= 8 and final >= in_training - 1
    norm = backbone.stage1[0][1]
    assert norm.momentum == 0.1                       # restored after the exact pass
    assert model.n_heads == 2 and "kept_head" not in trainer.history[0]   # heads sharing an encoder stay


def test_views_as_a_list_of_arrays_give_the_same_batches_as_one_stacked_array():
    from icbpl_core.training.sources import FeatureSource
    rng = np.random.default_rng(0)
    features = rng.normal(size=(50, 6)).astype(np.float32)
    views = rng.normal(size=(3, 50, 6)).astype(np.float32)
    idx = torch.arange(0, 50, 3)
    stacked = FeatureSource(features, views).augmented(idx, torch.Generator().manual_seed(1))
    listed = FeatureSource(features, list(views)).augmented(idx, torch.Generator().manual_seed(1))
    torch.testing.assert_close(stacked, listed)
    which = torch.randint(3, (len(idx),), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(listed, torch.from_numpy(views)[which, idx])   # view `which` of each row


def test_latents_averaged_over_views_are_the_direction_of_the_mean_latent():
    x, labels = _blobs()
    trainer = _trainer(x, labels, epochs=2).fit()
    rng = np.random.default_rng(1)
    views = [torch.from_numpy(x + rng.normal(size=x.shape).astype(np.float32)) for _ in range(2)]
    plain = trainer.latents()
    with torch.no_grad():
        trainer.model.eval()
        mean = plain + sum(trainer.model(v)[0] for v in views)
    averaged = trainer.latents([lambda idx, v=v: v[idx] for v in views])
    torch.testing.assert_close(averaged, mean / mean.norm(dim=1, keepdim=True))
    assert not torch.allclose(averaged, plain)
    same = torch.from_numpy(x)
    torch.testing.assert_close(trainer.latents([lambda idx: same[idx]] * 3), plain)   # identical views: no change


def test_fixed_views_of_images_repeat_and_do_not_depend_on_the_batches():
    from icbpl_core.method.augment import grey_affine
    from icbpl_core.backbones import create_backbone
    from icbpl_core.datasets import load_dataset
    from icbpl_core.training.sources import ImageSource

    images = load_dataset("digits", limit=40).to_array()
    source = ImageSource(images, create_backbone("scratch-mlp", in_channels=1), grey_affine)
    view0, view1 = source.fixed_view(0), source.fixed_view(1)
    whole = view0(torch.arange(40))
    torch.testing.assert_close(torch.cat([view0(torch.arange(0, 25)), view0(torch.arange(25, 40))]), whole)
    torch.testing.assert_close(view0(torch.tensor([7, 3])), whole[[7, 3]])
    assert not torch.allclose(view1(torch.arange(40)), whole)          # another copy
    assert not torch.allclose(whole, source.anchors(torch.arange(40)))  # augmented, not the image
