"""Starting a run in several processes: `icbpl train --gpus N` re-runs its own command under
torchrun, and every process of a torchrun joins the process group before the run is chosen.

    icbpl train --gpus 2 --dataset digits
      = torchrun --standalone --nproc_per_node=2 -m icbpl_core train --dataset digits

Rank 0 alone decides what the command does (creates the run folder, checks a resume may go
ahead) and tells the others, so they never race it.
"""
from __future__ import annotations

import sys

from .distributed import SINGLE, World, barrier, broadcast, under_torchrun

__all__ = ["finish", "is_refusal", "join", "reason", "refused", "share", "under_torchrun", "with_torchrun"]


def torchrun_args(n: int, argv: list[str]) -> list[str]:
    """torchrun's arguments for `icbpl <argv>` in n processes on this machine (--gpus dropped)."""
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--gpus":
            skip = True
            continue
        if not arg.startswith("--gpus="):
            rest.append(arg)
    return ["--standalone", f"--nproc_per_node={n}", "-m", "icbpl_core", *rest]


def with_torchrun(n: int, argv: list[str]) -> int:
    """Run `icbpl <argv>` in n processes under torchrun's agent, here; returns rank 0's exit status.

    Ctrl-C and SIGTERM (the app's Cancel) reach the agent, which passes them to its processes:
    they stop together at the next agreed step. A process that fails or dies is told in one line
    (rank 0 has recorded in the run why it ended), not as the agent's traceback."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = torchrun_args(n, argv)
    print(f"launching {n} processes: torchrun {' '.join(args)}", file=sys.stderr, flush=True)
    try:
        run(get_args_parser().parse_args(args))
    except ChildFailedError as exc:
        failures = exc.failures
        own = failures.get(0)
        if own is not None and own.exitcode > 0:      # rank 0 ended the run and said why
            return own.exitcode
        rank, failure = min(failures.items())
        how = f"was killed by {failure.signal_name()}" if failure.exitcode < 0 else f"exited with {failure.exitcode}"
        print(f"error: training process {rank} {how}; the run keeps its last epoch: continue it with "
              f"icbpl resume RUN_DIR --gpus {n}", file=sys.stderr)
        return 1
    except SignalException:
        return 130
    return 0


def join(device: str) -> World:
    """This process's place among torchrun's (SINGLE outside torchrun)."""
    if not under_torchrun():
        return SINGLE
    from .device import resolve_device
    from .distributed import init_world
    return init_world(resolve_device(device))


def share(value, world: World):
    return broadcast(value, world)


def refused(message: str) -> dict:
    return {"refused": message}


def is_refusal(value) -> bool:
    return isinstance(value, dict) and "refused" in value


def reason(value: dict) -> str:
    return value["refused"]


def finish(world: World) -> None:
    """After a run that ended well: every process leaves the group together (rank 0 writes the
    results while the others wait here; a process leaving gloo mid-collective aborts)."""
    if world.distributed:
        import torch.distributed as dist
        barrier(world)
        dist.destroy_process_group()
