"""One trainer for every mmcore model and app.

The loop is plain PyTorch you can read in one sitting: a ``DistributedSampler`` (also with one
process, so data order depends only on seed and epoch), bf16 autocast, gradient accumulation
and clipping, a warmup + cosine/linear schedule, torchmetrics on validation, early stopping,
atomic checkpoints every N steps, and exact resume.

What a model has to provide is a ``step_fn(model, batch) -> StepOutput``; the default one
calls ``model(batch)`` and applies cross-entropy against ``batch.fields[target_key]``.

Resume is exact on CPU: the checkpoint holds weights, optimizer, scheduler, every rank's RNG
states, the state of every callback and extra stateful object (``state_dict()`` /
``load_state_dict()``), the non-finite guard and the position inside the epoch; the sampler
skips the batches already seen, and per-item randomness (augmentation, in the main process or
in DataLoader workers) is seeded from (seed, epoch, item) by :class:`~.seeding.SeededItems`, so a
run killed with SIGKILL and resumed ends with the same bits as one that never stopped.

A step whose loss or gradient norm is not finite is skipped (:class:`~.guards.NonFiniteGuard`),
and no checkpoint is written from weights holding NaN/inf.  Under DDP the parameters that the
first step does not use are named and handled (``TrainConfig.find_unused_parameters``).
"""
from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from ..utils.device import resolve_device
from ..utils.io import atomic_write_json
from ..utils.seed import rng_state, seed_everything, set_rng_state
from . import distributed as D
from .checkpoint import CheckpointManager, save_weights
from .config import TrainConfig
from .guards import NonFiniteGuard, NonFiniteTrainingError, first_nonfinite
from .history import History
from .seeding import ResumableSampler, SeededItems, epoch_seed

log = logging.getLogger(__name__)


@dataclass
class StepOutput:
    loss: torch.Tensor
    preds: torch.Tensor | None = None     # what the metrics get (logits or probabilities)
    target: torch.Tensor | None = None


StepFn = Callable[[nn.Module, Any], StepOutput]


def classification_step(target_key: str = "label") -> StepFn:
    """Default step: ``logits = model(batch)``; cross-entropy against ``batch.fields[target_key]``."""

    def step(model: nn.Module, batch: Any) -> StepOutput:
        logits = model(batch)
        target = batch.fields[target_key] if hasattr(batch, "fields") else batch[target_key]
        return StepOutput(F.cross_entropy(logits.float(), target), logits.detach().float(), target)

    return step


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    epoch: int
    best_metric: float | None
    best_step: int | None
    last_metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False


