"""β-weighting and KL annealing schedules.

``KLAnnealing(kind, warmup_steps, beta_max, cycles)`` gives β(step):

==========  =============================================================
kind        β(step)
==========  =============================================================
constant    beta_max
linear      beta_max · min(1, step / warmup_steps)
sigmoid     beta_max · σ(12 · (step / warmup_steps - 0.5))  (≈0 → ≈beta_max)
cyclical    linear ramp over the first half of each of ``cycles`` periods of
            ``warmup_steps`` steps, then flat at beta_max (Fu et al. 2019)
==========  =============================================================

Use it as a trainer callback: it reads ``trainer.step`` after every optimiser step, and the
step function (:func:`mmcore.generative.train.vae_step`) reads ``annealer.beta``.  Its
``state_dict()`` / ``load_state_dict()`` carry the step, so a resumed run continues the schedule.
"""
from __future__ import annotations

import math


class KLAnnealing:
    KINDS = ("constant", "linear", "sigmoid", "cyclical")

    def __init__(self, kind: str = "linear", warmup_steps: int = 1000, beta_max: float = 1.0, cycles: int = 4,
                 beta_min: float = 0.0) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown annealing '{kind}' ({', '.join(self.KINDS)})")
        if warmup_steps < 1:
            raise ValueError("warmup_steps must be >= 1")
        self.kind, self.warmup_steps, self.beta_max, self.cycles, self.beta_min = kind, warmup_steps, beta_max, cycles, beta_min
        self.step = 0

    def value(self, step: int) -> float:
        span = self.beta_max - self.beta_min
        if self.kind == "constant":
            return self.beta_max
        if self.kind == "linear":
            return self.beta_min + span * min(1.0, step / self.warmup_steps)
        if self.kind == "sigmoid":
            x = min(1.0, step / self.warmup_steps)
            return self.beta_min + span / (1.0 + math.exp(-12.0 * (x - 0.5)))
        if step >= self.cycles * self.warmup_steps:
            return self.beta_max
        phase = (step % self.warmup_steps) / self.warmup_steps
        return self.beta_min + span * min(1.0, 2.0 * phase)

    @property
    def beta(self) -> float:
        return self.value(self.step)

    def on_step_end(self, trainer) -> None:
        self.step = int(trainer.step)

    def state_dict(self) -> dict:
        """The schedule and where it is: the trainer checkpoints this and restores it on resume."""
        return {"kind": self.kind, "warmup_steps": self.warmup_steps, "beta_max": self.beta_max,
                "cycles": self.cycles, "beta_min": self.beta_min, "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        schedule = {k: state[k] for k in ("kind", "warmup_steps", "beta_max", "cycles", "beta_min") if k in state}
        mine = {k: getattr(self, k) for k in schedule}
        if schedule != mine:
            raise ValueError(f"checkpointed KL annealing {schedule} differs from this run's {mine}")
        self.step = int(state.get("step", 0))
