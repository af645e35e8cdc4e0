import csv

import pytest
import torch
from masked_mean import MaskedMeanClassifier
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from mmcore.data import MultimodalBatch, MultimodalCollator, ToyMultimodalDataset
from mmcore.train import StepOutput, TrainConfig, Trainer

DIMS = {"image": 16, "text": 8}


def make(tmp_path, **overrides):
    train = ToyMultimodalDataset(512, DIMS, noise=3.0, missing_rate=0.3, seed=0)
    val = ToyMultimodalDataset(256, DIMS, noise=3.0, missing_rate=0.3, seed=1)
    torch.manual_seed(0)
    model = MaskedMeanClassifier(DIMS, 16, 3)
    cfg = dict(out_dir=str(tmp_path / "run"), epochs=6, batch_size=32, lr=3e-3, device="cpu", progress=False,
               monitor="val_accuracy", monitor_mode="max")
    cfg.update(overrides)
    return Trainer(model, TrainConfig(**cfg), train, val, collate_fn=MultimodalCollator(DIMS),
                   metrics=MulticlassAccuracy(3))


def test_learns_beats_chance_and_writes_logs(tmp_path):
    trainer = make(tmp_path)
    before = trainer.evaluate(trainer.val_data)["val_accuracy"]
    result = trainer.fit()
    assert result.last_metrics["val_accuracy"] > max(0.75, before + 0.2)
    rows = list(csv.DictReader(open(result.run_dir / "metrics.csv")))
    assert {"train", "val"} <= {r["split"] for r in rows}
    assert (result.run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (result.run_dir / "best" / "model.safetensors").exists()
    assert result.best_metric == max(float(r["accuracy"]) for r in rows if r["split"] == "val")


def test_gradient_accumulation_matches_large_batch(tmp_path):
    """Two micro-batches of 16 with accumulate=2 take the same step as one batch of 32."""
    small = make(tmp_path / "a", batch_size=16, accumulate=2, epochs=1, max_steps=1, grad_clip=None, schedule="constant")
    big = make(tmp_path / "b", batch_size=32, accumulate=1, epochs=1, max_steps=1, grad_clip=None, schedule="constant")
    small.fit()
    big.fit()
    for (name, p), q in zip(small.model.named_parameters(), big.model.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=name)


def test_early_stopping_stops(tmp_path):
    # lr 0: the metric never improves after the first evaluation
    result = make(tmp_path, epochs=10, lr=0.0, patience=2).fit()
    assert result.stopped_early and result.epoch == 3


def test_bf16_autocast_trains(tmp_path):
    result = make(tmp_path, amp=True).fit()
    assert result.last_metrics["val_accuracy"] > 0.7


def test_custom_step_fn_and_plain_tensor_batches(tmp_path):
    x = torch.randn(128, 4)
    y = (x[:, 0] > 0).long()
    data = list(zip(x, y))
    model = nn.Linear(4, 2)

    def step(m, batch):
        xb, yb = batch
        logits = m(xb)
        return StepOutput(nn.functional.cross_entropy(logits, yb), logits.detach(), yb)

    cfg = TrainConfig(out_dir=str(tmp_path / "r"), epochs=5, batch_size=16, lr=0.05, device="cpu", progress=False)
    result = Trainer(model, cfg, data, data, step_fn=step, metrics=MulticlassAccuracy(2)).fit()
    assert result.last_metrics["val_accuracy"] > 0.9


def test_config_validation():
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="exp")
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({"epochz": 1})


def test_cuda_request_without_gpu_is_clear():
    from mmcore.utils.device import resolve_device

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_model_sees_mask_not_placeholder():
    model = MaskedMeanClassifier(DIMS, 8, 3).eval()
    coll = MultimodalCollator(DIMS)
    s = {"image": torch.randn(16), "text": torch.randn(8), "label": 0}
    alone = coll([{"image": s["image"], "text": None, "label": 0}])
    garbage = coll([s]).drop_modality("text")
    garbage.tensors["text"] = torch.full((1, 8), 1e6)  # even a non-zero placeholder is ignored
    with torch.no_grad():
        assert torch.allclose(model(alone), model(garbage))
    assert isinstance(alone, MultimodalBatch)
