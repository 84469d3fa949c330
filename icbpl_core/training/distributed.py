"""Training in several processes with torch.distributed (launched by torchrun).

    torchrun --nproc_per_node=N -m icbpl_core train ...      (or: icbpl train --gpus N ...)

Every process holds the whole model, the neighbour bank and the same seeded generators, so
they agree on each step's global batch of B indices; process r trains on its B/W slice of it
and DistributedDataParallel averages the gradients. The losses need the whole batch (MMD
compares the batch with the PEDCC points), so the latents are all-gathered *with their
gradients* before the losses. Every process then computes the same loss L on the same global
batch; the gather's backward sums each slice's gradient over the W processes (W x dL/dz_r),
and DDP's average over W leaves exactly the single-process gradient dL/dtheta.

Only rank 0 writes (events, checkpoints, results, the feature cache); the others wait at the
collectives. Stops (Ctrl-C, Cancel) are agreed between processes every few steps so all stop
at the same step. NCCL between GPUs, gloo between CPU processes.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

COLLECTIVE_TIMEOUT_MINUTES = 60       # rank 0 alone mines neighbours and writes caches while the others wait


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def describe(self) -> dict:
        return {"world_size": self.size, **({"backend": dist.get_backend()} if self.distributed else {})}


SINGLE = World()


def under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_world(device: torch.device) -> World:
    """Join the process group torchrun describes in the environment (once); SINGLE outside it."""
    if not under_torchrun():
        return SINGLE
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, timeout=timedelta(minutes=COLLECTIVE_TIMEOUT_MINUTES))
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def gather_with_grad(z: torch.Tensor, world: World) -> torch.Tensor:
    """Every process's `z` concatenated along dim 1 (rank order), gradients flowing back."""
    if not world.distributed:
        return z
    from torch.distributed.nn.functional import all_gather
    with warnings.catch_warnings():    # its replacement is private API; this one is the documented one
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(all_gather(z.contiguous()), dim=1)


def broadcast(obj, world: World, src: int = 0):
    """A picklable object from rank `src` to every process."""
    if not world.distributed:
        return obj
    box = [obj if world.rank == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_tensor(t: torch.Tensor, world: World) -> torch.Tensor:
    """Rank 0's tensor on every process (same shape and dtype on all)."""
    if world.distributed:
        dist.broadcast(t, src=0)
    return t


def any_true(flag: bool, world: World, device: torch.device) -> bool:
    """Whether `flag` is set on any process (a collective: every process must call it)."""
    if not world.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def shard(n: int, world: World) -> tuple[int, int]:
    """This process's contiguous share [start, stop) of n items (equal shares, the last shorter)."""
    per = -(-n // world.size)
    return min(n, world.rank * per), min(n, (world.rank + 1) * per)


def gather_rows(rows: np.ndarray, n: int, world: World, device: torch.device) -> np.ndarray | None:
    """Each process's shard of an (n, D) array -> the whole array on rank 0 (None elsewhere).

    Shards are padded to equal length for all_gather (NCCL needs equal shapes)."""
    if not world.distributed:
        return rows
    per = -(-n // world.size)
    padded = torch.zeros((per, *rows.shape[1:]), dtype=torch.float32, device=device)
    padded[:len(rows)] = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)).to(device)
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded)
    if not world.main:
        return None
    return torch.cat(parts)[:n].cpu().numpy()


def gather_objects(items: list | None, world: World) -> list:
    """Every process's list, concatenated (on every process)."""
    if not world.distributed:
        return list(items or [])
    out: list = [None] * world.size
    dist.all_gather_object(out, list(items or []))
    return [x for part in out for x in part]
