"""Issue 14: the trainer's non-finite guard, short accumulation groups, checkpoint pointer and
duplicate saves, refused files, and the token encoder's parameters."""
import json
import logging
import os
import pickle

import pytest
import torch
from torch import nn

from mmcore.data import MultimodalCollator, ToyMultimodalDataset
from mmcore.encoders import TokenEncoder
from mmcore.models import (
    EncoderConfig,
    FusionConfig,
    HeadConfig,
    ModelConfig,
    MultimodalModel,
    load_model,
    save_model,
)
from mmcore.train import CheckpointManager, StepOutput, TrainConfig, Trainer, UnsafeCheckpointError

DIMS = {"image": 6, "text": 4}


class Records(logging.Handler):
    """Collects mmcore's log records whatever the logging setup (propagation may be off)."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.WARNING)
        self.logger, self.messages = logging.getLogger(name), []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self):
        self.logger.addHandler(self)
        self.old_level, self.logger.level = self.logger.level, logging.WARNING
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)
        self.logger.setLevel(self.old_level)


class Mean(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.ModuleDict({m: nn.Linear(d, 8) for m, d in DIMS.items()})
        self.head = nn.Linear(8, 3)

    def forward(self, batch):
        total, count = 0.0, 0.0
        for m, enc in self.enc.items():
            w = batch.mask(m).unsqueeze(-1).float()
            total, count = total + enc(batch[m]) * w, count + w
        return self.head(total / count.clamp(min=1))


def poisoned_step(bad_calls):
    """Cross-entropy whose loss is NaN on the given (1-based) calls: a model blowing up on purpose."""
    calls = {"n": 0}

    def step(model, batch):
        calls["n"] += 1
        logits = model(batch)
        loss = nn.functional.cross_entropy(logits, batch.fields["label"])
        if calls["n"] in bad_calls:
            loss = loss * float("nan")
        return StepOutput(loss)

    return step


def trainer(tmp_path, step_fn=None, n=64, **cfg):
    data = ToyMultimodalDataset(n, DIMS, missing_rate=0.3, seed=0)
    torch.manual_seed(0)
    base = dict(out_dir=str(tmp_path / "run"), epochs=1, batch_size=16, lr=1e-2, device="cpu", progress=False,
                schedule="constant")
    base.update(cfg)
    return Trainer(Mean(), TrainConfig(**base), data, collate_fn=MultimodalCollator(DIMS), step_fn=step_fn)


def finite(model):
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_nonfinite_step_is_skipped_counted_and_logged(tmp_path):
    t = trainer(tmp_path, poisoned_step({2}), n=64, checkpoint_every=1)
    with Records("mmcore.train") as rec:
        result = t.fit()
    assert finite(t.model)
    assert result.step == 3                          # 4 batches, one skipped
    skipped = [r for r in result.history if r["split"] == "skipped"]
    assert [r["step"] for r in skipped] == [2] and t.guard.skipped == 1
    assert any("step 2" in m and "non-finite" in m for m in rec.messages), rec.messages
    ckpt = json.loads((t.ckpt.latest() / "trainer.json").read_text())
    assert ckpt["nonfinite"]["skipped"] == 1


def test_consecutive_nonfinite_steps_stop_the_run(tmp_path):
    from mmcore.train.guards import NonFiniteTrainingError

    t = trainer(tmp_path, poisoned_step(set(range(3, 100))), n=160, max_nonfinite_steps=3, checkpoint_every=1)
    with pytest.raises(NonFiniteTrainingError, match="3 consecutive"):
        t.fit()
    assert finite(t.model) and t.step == 2


def test_no_checkpoint_from_nonfinite_weights(tmp_path):
    from mmcore.train.guards import NonFiniteTrainingError

    t = trainer(tmp_path)
    with torch.no_grad():
        t.model.head.bias[0] = float("inf")
    with pytest.raises(NonFiniteTrainingError, match="head.bias"):
        t.save_checkpoint()
    assert t.ckpt.latest() is None and not list(t.ckpt.dir.glob("step-*"))


def test_short_last_accumulation_group_is_scaled_by_its_size(tmp_path):
    """One batch in the epoch and accumulate=4: the step equals the plain step on that batch."""
    kw = dict(n=16, optimizer="sgd", grad_clip=None, lr=0.1, max_steps=1)
    short = trainer(tmp_path / "a", accumulate=4, **kw)
    plain = trainer(tmp_path / "b", accumulate=1, **kw)
    short.fit()
    plain.fit()
    for (name, p), q in zip(short.model.named_parameters(), plain.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=name)


def test_max_steps_multiple_of_checkpoint_every_saves_once(tmp_path, monkeypatch):
    t = trainer(tmp_path, n=64, max_steps=2, checkpoint_every=2)
    saves = []
    original = CheckpointManager.save
    monkeypatch.setattr(CheckpointManager, "save", lambda self, step, *a: saves.append(step) or original(self, step, *a))
    t.fit()
    assert saves == [2]


def test_replacing_a_step_never_deletes_the_complete_copy_first(tmp_path, monkeypatch):
    manager = CheckpointManager(tmp_path, keep=1)
    model = nn.Linear(2, 2)
    manager.save(3, model, {"optimizer": {}}, {"step": 3})
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(src).rstrip("/").split("/")[-1].startswith(".tmp-step-"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        manager.save(3, model, {"optimizer": {}}, {"step": 3, "second": True})
    monkeypatch.undo()
    assert manager.latest() == manager.dir / "step-00000003"
    assert "second" not in json.loads((manager.latest() / "trainer.json").read_text())


def test_latest_falls_back_to_newest_complete_step_with_a_warning(tmp_path):
    manager = CheckpointManager(tmp_path, keep=5)
    for step in (1, 2):
        manager.save(step, nn.Linear(2, 2), {"optimizer": {}}, {"step": step})
    (manager.dir / "latest").write_text("step-00000009\n")           # names a step that is gone
    with Records("mmcore.train") as rec:
        assert manager.latest() == manager.dir / "step-00000002"
    assert any("step-00000009" in m and "step-00000002" in m for m in rec.messages), rec.messages


def test_latest_pointer_is_confined_to_the_run_directory(tmp_path):
    outside = CheckpointManager(tmp_path / "other")
    elsewhere = outside.save(7, nn.Linear(2, 2), {"optimizer": {}}, {"step": 7})
    manager = CheckpointManager(tmp_path / "run")
    manager.save(1, nn.Linear(2, 2), {"optimizer": {}}, {"step": 1})
    for pointer in (str(elsewhere.resolve()), "../../other/checkpoints/step-00000007"):
        (manager.dir / "latest").write_text(pointer + "\n")
        with Records("mmcore.train") as rec:
            assert manager.latest() == manager.dir / "step-00000001"
        assert rec.messages and "not a checkpoint directory inside" in rec.messages[0]


def model_config(fusion="transformer"):
    return ModelConfig(modalities={m: EncoderConfig(d, 8, "tokens", {"num_tokens": 2}) for m, d in DIMS.items()},
                       fusion=FusionConfig(fusion, 8, {"heads": 2}), head=HeadConfig(num_classes=3, hidden=None))


def test_refused_weights_file_says_refused_not_mismatched(tmp_path):
    model = MultimodalModel.from_config(model_config())
    save_model(model, tmp_path / "m")
    with open(tmp_path / "m" / "model.safetensors", "wb") as fh:
        pickle.dump({"weight": torch.zeros(2)}, fh)
    with pytest.raises(UnsafeCheckpointError, match="refusing") as info:
        load_model(tmp_path / "m")
    assert "does not match" not in str(info.value)


def test_token_encoder_builds_only_the_branch_it_uses():
    """Every parameter of a token-encoder + transformer model gets a gradient (DDP needs that)."""
    model = MultimodalModel.from_config(model_config())
    batch = MultimodalCollator(DIMS)([ToyMultimodalDataset(8, DIMS, seed=0)[i] for i in range(8)])
    model(batch).sum().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    assert isinstance(model.encoders["image"], TokenEncoder) and not hasattr(model.encoders["image"], "per_token")
    tokens = TokenEncoder(4, 8, input="tokens")
    assert tokens(torch.randn(2, 5, 4)).shape == (2, 5, 8) and not hasattr(tokens, "split")
    with pytest.raises(ValueError, match="input='tokens'"):
        TokenEncoder(4, 8)(torch.randn(2, 5, 4))
