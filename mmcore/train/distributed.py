"""torchrun / DistributedDataParallel glue: one code path for 1 or N processes.

Under ``torchrun --nproc_per_node=N`` the environment carries ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`init_distributed` joins the process group (gloo on CPU, NCCL on CUDA).
Without them everything degrades to a single process and the helpers are no-ops.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..utils.seed import rng_state, set_rng_state
from .guards import unused_parameters


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group if launched by torchrun; return this process's rank info."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return DistInfo()
    backend = "nccl" if device.type == "cuda" else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


def local_device(device: torch.device, info: DistInfo) -> torch.device:
    """Each rank takes its own GPU; CPU ranks share the CPU."""
    if device.type == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    return device


def unused_on_any_rank(model: nn.Module, compute_loss: Callable[[], torch.Tensor], stateful: dict[str, Any],
                       device: torch.device) -> list[str]:
    """Names of trainable parameters that ``compute_loss()`` leaves unused on at least one rank.

    Runs one forward (no backward) and walks its autograd graph.  The forward's side effects are
    undone: RNG states, buffers and extra states of ``model`` (memory banks, batch-norm statistics,
    sampling generators) and the ``state_dict`` of each object in ``stateful``, so a run that
    probes is bit-for-bit the run that does not.  A collective: every rank must call it.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = {n for n, _ in model.named_parameters()}
    model_state = {k: copy.deepcopy(v.detach() if torch.is_tensor(v) else v)
                   for k, v in model.state_dict().items() if k not in params}
    objects = {k: copy.deepcopy(v.state_dict()) for k, v in stateful.items()}
    rng = rng_state()
    try:
        loss = compute_loss()
        local = set(unused_parameters(named, loss))
        del loss
    finally:
        set_rng_state(rng)
        model.load_state_dict(model_state, strict=False)
        for k, v in stateful.items():
            v.load_state_dict(objects[k])
    flags = torch.tensor([n in local for n, _ in named], dtype=torch.int64, device=device)
    dist.all_reduce(flags)
    return [n for (n, _), f in zip(named, flags.tolist()) if f]