def _lr_lambda(config: TrainConfig, total_steps: int) -> Callable[[int], float]:
    warm = max(0, config.warmup_steps)

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if config.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        if config.schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _metric_values(metrics: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    values = metrics.compute()
    if not isinstance(values, dict):
        name = type(metrics).__name__.lower()
        for prefix in ("multiclass", "multilabel", "binary"):
            name = name.removeprefix(prefix)
        values = {name: values}
    for name, value in values.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            out[name] = float(value)
    return out


class Trainer:
    """Fit ``model`` on ``train_data``; evaluate on ``val_data`` with torchmetrics.

    Args:
        model: any ``nn.Module``.
        config: :class:`TrainConfig`.
        train_data, val_data: map-style datasets.
        collate_fn: e.g. :class:`mmcore.data.MultimodalCollator`.
        step_fn: computes the loss (and the metrics' inputs) of one batch.
        metrics: a torchmetrics ``Metric`` or ``MetricCollection`` fed ``(preds, target)``.
        callbacks: objects with optional ``on_step_end(trainer)`` / ``on_epoch_end(trainer)``; those with
            ``state_dict()`` and ``load_state_dict(state)`` are checkpointed and restored on resume.
        extra_config: saved into ``config.json`` beside the training config (e.g. the model's).
        stateful: more named objects with ``state_dict()`` / ``load_state_dict()`` that training
            changes outside the model (a loss module with a memory bank, a sampler of your own).
            ``step_fn`` is checkpointed too when it has both methods.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        train_data: Dataset,
        val_data: Dataset | None = None,
        *,
        collate_fn: Callable | None = None,
        step_fn: StepFn | None = None,
        metrics: Any = None,
        callbacks: Sequence[Any] = (),
        extra_config: dict | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        stateful: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.dist = D.init_distributed(self.device)
        self.device = D.local_device(self.device, self.dist)
        seed_everything(config.seed)
        self.model = model.to(self.device)
        self.train_data = train_data
        self.val_data = val_data
        self.collate_fn = collate_fn
        self.step_fn = step_fn or classification_step()
        self.metrics = metrics.to(self.device) if metrics is not None else None
        self.callbacks = list(callbacks)
        self.extra_config = extra_config or {}
        self.extra_stateful = dict(stateful or {})
        self.run_dir = Path(config.out_dir)
        self.ckpt = CheckpointManager(self.run_dir, keep=config.keep_checkpoints)
        self.history = History()
        self.guard = NonFiniteGuard(config.max_nonfinite_steps)

        self.sampler = ResumableSampler(DistributedSampler(
            train_data, num_replicas=self.dist.world_size, rank=self.dist.rank, shuffle=True, seed=config.seed,
        ))
        # items are seeded from (seed, epoch, index) and the loader's generator from (seed, epoch):
        # nothing about the data depends on which process or worker made it, or on a restart
        self.items = SeededItems(train_data, config.seed)
        self.loader = DataLoader(
            self.items, batch_size=config.batch_size, sampler=self.sampler, collate_fn=collate_fn,
            num_workers=config.num_workers, pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(epoch_seed(config.seed, 0)),
        )
        self.batches_per_epoch = math.ceil(len(self.sampler.inner) / config.batch_size)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / config.accumulate)
        self.total_steps = config.epochs * self.steps_per_epoch
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)

        # DDP is built on the first batch, once the parameters that batch leaves unused are known
        self.ddp_model: nn.Module = self.model
        self._ddp_pending = self.dist.enabled
        self._rank_buffers: dict[str, torch.Tensor] | None = None
        params = [p for p in self.model.parameters() if p.requires_grad]
        if optimizer is not None:
            self.optimizer = optimizer
        elif config.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
        else:
            self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(config, self.total_steps))

        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best_metric: float | None = None
        self.best_step: int | None = None
        self.bad_epochs = 0
        self.stopped_early = False
        self.last_metrics: dict[str, float] = {}
        self.window: list = [0.0, 0]        # [sum of step losses, steps] since the last train row
        self._saved_at: tuple[int, int, int] | None = None   # (step, epoch, batch) of the last checkpoint

    # ------------------------------------------------------------------ state
    @property
    def monitor(self) -> str | None:
        if self.config.monitor:
            return self.config.monitor
        return "val_loss" if self.val_data is not None else None

    def _monitor_mode(self) -> str:
        if self.config.monitor is None:
            return "min"
        return self.config.monitor_mode

    def _position(self) -> tuple[int, int, int]:
        return (self.step, self.epoch, self.batch_in_epoch)

    def _trainer_state(self) -> dict:
        return {
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "best_metric": self.best_metric, "best_step": self.best_step, "bad_epochs": self.bad_epochs,
            "stopped_early": self.stopped_early, "history": self.history.rows,
            "world_size": self.dist.world_size, "nonfinite": self.guard.state_dict(), "loss_window": self.window,
        }

    def _stateful_objects(self) -> dict[str, Any]:
        """Every object besides model/optimizer/scheduler whose state a resume must restore."""
        found: dict[str, Any] = {}
        for i, cb in enumerate(self.callbacks):
            found[f"callback{i}:{type(cb).__name__}"] = cb
        found["step_fn"] = self.step_fn
        found.update({f"extra:{name}": obj for name, obj in self.extra_stateful.items()})
        return {k: v for k, v in found.items() if hasattr(v, "state_dict") and hasattr(v, "load_state_dict")}

    def _rank_state(self) -> dict:
        """What differs between ranks: RNG streams, stateful objects, and the model's extra states
        (e.g. a memory bank's sampling generator), none of which DDP keeps in step."""
        extra = {k: v for k, v in self.model.state_dict().items() if k.endswith("_extra_state")}
        state = {"rng": rng_state(), "stateful": {k: v.state_dict() for k, v in self._stateful_objects().items()},
                 "extra": extra}
        if not self.dist.is_main:
            # rank 0's buffers are in model.safetensors; another rank's may have moved on locally
            # (a memory bank updated from its own shard), and DDP does not keep them in step
            state["buffers"] = {k: v.detach().cpu().clone() for k, v in self.model.named_buffers()}
        return state

    def save_checkpoint(self) -> None:
        """Write a checkpoint of this exact position (once per position; never from NaN/inf weights)."""
        if self._saved_at == self._position():
            return
        bad = first_nonfinite(self.model)
        if bad is not None:
            raise NonFiniteTrainingError(
                f"refusing to write the checkpoint of step {self.step}: '{bad}' holds NaN/inf. The previous "
                f"checkpoint in {self.ckpt.dir} is intact; resume from it with a lower learning rate or fixed data."
            )
        mine = self._rank_state()
        ranks = [mine]
        if self.dist.enabled:
            ranks = [None] * self.dist.world_size if self.dist.is_main else None
            torch.distributed.gather_object(mine, ranks, dst=0)
        self._saved_at = self._position()
        if not self.dist.is_main:
            return
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "rng": mine["rng"], "ranks": ranks}
        self.ckpt.save(self.step, self.model, state, self._trainer_state())

    def _resume(self) -> bool:
        latest = self.ckpt.latest()
        if latest is None:
            if self.dist.is_main:
                log.info("no checkpoint in %s; starting from scratch", self.ckpt.dir)
            return False
        state, ts = self.ckpt.load(latest, self.model, map_location=self.device)
        if ts.get("world_size", 1) != self.dist.world_size:
            raise RuntimeError(
                f"checkpoint {latest} was written with {ts.get('world_size')} processes, this run has "
                f"{self.dist.world_size}; the data order would differ. Resume with the same process count."
            )
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        mine = state["ranks"][self.dist.rank] if "ranks" in state else {"rng": state["rng"]}
        set_rng_state(mine["rng"])
        if mine.get("extra"):
            self.model.load_state_dict(mine["extra"], strict=False)
        self._rank_buffers = mine.get("buffers") or None
        self._restore_rank_buffers(keep=True)    # and again once DDP's constructor has broadcast rank 0's
        saved = mine.get("stateful", {})
        for name, obj in self._stateful_objects().items():
            if name in saved:
                obj.load_state_dict(saved[name])
            elif self.dist.is_main:
                log.warning("checkpoint %s holds no state for %s; it starts afresh (resume is not exact)", latest, name)
        for key in ("step", "epoch", "batch_in_epoch", "best_metric", "best_step", "bad_epochs", "stopped_early"):
            setattr(self, key, ts[key])
        self.guard.load_state_dict(ts.get("nonfinite", {}))
        self.window = list(ts.get("loss_window", [0.0, 0]))
        self.history = History(ts.get("history", []))
        self._saved_at = self._position()
        if self.dist.is_main:
            log.info("resumed from %s (epoch %d, step %d)", latest, self.epoch, self.step)
        return True

    # ------------------------------------------------------------------ DDP
    def _wrap_ddp(self, batch: Any) -> None:
        """Wrap the model in DDP; with ``find_unused_parameters`` None or False, first find (on every
        rank, without side effects) which parameters this batch's loss does not use."""
        self._ddp_pending = False
        ids = [self.device.index] if self.device.type == "cuda" else None
        mode = self.config.find_unused_parameters
        find = True
        if mode is not True:
            unused = self._probe_unused(batch)
            if unused and mode is False:
                raise ValueError(
                    f"{len(unused)} parameter(s) received no gradient on the first step: {unused[:10]}. "
                    "DistributedDataParallel would fail on the next step. Remove them from the model or set "
                    "TrainConfig(find_unused_parameters=True) (or leave it None to have it set automatically)."
                )
            if unused and self.dist.is_main:
                log.warning("%d parameter(s) received no gradient on the first step: %s; training with "
                            "DDP(find_unused_parameters=True)", len(unused), unused[:10])
            find = bool(unused)
        self.ddp_model = DistributedDataParallel(self.model, device_ids=ids, find_unused_parameters=find)
        self._restore_rank_buffers(keep=False)

    @torch.no_grad()
    def _restore_rank_buffers(self, keep: bool) -> None:
        if not self._rank_buffers:
            return
        own = dict(self.model.named_buffers())
        for name, value in self._rank_buffers.items():
            if name in own:
                own[name].copy_(value)
        if not keep:
            self._rank_buffers = None

    def _probe_unused(self, batch: Any) -> list[str]:
        def loss() -> torch.Tensor:
            with self._autocast():
                return self.step_fn(self.model, batch).loss

        return D.unused_on_any_rank(self.model, loss, self._stateful_objects(), self.device)

    # ------------------------------------------------------------------ loop
    def _autocast(self):
        if not self.config.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _to_device(self, batch: Any) -> Any:
        if hasattr(batch, "to"):
            return batch.to(self.device, non_blocking=True)
        if isinstance(batch, dict):
            return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        if isinstance(batch, (list, tuple)):
            return type(batch)(v.to(self.device) if torch.is_tensor(v) else v for v in batch)
        return batch

    def _batch_size(self, batch: Any) -> int:
        if hasattr(batch, "batch_size"):
            return int(batch.batch_size)
        return self.config.batch_size

    def _grad_norm(self) -> float:
        """Global gradient norm (after all-reduce under DDP), clipped to ``grad_clip`` if set."""
        if self.config.grad_clip:
            return float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip))
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        return float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0

    def _all_ranks(self, ok: bool) -> bool:
        if not self.dist.enabled:
            return ok
        flag = torch.tensor([0 if ok else 1], device=self.device)
        torch.distributed.all_reduce(flag)
        return int(flag) == 0

    def _optimizer_step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1

    def _skip_step(self, loss: float, grad_norm: float) -> None:
        """Drop this step's gradients; count it, log it, and stop after too many in a row."""
        self.optimizer.zero_grad(set_to_none=True)
        step = self.step + 1
        self.history.log(epoch=self.epoch, step=step, split="skipped", loss=loss, grad_norm=grad_norm)
        if self.dist.is_main:
            log.warning("step %d (epoch %d, batch %d): non-finite loss (%s) or gradient norm (%s); step skipped, "
                        "weights unchanged (%d in a row, %d in this run)", step, self.epoch + 1, self.batch_in_epoch,
                        loss, grad_norm, self.guard.consecutive + 1, self.guard.skipped + 1)
        self.guard.record(False, step)

    def _done(self) -> bool:
        return self.stopped_early or self.epoch >= self.config.epochs or (
            self.config.max_steps is not None and self.step >= self.config.max_steps
        )

    def fit(self, resume: bool = False) -> TrainResult:
        if resume:
            self._resume()
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.run_dir / "config.json", {"train": self.config.to_dict(), **self.extra_config})
        while not self._done():
            self._train_epoch()
        self._finish()
        return TrainResult(self.run_dir, self.step, self.epoch, self.best_metric, self.best_step,
                           dict(self.last_metrics), list(self.history.rows), self.stopped_early)

    def _forward_backward(self, batch: Any, boundary: bool, group_size: int) -> float:
        sync = contextlib.nullcontext() if (boundary or not self.dist.enabled) else self.ddp_model.no_sync()
        try:
            with sync:
                with self._autocast():
                    out = self.step_fn(self.ddp_model, batch)
                (out.loss.float() / group_size).backward()
        except RuntimeError as exc:
            if "Expected to have finished reduction" not in str(exc):
                raise
            raise RuntimeError(
                "DistributedDataParallel: some parameters received no gradient in a step after the first (a "
                "conditional branch of the model). Set TrainConfig(find_unused_parameters=True)."
            ) from exc
        return float(out.loss.detach())

    def _train_epoch(self) -> None:
        cfg = self.config
        self.sampler.set_epoch(self.epoch, skip=self.batch_in_epoch * cfg.batch_size)
        self.items.set_epoch(self.epoch)
        self.loader.generator.manual_seed(epoch_seed(cfg.seed, self.epoch))
        self.ddp_model.train()
        bar = tqdm(total=self.batches_per_epoch, initial=self.batch_in_epoch, desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                   disable=not (cfg.progress and self.dist.is_main), dynamic_ncols=True, leave=False,
                   mininterval=0.5 if sys.stderr.isatty() else 10.0)
        # the logged loss averages the steps since the last log row; a resume continues that window
        if self.batch_in_epoch == 0:
            self.window = [0.0, 0]
        window_samples, t0 = 0, time.perf_counter()
        micro, group_size, group_loss, group_ok = 0, 1, 0.0, True
        for batch in self.loader:
            batch = self._to_device(batch)
            if self._ddp_pending:
                self._wrap_ddp(batch)
                self.ddp_model.train()
            if micro == 0:
                # the last group of an epoch may be short: average over the micro-batches it has
                group_size = min(cfg.accumulate, self.batches_per_epoch - self.batch_in_epoch)
                group_loss, group_ok = 0.0, True
            micro += 1
            last_of_epoch = self.batch_in_epoch + 1 == self.batches_per_epoch
            boundary = micro == group_size or last_of_epoch
            loss = self._forward_backward(batch, boundary, group_size)
            group_ok = group_ok and math.isfinite(loss)
            group_loss += loss
            window_samples += self._batch_size(batch) * self.dist.world_size
            self.batch_in_epoch += 1
            bar.update(1)
            if not boundary:
                continue
            micro = 0
            grad_norm = self._grad_norm()
            if not self._all_ranks(NonFiniteGuard.finite(group_ok, grad_norm)):
                self._skip_step(group_loss / group_size, grad_norm)
                if last_of_epoch:
                    break
                continue
            self.guard.record(True, self.step + 1)
            self._optimizer_step()
            self.window[0] += group_loss / group_size
            self.window[1] += 1
            elapsed = max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{self.window[0] / self.window[1]:.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}",
                            samples_s=f"{window_samples / elapsed:.0f}")
            if self.step % max(1, cfg.log_every) == 0 or last_of_epoch:
                self.history.log(epoch=self.epoch, step=self.step, split="train",
                                 loss=self.window[0] / self.window[1], lr=self.scheduler.get_last_lr()[0],
                                 grad_norm=grad_norm, samples_per_s=window_samples / elapsed)
                self.window, window_samples, t0 = [0.0, 0], 0, time.perf_counter()
            for cb in self.callbacks:
                if hasattr(cb, "on_step_end"):
                    cb.on_step_end(self)
            if last_of_epoch:
                break
            if cfg.max_steps is not None and self.step >= cfg.max_steps:
                bar.close()
                self.save_checkpoint()
                return
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
        bar.close()
        self.epoch += 1
        self.batch_in_epoch = 0
        if self.val_data is not None and (self.epoch % cfg.eval_every_epochs == 0 or self.epoch == cfg.epochs):
            self._validate()
        for cb in self.callbacks:
            if hasattr(cb, "on_epoch_end"):
                cb.on_epoch_end(self)
        self.save_checkpoint()

    def _validate(self) -> None:
        values = self.evaluate(self.val_data)
        self.last_metrics = values
        self.history.log(epoch=self.epoch, step=self.step, split="val", **{k[4:]: v for k, v in values.items()})
        if self.dist.is_main:
            shown = ", ".join(f"{k}={v:.4f}" for k, v in values.items())
            log.info(f"epoch {self.epoch}/{self.config.epochs} step {self.step}: {shown}")
        name = self.monitor
        if name is None or name not in values:
            return
        value = values[name]
        better = self.best_metric is None or (
            value > self.best_metric if self._monitor_mode() == "max" else value < self.best_metric
        )
        if better:
            self.best_metric, self.best_step, self.bad_epochs = value, self.step, 0
            if self.dist.is_main and first_nonfinite(self.model) is None:
                save_weights(self.model, self.run_dir / "best" / "model.safetensors",
                             metadata={"step": str(self.step), name: str(value)})
        else:
            self.bad_epochs += 1
            if self.config.patience is not None and self.bad_epochs >= self.config.patience:
                self.stopped_early = True
                if self.dist.is_main:
                    log.info(f"early stop: {name} has not improved for {self.bad_epochs} evaluations")

    @torch.no_grad()
    def evaluate(self, data: Dataset) -> dict[str, float]:
        """Mean loss and metric values over ``data`` (sharded across ranks, reduced)."""
        cfg = self.config
        sampler = DistributedSampler(data, num_replicas=self.dist.world_size, rank=self.dist.rank, shuffle=False)
        loader = DataLoader(data, batch_size=cfg.eval_batch_size or cfg.batch_size, sampler=sampler,
                            collate_fn=self.collate_fn, num_workers=cfg.num_workers)
        self.model.eval()
        if self.metrics is not None:
            self.metrics.reset()
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        for batch in loader:
            batch = self._to_device(batch)
            with self._autocast():
                out = self.step_fn(self.model, batch)
            n = self._batch_size(batch)
            total += torch.tensor([float(out.loss) * n, n], dtype=torch.float64, device=self.device)
            if self.metrics is not None and out.preds is not None:
                self.metrics.update(out.preds.float(), out.target)
        self.model.train()
        if self.dist.enabled:
            torch.distributed.all_reduce(total)
        values = {"val_loss": float(total[0] / total[1].clamp(min=1))}
        if self.metrics is not None:
            values.update({f"val_{k}": v for k, v in _metric_values(self.metrics).items()})
        return values

    def _finish(self) -> None:
        bad = first_nonfinite(self.model)
        if bad is not None:
            raise NonFiniteTrainingError(f"refusing to write {self.run_dir / 'model.safetensors'}: '{bad}' holds NaN/inf")
        if not self.dist.is_main:
            return
        save_weights(self.model, self.run_dir / "model.safetensors", metadata={"step": str(self.step)})
        self.history.write_csv(self.run_dir / "metrics.csv")
        try:
            self.history.plot(self.run_dir / "curves.png", title=str(self.run_dir.name))
        except Exception as exc:  # a plot must never cost a finished training run
            log.warning("could not draw curves.png: %s", exc)
