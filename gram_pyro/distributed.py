"""Multi-process training on ``torch.distributed`` (gram-paper.md §7 trains on 8 GPUs; we go past one machine).

Launch with ``torchrun --nproc_per_node=K -m gram_cli train ...``: torchrun sets ``RANK``,
``WORLD_SIZE`` and the rendezvous variables; :func:`init_from_env` joins the group with the gloo backend
on CPU and nccl on CUDA.  The trainer wraps its step in ``DistributedDataParallel``; only rank 0 writes.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device: torch.device) -> torch.device:
    """Join the process group when launched by torchrun; returns this process's device."""
    if world_size_from_env() <= 1 or dist.is_initialized():
        return device
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        return torch.device("cuda", local)
    dist.init_process_group("gloo")
    return device


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def shutdown(barrier: bool = False) -> None:
    """Leave the process group.  ``barrier=True`` (after a successful run) first waits for every process.

    Without it, a rank that finishes early (ranks > 0 skip the final checkpoint and evaluation) tore down its
    gloo group while rank 0 was still using its own, and on a loaded 2-core machine it died in C++
    ("terminate called without an active exception", SIGABRT; issue 14).  After a failure the barrier is
    skipped: the other processes may be inside a collective that will never complete, and torchrun ends them.
    """
    if dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()
