"""Training a multimodal VAE with the shared :class:`mmcore.train.Trainer`.

``vae_step(annealer)`` is the trainer's ``step_fn``: the loss is the model's objective at the
annealed β while training and at β = 1 (the true ELBO) in evaluation, so ``val_loss`` is the
negative ELBO per sample and comparable between runs.  ``fit_vae`` wires it all together.
"""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from ..train import StepOutput, TrainConfig, Trainer, TrainResult
from .annealing import KLAnnealing
from .base import MultimodalVAE


def vae_step(annealer: KLAnnealing | None = None):
    def step(model: MultimodalVAE, batch) -> StepOutput:
        inner = model.module if hasattr(model, "module") else model
        beta = annealer.beta if (annealer is not None and inner.training) else (None if inner.training else 1.0)
        out = model(batch, beta)
        return StepOutput(out.loss)

    return step


def fit_vae(model: MultimodalVAE, train_data: Dataset, val_data: Dataset | None, collate_fn, out_dir: str | Path,
            epochs: int = 10, batch_size: int = 64, lr: float = 2e-3, seed: int = 0, device: str = "auto",
            annealer: KLAnnealing | None = None, progress: bool = False, resume: bool = False) -> tuple[Trainer, TrainResult]:
    """Train ``model`` and return the trainer (for ``evaluate``) and its result."""
    cfg = TrainConfig(out_dir=str(out_dir), epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device,
                      monitor="val_loss", monitor_mode="min", schedule="constant", progress=progress, grad_clip=5.0)
    callbacks = [annealer] if annealer is not None else []
    trainer = Trainer(model, cfg, train_data, val_data, collate_fn=collate_fn, step_fn=vae_step(annealer),
                      callbacks=callbacks, extra_config={"model": model.config(),
                                                         "annealing": annealer.state_dict() if annealer else None})
    return trainer, trainer.fit(resume=resume)
