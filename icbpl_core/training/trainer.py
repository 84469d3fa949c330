"""The ICBPL training loop, shared by head-only and image training.

Per step, for a batch of indices and each of the model's H heads:
  z      = f(anchor),  z_view = f(augmented view)         (one forward pass for both)
  z_nb   = bank[random one of each anchor's k neighbours]  (latents, detached)
  loss   = icbpl_loss(z, z_view, z_nb, PEDCC)              (summed over heads)
The bank holds every image's latest latent: anchors overwrite theirs each step, and
every `refresh_every` epochs all latents are recomputed and neighbours re-mined among
them (in the best head's space). After each epoch the head with the lowest mean loss
becomes the one that predicts. Independent heads (head-only training) are narrowed to
that one after `select_head_after` epochs, since the loss ranks them early
(docs/BENCHMARKS.md#levers-that-helped): the kept head then trains on exactly as beside the
others, at the cost of one. Heads on a shared trainable encoder all shape it, so they are
never dropped (docs/BENCHMARKS.md#levers-tried, several heads on digits). Each epoch draws its randomness from
a generator seeded by (seed, epoch), so a run resumed from an epoch checkpoint continues
exactly as if never interrupted.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..method.losses import icbpl_loss
from ..method.metrics import evaluate
from ..method.model import MultiHead
from ..method.neighbours import cosine_topk

EventSink = Callable[[dict], None]
STEP_EVENT_SECONDS = 1.0


class StopRequested(Exception):
    """Raised inside fit() when should_stop() turns true; the last epoch checkpoint stands."""


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class Trainer:
    def __init__(self, model: nn.Module, source, centroids: np.ndarray, neighbours: np.ndarray,
                 config: TrainConfig, labels: np.ndarray | None = None,
                 on_event: EventSink | None = None, eval_batch_size: int = 1024) -> None:
        self.model = model
        self.source = source
        self.config = config
        self.centroids = torch.as_tensor(centroids, dtype=torch.float32)
        self.neighbours = torch.as_tensor(neighbours, dtype=torch.int64)
        self.labels = labels
        self.on_event = on_event or (lambda event: None)
        self.eval_batch_size = eval_batch_size
        self.optimizer = self._make_optimizer()
        self.epoch = 0                      # epochs completed
        self.history: list[dict] = []
        self.bank: torch.Tensor | None = None    # (H, N, d)
        self.best_head = 0

    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters")
        return torch.optim.Adam(params, lr=self.config.lr, weight_decay=self.config.weight_decay)

    def keep_best_head(self) -> None:
        """Drop every head but the best; the kept parameters keep their Adam moments."""
        old = self.optimizer
        self.model.keep_head(self.best_head)
        self.bank = self.bank[self.best_head:self.best_head + 1].clone()
        self.best_head = 0
        self.optimizer = self._make_optimizer()
        for p in self.optimizer.param_groups[0]["params"]:
            if p in old.state:
                self.optimizer.state[p] = old.state[p]

    # -- state, for checkpoints -------------------------------------------------------
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "epoch": self.epoch, "neighbours": self.neighbours, "bank": self.bank,
                "history": self.history, "best_head": self.best_head}

    def load_state_dict(self, state: dict) -> None:
        bank = state["bank"]
        if bank is not None and self.model.n_heads > bank.shape[0] == 1:   # saved after the heads were selected
            self.model.keep_head(0)
            self.optimizer = self._make_optimizer()
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        self.neighbours = state["neighbours"]
        self.bank = state["bank"]
        self.history = list(state["history"])
        self.best_head = int(state["best_head"])

    # -- inference ----------------------------------------------------------------------
    @torch.no_grad()
    def recalibrate_batchnorm(self) -> None:
        """Set BatchNorm running statistics to the exact mean/variance over the data.

        Running averages (momentum 0.1) lag far behind after a few hundred steps: a
        3-epoch scratch run kept 10 clusters in training mode but collapsed to 1 in
        eval mode. One pass in training mode with cumulative averaging fixes that.
        """
        norms = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        was_training = self.model.training
        saved = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None            # cumulative moving average over the pass
        self.model.train()
        n = len(self.source)
        for start in range(0, n, self.eval_batch_size):
            self.model(self.source.anchors(torch.arange(start, min(start + self.eval_batch_size, n))))
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
        self.model.train(was_training)

    @torch.no_grad()
    def all_latents(self, inputs: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """(H, N, d) latents of every head, in eval mode (BatchNorm statistics recomputed first).

        inputs: rows of indices -> model inputs (default: the source's anchors)."""
        inputs = inputs or self.source.anchors
        self.recalibrate_batchnorm()
        was_training = self.model.training
        self.model.eval()
        n = len(self.source)
        out = torch.cat([self.model(inputs(torch.arange(start, min(start + self.eval_batch_size, n))))
                         for start in range(0, n, self.eval_batch_size)], dim=1)
        self.model.train(was_training)
        return out

    def latents(self, views: Sequence[Callable[[torch.Tensor], torch.Tensor]] = ()) -> torch.Tensor:
        """(N, d) latents of the best head. Given `views` (functions from rows of indices to the
        inputs of one augmented copy of those images, such as a source's fixed_view(v)), the
        direction of the mean latent over each image and its views, which averages out the
        augmentation noise (docs/METHOD.md#prediction)."""
        z = self.all_latents()[self.best_head]
        if not len(views):
            return z
        for view in views:
            z = z + self.all_latents(view)[self.best_head]
        return torch.nn.functional.normalize(z, dim=1)

    def assign(self, z: torch.Tensor) -> np.ndarray:
        return (z @ self.centroids.T).argmax(dim=1).numpy()

    # -- training -----------------------------------------------------------------------
    def fit(self, on_epoch_end: Callable[["Trainer"], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> "Trainer":
        cfg = self.config
        n = len(self.source)
        k = self.neighbours.shape[1]
        if self.bank is None:
            self.bank = self.all_latents()
        batch = min(cfg.batch_size, n)
        steps = max(1, n // batch)          # drop the ragged tail: MMD wants full batches
        while self.epoch < cfg.epochs:
            epoch = self.epoch
            started = time.perf_counter()
            g = epoch_generator(cfg.seed, epoch)
            if cfg.refresh_every and epoch > 0 and epoch % cfg.refresh_every == 0:
                self.bank = self.all_latents()
                self.neighbours = torch.from_numpy(cosine_topk(self.bank[self.best_head], min(k, n - 1))[0])
            self.model.train()
            order = torch.randperm(n, generator=g)
            sums: dict[str, float] = {}
            head_sums = torch.zeros(self.bank.shape[0])
            last_report = started
            for step in range(steps):
                if should_stop is not None and should_stop():
                    raise StopRequested(f"stopped during epoch {epoch + 1}")
                idx = order[step * batch:(step + 1) * batch]
                x = torch.cat([self.source.anchors(idx), self.source.augmented(idx, g)])
                z, z_view = self.model(x).split(len(idx), dim=1)
                pick = torch.randint(self.neighbours.shape[1], (len(idx),), generator=g)
                z_nb = self.bank[:, self.neighbours[idx, pick]]
                head_losses, head_parts = zip(*(icbpl_loss(z[h], z_view[h], z_nb[h], self.centroids,
                                                           cfg.loss_weights) for h in range(len(z))))
                loss = torch.stack(head_losses).sum()
                parts = {name: sum(p[name] for p in head_parts) / len(z) for name in head_parts[0]}
                head_sums += torch.tensor([p["total"] for p in head_parts])
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"the loss became {float(loss)} at epoch {epoch + 1}, "
                                             f"step {step + 1}; lower the learning rate")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.bank[:, idx] = z.detach()
                for name, value in parts.items():
                    sums[name] = sums.get(name, 0.0) + value
                now = time.perf_counter()
                if now - last_report >= STEP_EVENT_SECONDS:
                    last_report = now
                    self.on_event({"type": "step", "epoch": epoch + 1, "epochs": cfg.epochs,
                                   "step": step + 1, "steps": steps, "loss": parts["total"]})
            self.epoch = epoch + 1
            self.best_head = int(head_sums.argmin())
            record = {"epoch": self.epoch, "losses": {k_: v / steps for k_, v in sums.items()},
                      "seconds": time.perf_counter() - started}
            if len(head_sums) > 1:
                record.update(head_losses=(head_sums / steps).tolist(), best_head=self.best_head)
            if (len(head_sums) > 1 and cfg.select_head_after and self.epoch >= cfg.select_head_after
                    and isinstance(self.model, MultiHead)):
                record["kept_head"] = self.best_head
                self.keep_best_head()
            clusters = self.assign(self.bank[self.best_head])
            record["n_clusters_used"] = int(np.unique(clusters).size)
            if self.labels is not None:
                record["metrics"] = {key: value for key, value in evaluate(self.labels, clusters).items()
                                     if key in ("acc", "nmi", "ari")}
            self.history.append(record)
            self.on_event({"type": "epoch", "epochs": cfg.epochs, "steps": steps, **record})
            if on_epoch_end is not None:
                on_epoch_end(self)
        return self
