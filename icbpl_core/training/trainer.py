"""The ICBPL training loop, shared by head-only and image training.

Per step, for a batch of indices and each of the model's H heads:
  z      = f(anchor),  z_view = f(augmented view)         (one forward pass for both)
  z_nb   = bank[random one of each anchor's k neighbours]  (latents, detached)
  loss   = icbpl_loss(z, z_view, z_nb, PEDCC)              (summed over heads)
With a person's corrections (`targets`, method/guidance.py) the images they decided also pull
toward their cluster's PEDCC point (anchor) and/or take each other as neighbours (must-link).
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

On a GPU the model, the bank, the neighbours and the PEDCC points live there, the forward pass
runs under autocast (device.py), and the loss parts are summed on the device and read once per
epoch (and by the progress event about once a second), never per step. In W processes
(distributed.py) each trains on its slice of the global batch and the latents are gathered
before the losses.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..method.guidance import anchor_loss, must_link
from ..method.knn import nearest_neighbours
from ..method.losses import icbpl_loss
from ..method.metrics import evaluate
from ..method.model import MultiHead
from .device import Placement
from .distributed import SINGLE, World, any_true, broadcast_tensor, gather_with_grad

EventSink = Callable[[dict], None]
STEP_EVENT_SECONDS = 1.0
STOP_CHECK_STEPS = 10          # processes agree on a stop every this many steps (a collective)
CPU = Placement(torch.device("cpu"), None)


class StopRequested(Exception):
    """Raised inside fit() when should_stop() turns true; the last epoch checkpoint stands."""


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def view_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """A process's own draws of augmented views (each process augments a different slice)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 4_099 + rank + 1)


