"""What the trainer refuses to let slip by: non-finite steps, non-finite checkpoints, and
parameters that DistributedDataParallel would wait for forever.

* :class:`NonFiniteGuard` decides, per optimizer step, whether the loss and the global gradient
  norm are finite.  A step that is not is skipped (no optimizer or scheduler step, gradients
  dropped); ``limit`` consecutive skips stop the run with :class:`NonFiniteTrainingError`.
* :func:`first_nonfinite` names the first parameter or buffer holding NaN/inf, so no checkpoint
  is ever written from poisoned weights.
* :func:`unused_parameters` walks the autograd graph of a loss (without running backward) and
  names the trainable parameters that did not take part in it.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


class NonFiniteTrainingError(RuntimeError):
    """Training produced NaN/inf where it must not (too many skipped steps, or poisoned weights)."""


def first_nonfinite(module: nn.Module) -> str | None:
    """Name of the first floating-point parameter or buffer that holds a NaN or an inf, else None."""
    for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


class NonFiniteGuard:
    """Counts skipped steps; ``limit`` consecutive ones (0 = no limit) raise :class:`NonFiniteTrainingError`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.skipped = 0          # over the whole run
        self.consecutive = 0
        self.skipped_at: list[int] = []   # the optimizer step each skip would have been (last 100)

    @staticmethod
    def finite(loss_ok: bool, grad_norm: float) -> bool:
        return loss_ok and math.isfinite(grad_norm)

    def record(self, ok: bool, step: int) -> None:
        """Book one step's outcome; raises when the limit of consecutive skips is reached."""
        if ok:
            self.consecutive = 0
            return
        self.skipped += 1
        self.consecutive += 1
        self.skipped_at = (self.skipped_at + [step])[-100:]
        if self.limit and self.consecutive >= self.limit:
            raise NonFiniteTrainingError(
                f"{self.consecutive} consecutive optimizer steps had a non-finite loss or gradient norm "
                f"(steps {self.skipped_at[-self.consecutive:][:5]}...); stopping. The weights were not updated by "
                f"those steps and the last checkpoint is intact: lower the learning rate, check the data, or raise "
                f"TrainConfig.max_nonfinite_steps (now {self.limit})."
            )

    def state_dict(self) -> dict:
        return {"skipped": self.skipped, "consecutive": self.consecutive, "skipped_at": list(self.skipped_at)}

    def load_state_dict(self, state: dict) -> None:
        self.skipped = int(state.get("skipped", 0))
        self.consecutive = int(state.get("consecutive", 0))
        self.skipped_at = [int(s) for s in state.get("skipped_at", [])]


def graph_parameters(loss: torch.Tensor) -> set[int]:
    """ids of the leaf tensors that ``loss``'s autograd graph accumulates gradients into."""
    seen: set = set()
    found: set[int] = set()
    stack = [loss.grad_fn] if loss.grad_fn is not None else []
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        variable = getattr(fn, "variable", None)      # AccumulateGrad nodes hold the leaf
        if variable is not None:
            found.add(id(variable))
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return found


def unused_parameters(named: Iterable[tuple[str, nn.Parameter]], loss: torch.Tensor) -> list[str]:
    """Names of trainable parameters that ``loss`` does not depend on (no backward is run)."""
    used = graph_parameters(loss)
    return [name for name, p in named if p.requires_grad and id(p) not in used]
