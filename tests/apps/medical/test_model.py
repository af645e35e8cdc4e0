"""The fusion network: shapes, absent modalities never read, modality dropout, calibration, bundle round trip."""
from __future__ import annotations

import torch

from apps.medical.model import FusionSegDiagNet, lesion_descriptor
from mmcore.data import collate_multimodal

ROI = (16, 16, 16)   # the network is fully convolutional: small volumes keep the tests fast
SHAPES = {"mr": (1, *ROI), "ct": (1, *ROI)}


def _batch(samples):
    return collate_multimodal(samples, modalities=["mr", "ct"], shapes=SHAPES)


def _sample(mr=True, ct=True, label=0, fill=None):
    g = torch.Generator().manual_seed(label)
    vol = (lambda: torch.rand(1, *ROI, generator=g)) if fill is None else (lambda: torch.full((1, *ROI), fill))
    return {"mr": vol() if mr else None, "ct": vol() if ct else None, "label": label, "seg": torch.zeros(1, *ROI)}


def test_shapes_and_absent_modality_is_never_read():
    torch.manual_seed(0)
    model = FusionSegDiagNet().eval()
    a = _batch([_sample(label=1), _sample(ct=False, label=2)])
    b = _batch([_sample(label=1), _sample(ct=True, label=2, fill=7.0)])
    b.present["ct"][1] = False            # same row, garbage placeholder behind a False mask
    b["mr"][1] = a["mr"][1]
    with torch.no_grad():
        oa, ob = model(a), model(b)
    assert oa["seg"].shape == (2, 2, *ROI) and oa["logits"].shape == (2, 4)
    torch.testing.assert_close(oa["logits"][1], ob["logits"][1])
    torch.testing.assert_close(oa["seg"][1], ob["seg"][1])


def test_single_modality_batch_and_early_fusion_variant():
    torch.manual_seed(0)
    for model in (FusionSegDiagNet(), FusionSegDiagNet(fusion="early"), FusionSegDiagNet(modalities=("ct",))):
        out = model(_batch([_sample(mr=False, label=3), _sample(mr=False, label=0)]))
        assert out["logits"].shape == (2, 4) and torch.isfinite(out["logits"]).all()


def test_lesion_descriptor_contrast():
    maps = torch.zeros(1, 1, 12, 12, 12)
    w = torch.zeros(1, 1, 12, 12, 12)
    w[..., 4:8, 4:8, 4:8] = 1
    maps[w.bool()] = 3.0
    d = lesion_descriptor(maps, w)
    torch.testing.assert_close(d, torch.tensor([[3.0, 0.0, 3.0]]))


def test_modality_dropout_step_drops_whole_modalities_only_in_training():
    from apps.medical.train import make_step

    class Spy(FusionSegDiagNet):
        def forward(self, batch, lesion_weight=None):
            self.seen = (batch.mask("mr").clone(), batch.mask("ct").clone())
            return super().forward(batch, lesion_weight)

    torch.manual_seed(0)
    model = Spy()
    step = make_step(modality_dropout=1.0, seed=0)
    batch = _batch([_sample(label=i % 4) for i in range(4)])
    out = step(model.train(), batch)
    mr, ct = model.seen
    assert torch.all(mr ^ ct)                 # every row lost exactly one modality
    assert out.loss.requires_grad and out.preds.shape == (4, 4)
    step(model.eval(), batch)
    assert model.seen[0].all() and model.seen[1].all()


def test_temperature_scaling_lowers_nll_on_overconfident_logits():
    from apps.medical.train import fit_temperature

    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (400,), generator=g)
    logits = torch.randn(400, 4, generator=g)
    logits[torch.arange(400), labels] += 1.0
    logits *= 6                               # overconfident
    t = fit_temperature(logits, labels)
    nll = torch.nn.functional.cross_entropy
    assert t > 2 and nll(logits / t, labels) < nll(logits, labels)


def test_bundle_round_trip(tmp_path):
    from apps.medical.train import export_bundle, load_bundle

    torch.manual_seed(0)
    model = FusionSegDiagNet().eval()
    model.temperature.fill_(1.7)
    export_bundle(model, tmp_path / "b")
    again = load_bundle(tmp_path / "b")
    batch = _batch([_sample(label=1), _sample(mr=False, label=2)])
    with torch.no_grad():
        torch.testing.assert_close(model(batch)["logits"], again(batch)["logits"])
    assert abs(float(again.temperature) - 1.7) < 1e-6 and (tmp_path / "b" / "configs" / "metadata.json").exists()