class Trainer:
    def __init__(self, model: nn.Module, source, centroids: np.ndarray, neighbours: np.ndarray,
                 config: TrainConfig, labels: np.ndarray | None = None,
                 on_event: EventSink | None = None, eval_batch_size: int = 1024,
                 place: Placement = CPU, world: World = SINGLE, targets: np.ndarray | None = None) -> None:
        self.place, self.world = place, world
        self.device = place.device
        self.model = model.to(self.device)
        self.source = source.to(self.device)
        self.config = config
        self.centroids = torch.as_tensor(centroids, dtype=torch.float32).to(self.device)
        self.targets = None if targets is None else np.asarray(targets, dtype=np.int64)
        self.neighbours = self._linked(torch.as_tensor(neighbours, dtype=torch.int64)).to(self.device)
        self.targets_on_device = None if targets is None else torch.from_numpy(self.targets).to(self.device)
        self.labels = labels
        self.on_event = on_event or (lambda event: None)
        self.eval_batch_size = eval_batch_size
        self.optimizer = self._make_optimizer()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=place.needs_scaler)
        self.epoch = 0                      # epochs completed
        self.history: list[dict] = []
        self.bank: torch.Tensor | None = None    # (H, N, d)
        self.best_head = 0

    @property
    def trained_model(self) -> nn.Module:
        """The model the training step calls: wrapped in DistributedDataParallel in several processes."""
        if not self.world.distributed:
            return self.model
        if getattr(self, "_ddp_of", None) is not self.model or getattr(self, "_ddp_heads", None) != self.model.n_heads:
            from torch.nn.parallel import DistributedDataParallel
            ids = [self.device.index] if self.device.type == "cuda" else None
            if self.device.type == "cuda":   # BatchNorm over the global batch, as in one process (GPUs only)
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            self._ddp = DistributedDataParallel(self.model, device_ids=ids)
            self._ddp_of, self._ddp_heads = self.model, self.model.n_heads
        return self._ddp

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
        """Everything on the CPU, so a checkpoint resumes on any device."""
        return {"model": {k: v.cpu() for k, v in self.model.state_dict().items()},
                "optimizer": _to_cpu(self.optimizer.state_dict()),
                "epoch": self.epoch, "neighbours": self.neighbours.cpu(),
                "bank": None if self.bank is None else self.bank.cpu(),
                "history": self.history, "best_head": self.best_head}

    def load_state_dict(self, state: dict) -> None:
        bank = state["bank"]
        if bank is not None and self.model.n_heads > bank.shape[0] == 1:   # saved after the heads were selected
            self.model.keep_head(0)
            self.optimizer = self._make_optimizer()
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])    # moves the moments to the parameters' device
        self.epoch = int(state["epoch"])
        self.neighbours = state["neighbours"].to(self.device)
        self.bank = None if bank is None else bank.to(self.device)
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
            self.model(self._on_device(self.source.anchors(torch.arange(start, min(start + self.eval_batch_size, n)))))
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
        with self._autocast():
            out = torch.cat([self.model(self._on_device(inputs(torch.arange(start, min(start + self.eval_batch_size, n)))))
                             .float() for start in range(0, n, self.eval_batch_size)], dim=1)
        self.model.train(was_training)
        return out

    def _on_device(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, non_blocking=True)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.place.amp_dtype, enabled=self.place.amp_dtype is not None)

    def _shared_latents(self) -> torch.Tensor:
        """all_latents(), the same on every process (rank 0's: GPU sums may differ in the last bits)."""
        return broadcast_tensor(self.all_latents().contiguous(), self.world)

    def _remine(self) -> None:
        k = min(self.neighbours.shape[1], len(self.source) - 1)
        found = nearest_neighbours(self.bank[self.best_head], k, self.config.knn_backend, self.device)[0]
        found = self._linked(torch.from_numpy(found)).to(self.device)
        self.neighbours = broadcast_tensor(found, self.world)

    def _linked(self, neighbours: torch.Tensor) -> torch.Tensor:
        """Neighbours with the must-link guidance applied, when the run has it."""
        if self.targets is None or self.config.guide not in ("must-link", "both"):
            return neighbours
        return torch.from_numpy(must_link(neighbours.cpu().numpy(), self.targets, self.config.seed))

    @property
    def anchors(self) -> bool:
        """Whether the anchor loss is on: the run has corrections, the guide uses it, its weight is not 0."""
        return self.targets is not None and self.config.guide in ("anchor", "both") and self.config.w_guide != 0

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
        return (z @ self.centroids.T).argmax(dim=1).cpu().numpy()

    # -- training -----------------------------------------------------------------------
    def fit(self, on_epoch_end: Callable[["Trainer"], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> "Trainer":
        cfg, world = self.config, self.world
        n = len(self.source)
        if self.bank is None:
            self.bank = self._shared_latents()
        per_process = max(1, min(cfg.batch_size, n) // world.size)
        batch = per_process * world.size    # the global batch
        steps = max(1, n // batch)          # drop the ragged tail: MMD wants full batches
        while self.epoch < cfg.epochs:
            epoch = self.epoch
            started = time.perf_counter()
            g = epoch_generator(cfg.seed, epoch)
            g_views = g if not world.distributed else view_generator(cfg.seed, epoch, world.rank)
            if cfg.refresh_every and epoch > 0 and epoch % cfg.refresh_every == 0:
                self.bank = self._shared_latents()
                self._remine()
            self.model.train()
            order = torch.randperm(n, generator=g)
            batches = [order[s * batch:(s + 1) * batch] for s in range(steps)]
            mine = [b[world.rank * per_process:(world.rank + 1) * per_process] for b in batches]
            sums = torch.zeros(self.bank.shape[0], len(PARTS), dtype=_accumulator(self.device), device=self.device)
            head_sums = torch.zeros(self.bank.shape[0], device=self.device)   # float32: picks the best head
            last_report = started
            for step, (idx, my_idx, rows) in enumerate(zip(batches, mine, self.source.feed(mine))):
                if should_stop is not None and self._stop_agreed(step, should_stop):
                    raise StopRequested(f"stopped during epoch {epoch + 1}")
                losses = self._step(idx, my_idx, rows, g, g_views)
                sums += losses
                head_sums += losses[:, 0].float()
                now = time.perf_counter()
                if now - last_report >= STEP_EVENT_SECONDS:
                    last_report = now
                    loss = float(losses[:, 0].mean())
                    _check_finite(loss, epoch, step)
                    self.on_event({"type": "step", "epoch": epoch + 1, "epochs": cfg.epochs,
                                   "step": step + 1, "steps": steps, "loss": loss})
            self._end_epoch(sums.cpu(), head_sums.cpu(), steps, started, on_epoch_end)
        return self

    def _stop_agreed(self, step: int, should_stop: Callable[[], bool]) -> bool:
        if not self.world.distributed:
            return should_stop()
        return step % STOP_CHECK_STEPS == 0 and any_true(should_stop(), self.world, self.device)

    def _step(self, idx: torch.Tensor, my_idx: torch.Tensor, rows, g: torch.Generator,
              g_views: torch.Generator) -> torch.Tensor:
        """One optimisation step on the global batch `idx` (this process's slice `my_idx`);
        returns each head's [total, mmd, aug, knn, cos, guide] on the device, detached."""
        world = self.world
        x = torch.cat([self.source.anchors(my_idx, rows), self.source.augmented(my_idx, g_views, rows)])
        with self._autocast():
            out = self.trained_model(self._on_device(x))
        z, z_view = out.float().split(len(my_idx), dim=1)
        pick = torch.randint(self.neighbours.shape[1], (len(idx),), generator=g)
        z_nb = self.bank[:, self.neighbours[idx.to(self.device), pick.to(self.device)]]
        z, z_view = gather_with_grad(z, world), gather_with_grad(z_view, world)
        targets = self.targets_on_device[idx.to(self.device)] if self.anchors else None
        head_losses, head_parts = zip(*(self._loss(z[h], z_view[h], z_nb[h], targets) for h in range(len(z))))
        loss = torch.stack(head_losses).sum()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.bank[:, idx.to(self.device)] = z.detach()
        return torch.stack([torch.stack([p.get(name, p["total"].new_zeros(())) for name in PARTS])
                            for p in head_parts]).to(_accumulator(self.device))

    def _loss(self, z, z_view, z_nb, targets) -> tuple[torch.Tensor, dict]:
        """The ICBPL loss of one head, plus the anchor loss on the decided images when on."""
        total, parts = icbpl_loss(z, z_view, z_nb, self.centroids, self.config.loss_weights)
        if targets is None:
            return total, parts
        guide = anchor_loss(z, targets, self.centroids)
        total = total + self.config.w_guide * guide
        return total, {**parts, "guide": guide.detach(), "total": total.detach()}

    def _end_epoch(self, sums: torch.Tensor, heads: torch.Tensor, steps: int, started: float,
                   on_epoch_end) -> None:
        cfg = self.config
        epoch = self.epoch
        _check_finite(float(heads.sum()), epoch, steps - 1)
        self.epoch = epoch + 1
        self.best_head = int(heads.argmin())
        weights = {"mmd": cfg.w_mmd, "aug": cfg.w_aug, "knn": cfg.w_knn, "cos": cfg.w_cos,
                   "guide": cfg.w_guide if self.anchors else 0}
        means = sums.mean(dim=0) / steps                 # over heads, per step
        losses = {name: float(means[i]) for i, name in enumerate(PARTS) if name == "total" or weights[name] != 0}
        record = {"epoch": self.epoch, "losses": losses, "seconds": time.perf_counter() - started}
        if len(heads) > 1:
            record.update(head_losses=(heads / steps).tolist(), best_head=self.best_head)
        if (len(heads) > 1 and cfg.select_head_after and self.epoch >= cfg.select_head_after
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


PARTS = ("total", "mmd", "aug", "knn", "cos", "guide")


def _accumulator(device: torch.device) -> torch.dtype:
    """Loss sums in float64 (as the Python floats they were), float32 where the device has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def _check_finite(loss: float, epoch: int, step: int) -> None:
    if not np.isfinite(loss):
        raise FloatingPointError(f"the loss became {loss} at epoch {epoch + 1} (by step {step + 1}); "
                                 "lower the learning rate")


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value
