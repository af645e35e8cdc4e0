"""Atomic, pickle-free checkpoints.

Layout of a run directory::

    run/
      config.json              the training config (and the caller's model config, if any)
      checkpoints/
        step-00000120/         one complete checkpoint, written to a temp dir then renamed
          model.safetensors    weights
          state.pt             optimizer, scheduler, RNG states (loaded with weights_only=True)
          trainer.json         epoch, step, position in the epoch, early-stopping state
        latest                 text file naming the newest complete checkpoint (replaced atomically);
                               only a bare ``step-N`` name inside this directory is followed
      best/model.safetensors   weights at the best validation metric

A SIGKILL at any instant leaves either the previous checkpoint or the new one behind, never a
half-written one: files are written into ``.tmp-*`` and become visible by ``os.replace``.  A
pointer that names a missing step falls back to the newest complete one, with a warning.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..utils.io import atomic_write_text, fsync_dir, umask_mode

log = logging.getLogger(__name__)
_STEP_NAME = re.compile(r"step-\d{8,}")


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint file holds objects that only unpickling arbitrary code could load."""


def _contiguous_state(module: nn.Module) -> dict[str, torch.Tensor]:
    state = module.state_dict()
    out: dict[str, torch.Tensor] = {}
    seen: dict[int, str] = {}
    for key, value in state.items():
        # safetensors refuses tensors that share storage (tied weights): store one copy
        ptr = value.untyped_storage().data_ptr() if value.numel() else -1
        if ptr in seen and ptr != -1:
            continue
        seen[ptr] = key
        out[key] = value.detach().cpu().contiguous()
    return out


def save_weights(module: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Save ``module``'s weights as safetensors, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    os.close(fd)
    try:
        save_file(_contiguous_state(module), tmp, metadata=metadata)
        umask_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_weights(module: nn.Module, path: str | Path, strict: bool = True, device: str | torch.device = "cpu") -> nn.Module:
    """Load safetensors weights into ``module`` (tied weights restored by ``strict=False`` on them)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        state = load_file(str(path), device=str(device))
    except Exception as exc:
        raise UnsafeCheckpointError(f"{path} is not a valid safetensors file ({exc}); refusing to load it") from None
    missing, unexpected = module.load_state_dict(state, strict=False)
    # keys dropped as tied duplicates come back through the tie itself
    own = module.state_dict()
    really_missing = [
        k for k in missing if not any(own[k].data_ptr() == own[s].data_ptr() for s in state if s in own)
    ]
    if strict and (really_missing or unexpected):
        raise RuntimeError(
            f"weights in {path} do not match the model: missing {really_missing[:5]}, unexpected {list(unexpected)[:5]}"
        )
    return module


def safe_torch_load(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` that refuses anything but tensors and plain containers (no arbitrary pickles)."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"refusing to load {path}: it holds objects that need arbitrary unpickling "
            f"(only tensors and plain containers are accepted). Detail: {str(exc).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, ValueError) as exc:
        raise UnsafeCheckpointError(f"cannot read {path} as a weights-only checkpoint: {exc}") from None


class CheckpointManager:
    """Writes numbered checkpoints atomically, keeps the newest ``keep``, finds the latest."""

    def __init__(self, run_dir: str | Path, keep: int = 2) -> None:
        self.run_dir = Path(run_dir)
        self.dir = self.run_dir / "checkpoints"
        self.keep = keep

    def save(self, step: int, model: nn.Module, state: dict[str, Any], trainer_state: dict[str, Any]) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        final = self.dir / f"step-{step:08d}"
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step-{step:08d}-", dir=self.dir))
        replaced: Path | None = None
        try:
            save_file(_contiguous_state(model), str(tmp / "model.safetensors"))
            with open(tmp / "state.pt", "wb") as fh:
                torch.save(state, fh)
                fh.flush()
                os.fsync(fh.fileno())
            (tmp / "trainer.json").write_text(json.dumps(trainer_state, indent=2, default=float))
            umask_mode(tmp, directory=True)
            if final.exists():
                # the complete old copy is moved aside, never deleted, until the new one is in place
                replaced = Path(tempfile.mkdtemp(prefix=f".tmp-replaced-{step:08d}-", dir=self.dir))
                os.replace(final, replaced / final.name)
            os.replace(tmp, final)
        except BaseException:
            if replaced is not None and not final.exists() and (replaced / final.name).exists():
                os.replace(replaced / final.name, final)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(self.dir)
        if replaced is not None:
            shutil.rmtree(replaced, ignore_errors=True)
        atomic_write_text(self.dir / "latest", final.name + "\n")
        self._prune()
        return final

    def _prune(self) -> None:
        done = sorted(p for p in self.dir.glob("step-*") if p.is_dir())
        for old in done[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in self.dir.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)

    @staticmethod
    def is_complete(path: Path) -> bool:
        return all((path / name).is_file() for name in ("model.safetensors", "state.pt", "trainer.json"))

    def complete_steps(self) -> list[Path]:
        """Complete checkpoint directories, oldest first."""
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.iterdir() if _STEP_NAME.fullmatch(p.name) and self.is_complete(p))

    def latest(self) -> Path | None:
        """The checkpoint named by ``latest``; if that is missing, incomplete or points outside this
        run's ``checkpoints/`` directory, the newest complete step (with a warning)."""
        pointer = self.dir / "latest"
        steps = self.complete_steps()
        if not pointer.exists():
            if steps:
                log.warning("%s: no 'latest' pointer; resuming from the newest complete checkpoint %s",
                            self.dir, steps[-1].name)
                return steps[-1]
            return None
        name = pointer.read_text().strip()
        if not _STEP_NAME.fullmatch(name):
            problem = f"names {name!r}, which is not a checkpoint directory inside {self.dir}"
        elif not self.is_complete(self.dir / name):
            problem = f"names {name}, which is missing or incomplete"
        else:
            return self.dir / name
        fallback = steps[-1] if steps else None
        log.warning("%s %s; %s", pointer, problem,
                    f"resuming from the newest complete checkpoint {fallback.name}" if fallback
                    else "no complete checkpoint is left: starting from scratch")
        return fallback

    def load(self, path: Path, model: nn.Module, map_location: str | torch.device = "cpu") -> tuple[dict, dict]:
        load_weights(model, path / "model.safetensors", device=map_location)
        state = safe_torch_load(path / "state.pt", map_location="cpu")
        trainer_state = json.loads((path / "trainer.json").read_text())
        return state, trainer_state
