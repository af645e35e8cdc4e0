"""MultimodalModel: config round trip, save/load, masking through the model; the synthetic
benchmark's label rules; fusion beats unimodal on held-out synthetic data."""
from __future__ import annotations

import json

import pytest
import torch

from mmcore.data import collate_multimodal
from mmcore.data.synthetic import SyntheticFactorDataset, part_names
from mmcore.eval import accuracy
from mmcore.models import (
    EncoderConfig,
    FusionConfig,
    HeadConfig,
    ModelConfig,
    MultimodalModel,
    load_model,
    save_model,
)


def config(fusion="low_rank", kind="mlp", **options):
    return ModelConfig(
        modalities={"a": EncoderConfig(16, 8, kind), "b": EncoderConfig(16, 8, kind), "c": EncoderConfig(16, 8, kind)},
        fusion=FusionConfig(fusion, 8, options), head=HeadConfig(num_classes=2, hidden=8),
    )


@pytest.mark.parametrize("fusion,kind,options", [("low_rank", "mlp", {"rank": 2}), ("late", "mlp", {}),
                                                 ("cross_modal", "tokens", {"heads": 2}),
                                                 ("transformer", "tokens", {"mode": "bottleneck", "heads": 2})])
def test_save_load_round_trip_gives_the_same_output(tmp_path, fusion, kind, options):
    torch.manual_seed(0)
    model = MultimodalModel.from_config(config(fusion, kind, **options)).eval()
    data = SyntheticFactorDataset(20, missing_rate=0.3, seed=1)
    batch = collate_multimodal([data[i] for i in range(20)], data.modalities, data.shapes)
    save_model(model, tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["model"]["fusion"]["name"] == fusion
    loaded = load_model(tmp_path / "m")
    with torch.no_grad():
        torch.testing.assert_close(model(batch), loaded(batch), atol=0, rtol=0)
    assert ModelConfig.from_dict(model.config.to_dict()) == model.config


def test_model_masked_equals_modality_missing_from_the_batch():
    torch.manual_seed(0)
    model = MultimodalModel.from_config(config("attention_weighted")).eval()
    data = SyntheticFactorDataset(16, seed=2)
    full = data.to_batch()
    with torch.no_grad():
        masked = model(full.drop_modality("c"))
        no_tensor = model(full.only(["a", "b"]).__class__(
            {m: full[m] for m in ("a", "b")}, {m: full.present[m] for m in ("a", "b")}, dict(full.fields)))
    torch.testing.assert_close(masked, no_tensor, atol=1e-6, rtol=0)


def test_bad_configs_are_refused_clearly(tmp_path):
    with pytest.raises(ValueError, match="unknown field"):
        ModelConfig.from_dict({"modalities": {"a": {"in_dim": 4, "colour": 1}}})
    with pytest.raises(KeyError, match="unknown fusion"):
        MultimodalModel.from_config(config("nonsense"))
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(tmp_path)
    model = MultimodalModel.from_config(config("early"))
    save_model(model, tmp_path / "m")
    other = config("early")
    other.modalities["a"].out_dim = 4
    (tmp_path / "m" / "config.json").write_text(json.dumps({"model": other.to_dict()}))
    with pytest.raises(RuntimeError, match="do not match"):
        load_model(tmp_path / "m")


def test_synthetic_label_rules():
    data = SyntheticFactorDataset(3000, seed=0)
    assert data.parts == part_names(["a", "b", "c"]) and len(data.parts) == 7
    lat = data.latents
    shared = data.part == 0
    assert torch.equal(data.labels[shared], lat["shared"][shared])
    for j in range(3):
        rows = data.part == 1 + j
        assert torch.equal(data.labels[rows], lat["unique"][rows, j])
    rows = data.part == 4                                            # interaction:a+b
    assert torch.equal(data.labels[rows], lat["interaction"][rows, 0] ^ lat["interaction"][rows, 1])
    # the same world (mixing) in every split, different samples
    other = SyntheticFactorDataset(10, seed=5)
    assert torch.equal(other.mixing["a"], data.mixing["a"]) and not torch.equal(other.data["a"], data.data["a"][:10])
    missing = SyntheticFactorDataset(500, missing_rate=0.5, seed=0)
    assert missing.keep.any(1).all() and 0.4 < missing.keep.float().mean() < 0.6


def _fit(model, batch, steps=250, seed=0):
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(steps):
        idx = torch.randint(batch.batch_size, (128,))
        part = batch.select(idx)
        loss = torch.nn.functional.cross_entropy(model(part), part.fields["label"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_fusion_beats_every_unimodal_model_on_held_out_data():
    train = SyntheticFactorDataset(3000, seed=0).to_batch()
    test_set = SyntheticFactorDataset(1000, seed=7)
    test = test_set.to_batch()
    torch.manual_seed(0)
    fused = _fit(MultimodalModel.from_config(config("early")), train)
    fused_acc = accuracy(fused, test)
    inter = accuracy(fused, test, rows=test_set.part_of("interaction"))
    uni = {}
    for m in ("a", "b", "c"):
        cfg = config("early")
        cfg.modalities = {m: cfg.modalities[m]}
        torch.manual_seed(0)
        uni[m] = accuracy(_fit(MultimodalModel.from_config(cfg), train.only([m])), test)
    assert fused_acc > max(uni.values()) + 0.10, (fused_acc, uni)
    assert inter > 0.75, inter                                       # unimodal models are at chance there
