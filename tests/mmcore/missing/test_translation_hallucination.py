"""Cycle translation and hallucination learn what a missing modality would have given."""
import torch
from torch import nn

from mmcore.data.polydigits import PolyDigits
from mmcore.missing import CycleTranslator, HallucinationNet, coral_loss


def data():
    return PolyDigits(600, "train", num_views=2, seed=0).full_batch(), PolyDigits(200, "test", num_views=2, seed=1).full_batch()


def test_cycle_translator_translates_better_than_the_mean_and_predicts_from_the_source_alone():
    torch.manual_seed(0)
    train, test = data()
    tr = CycleTranslator("m0", "m1", 64, 64, hidden=64, num_classes=10, align="coral")
    with torch.no_grad():
        untrained_cycle = float(((tr(test["m0"])[2] - test["m0"]) ** 2).mean())
    tr.fit(train, steps=250)
    mse = float(((tr.translate(test["m0"]) - test["m1"]) ** 2).mean())
    baseline = float(((train["m1"].mean(0) - test["m1"]) ** 2).mean())
    assert mse < 0.95 * baseline
    acc = float((tr.predict(test["m0"]).argmax(-1) == test.fields["label"]).float().mean())
    assert acc > 0.6
    with torch.no_grad():
        cycle = float(((tr(test["m0"])[2] - test["m0"]) ** 2).mean())
    assert cycle < 0.5 * untrained_cycle
    # imputation fills the target only where it is missing
    partial = test.drop_modality("m1", torch.arange(200) < 50)
    done = tr.impute(partial)
    assert bool(done.mask("m1").all()) and torch.equal(done["m1"][50:], test["m1"][50:])


def test_hallucination_net_stands_in_for_the_missing_modality():
    torch.manual_seed(0)
    train, test = data()
    teacher = nn.Sequential(nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 32))
    head = nn.Linear(32, 10)
    opt = torch.optim.Adam([*teacher.parameters(), *head.parameters()], lr=3e-3)
    for _ in range(200):
        loss = nn.functional.cross_entropy(head(teacher(train["m1"])), train.fields["label"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.requires_grad_(False)
    hall = HallucinationNet("m0", "m1", 64, teacher, 32, hidden=64, head=head, align="coral").fit(train, steps=250)
    missing = test.drop_modality("m1")
    feats = hall.features(missing)
    acc = float((head(feats).argmax(-1) == test.fields["label"]).float().mean())
    assert acc > 0.6, acc
    with torch.no_grad():
        real = teacher(test["m1"])
    assert float(coral_loss(feats, real)) < float(coral_loss(torch.randn_like(real), real))
    # where the modality is present, its real teacher features are used
    assert torch.allclose(hall.features(test), real)
