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


def _sphere_case(center, radius=2.0, size=16, seed=0):
    """A tiny phantom: noisy tissue, one hypo-intense sphere (~0.5 % of voxels) visible in MR and CT."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.stack(torch.meshgrid(*[torch.arange(size, dtype=torch.float32)] * 3, indexing="ij"))
    mask = ((idx - torch.tensor(center, dtype=torch.float32).view(3, 1, 1, 1)).norm(dim=0) <= radius).float()[None]
    def vol():
        return 0.8 - 0.5 * mask + 0.05 * torch.randn(1, size, size, size, generator=g)
    return {"mr": vol(), "ct": vol(), "label": seed % 4, "seg": mask}


def _overfit_dice(lesion_weight: float, steps: int = 25) -> float:
    from apps.medical.train import make_step

    torch.manual_seed(0)
    shapes = {"mr": (1, 16, 16, 16), "ct": (1, 16, 16, 16)}
    batch = collate_multimodal([_sphere_case((5, 6, 7), seed=0), _sphere_case((10, 9, 8), seed=1)],
                               modalities=["mr", "ct"], shapes=shapes)
    model = FusionSegDiagNet().train()
    step = make_step(modality_dropout=0.0, seed=0, lesion_weight=lesion_weight)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(steps):
        opt.zero_grad()
        step(model, batch).loss.backward()
        opt.step()
    with torch.no_grad():
        pred = model.eval()(batch)["seg"].argmax(1, keepdim=True).float()
    target = batch.fields["seg"]
    return float(2 * (pred * target).sum() / (pred.sum() + target.sum()).clamp(min=1))


def test_segmentation_overfits_a_tiny_lesion_through_the_training_step():
    # the diagnostic the shipped model failed: can the net + training step (loss, labels, pooling)
    # overfit two volumes holding a lesion of < 1 % of the voxels within a few dozen steps?
    assert _overfit_dice(lesion_weight=20.0) > 0.5


def test_lesion_weight_anneals_to_one():
    from apps.medical.train import make_step

    step = make_step(modality_dropout=0.0, lesion_weight=5.0, anneal_steps=4)
    model = FusionSegDiagNet().train()
    batch = _batch([_sample(label=0), _sample(label=1)])
    weights = [step.current_weight()]
    for _ in range(5):
        step(model, batch)
        weights.append(step.current_weight())
    assert weights[0] == 5.0 and weights[2] == 3.0 and weights[-1] == 1.0
    step(model.eval(), batch)                # evaluation does not advance the anneal
    assert step.current_weight() == 1.0 and make_step(lesion_weight=7.0).current_weight() == 7.0


def test_keep_largest_lesion_drops_specks_and_keeps_empty_volumes():
    from apps.medical.model import keep_largest_lesion

    prob = torch.zeros(2, 1, 16, 16, 16)
    prob[0, 0, 2:7, 2:7, 2:7] = 0.9          # the lesion
    prob[0, 0, 12, 12, 12] = 0.8             # a false-positive speck
    prob[1, 0, 5, 5, 5] = 0.3                # nothing above threshold
    out = keep_largest_lesion(prob)
    assert out[0, 0, 12, 12, 12] == 0 and torch.equal(out[0, 0, 2:7, 2:7, 2:7], prob[0, 0, 2:7, 2:7, 2:7])
    torch.testing.assert_close(out[1], prob[1])


def test_init_weights_copies_what_fits_and_names_the_rest(tmp_path):
    from apps.medical.train import export_bundle, init_weights

    torch.manual_seed(0)
    old = FusionSegDiagNet(gmu_levels=(1, 2))          # layout of bundles written before gmu_levels
    export_bundle(old, tmp_path / "old")
    new = FusionSegDiagNet()
    skipped = init_weights(new, tmp_path / "old")
    assert skipped and all(k.startswith("fuse.1.") for k in skipped)
    torch.testing.assert_close(new.encoders["mr"].levels[0].conv.weight, old.encoders["mr"].levels[0].conv.weight)


def test_each_modality_carries_one_bit_of_the_class():
    # the demo data's promise: no single modality separates all four classes, the pair does
    from apps.medical.phantom import CT_CUE, MR_CUE

    ct_groups = {c: {k for k in range(4) if CT_CUE[k] == CT_CUE[c]} for c in range(4)}
    mr_groups = {c: {k for k in range(4) if MR_CUE[k] == MR_CUE[c]} for c in range(4)}
    assert all(len(g) == 2 for g in (*ct_groups.values(), *mr_groups.values()))
    assert all(ct_groups[c] & mr_groups[c] == {c} for c in range(4))


def test_calibrate_refits_temperature_and_rewrites_the_bundle(tmp_path):
    import json

    from safetensors.torch import save_file

    from apps.medical.train import calibrate, export_bundle, load_bundle

    torch.manual_seed(0)
    model = FusionSegDiagNet().eval()
    model.temperature.fill_(5.0)
    export_bundle(model, tmp_path / "b", {"val_auroc": 0.5})
    cache, entries = tmp_path / "data" / "cache", []
    cache.mkdir(parents=True)
    for i in range(8):                       # already-preprocessed cases: calibrate reads the cache
        g = torch.Generator().manual_seed(i)
        mask = torch.zeros(1, *ROI, dtype=torch.uint8)
        mask[0, 5:10, 5:10, 5:10] = 1
        save_file({"image": torch.rand(2, *ROI, generator=g), "mask": mask,
                   "present": torch.ones(2, dtype=torch.uint8)}, str(cache / f"c{i}.safetensors"))
        (cache / f"c{i}.json").write_text("{}")
        entries.append({"id": f"c{i}", "study": "unused", "label": i % 4})
    (tmp_path / "data" / "datalist.json").write_text(json.dumps({"training": [], "validation": entries}))
    report = calibrate(tmp_path / "b", [tmp_path / "data"])
    assert report["studies"] == 8 and report["after"]["nll"] <= report["before"]["nll"] + 1e-6
    again = load_bundle(tmp_path / "b")
    assert abs(float(again.temperature) - report["temperature_after"]) < 1e-5
    meta = json.loads((tmp_path / "b" / "configs" / "metadata.json").read_text())
    assert meta["metrics"]["val_auroc"] == 0.5 and meta["metrics"]["calibration"]["studies"] == 8


def test_ece_uncertainty_floor_shrinks_with_the_test_set_and_flags_miscalibration():
    """The binned ECE of a *perfectly calibrated* model is not 0 on a small set: the floor says how
    much of a measured ECE is sampling noise (42 studies: ~0.12, more than the 0.10 target)."""
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    from apps.medical.evaluate import ece_uncertainty

    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(3 * torch.randn(2000, 4, generator=g), -1)
    labels = torch.multinomial(probs, 1, generator=g).squeeze(1)        # calibrated by construction
    small, large = ece_uncertainty(probs[:40], labels[:40], draws=200), ece_uncertainty(probs, labels, draws=200)
    assert small["floor_mean"] > 2 * large["floor_mean"]
    assert large["ci95"][0] <= large["floor_p95"]                       # calibrated: measured ECE near the floor
    overconfident = torch.softmax(3 * torch.log(probs), -1)             # same ranking, too sharp
    ece = float(multiclass_calibration_error(overconfident, labels, 4, n_bins=15))
    assert ece > ece_uncertainty(overconfident, labels, draws=200)["floor_p95"]
