"""Memory bank, PIRL and xID: formulas, missing modalities, state round trip, and learning."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmcore.represent.memory_bank import MemoryBank
from mmcore.represent.pirl import PIRLLoss, nce_loss
from mmcore.represent.xid import XIDLoss, memory_infonce
from mmcore.train.checkpoint import load_weights, save_weights


def test_bank_negatives_exclude_self_update_and_round_trip():
    bank = MemoryBank(5, 4, momentum=0.5)
    index = torch.tensor([0, 3, 4])
    neg = bank.sample_negatives(index, 200, torch.Generator().manual_seed(0))
    for row, i in enumerate(index):
        assert not (neg[row] == bank.memory[i]).all(-1).any()
    feats = torch.randn(3, 4)
    expected = F.normalize(0.5 * bank.memory[index] + 0.5 * F.normalize(feats, dim=1), dim=1)
    bank.update(index, feats)
    torch.testing.assert_close(bank.memory[index], expected)
    clone = MemoryBank(5, 4, seed=99)
    clone.load_state_dict(bank.state_dict())
    torch.testing.assert_close(clone.memory, bank.memory)
    with pytest.raises(IndexError, match="out of range"):
        bank.get(torch.tensor([5]))


def test_nce_and_memory_infonce_formulas():
    torch.manual_seed(0)
    a, p, n = F.normalize(torch.randn(2, 3), dim=1), F.normalize(torch.randn(2, 3), dim=1), F.normalize(torch.randn(2, 4, 3), dim=2)
    tau, ratio = 0.1, 0.25
    h = lambda s: math.exp(s) / (math.exp(s) + ratio)  # noqa: E731
    ref = [-math.log(h((a[i] @ p[i]).item() / tau)) - sum(math.log(1 - h((p[i] @ n[i, k]).item() / tau)) for k in range(4))
           for i in range(2)]
    torch.testing.assert_close(nce_loss(a, p, n, tau, ratio), torch.tensor(ref), rtol=1e-5, atol=1e-5)
    logits = torch.cat([(a * p).sum(1, keepdim=True), torch.einsum("bd,bkd->bk", a, n)], 1) / tau
    torch.testing.assert_close(memory_infonce(a, p, n, tau), F.cross_entropy(logits, torch.zeros(2, dtype=torch.long), reduction="none"))


def _nuisance_views(n: int, g: torch.Generator):
    """Signal in the first 8 dims is shared; the last 8 are redrawn (large) in every view."""
    signal = torch.randn(n, 8, generator=g)
    view = lambda: torch.cat([signal + 0.1 * torch.randn(n, 8, generator=g), 3 * torch.randn(n, 8, generator=g)], 1)  # noqa: E731
    return view, signal


def _top1(query: torch.Tensor, keys: torch.Tensor) -> float:
    return (F.normalize(query, dim=1) @ F.normalize(keys, dim=1).T).argmax(1).eq(torch.arange(len(query))).float().mean().item()


def test_pirl_learns_invariance_to_the_transform():
    g = torch.Generator().manual_seed(0)
    view, _ = _nuisance_views(256, g)
    enc = torch.nn.Linear(16, 8)
    loss_fn = PIRLLoss(256, 8, num_negatives=64, temperature=0.1)
    index = torch.arange(256)
    with torch.no_grad():
        before = _top1(enc(view()), enc(view()))
    opt = torch.optim.Adam(enc.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn(enc(view()), enc(view()), index)
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = _top1(enc(view()), enc(view()))
    assert after > 0.9 and after > before + 0.3, (before, after)


@pytest.mark.parametrize("mode", ["cross", "both"])
def test_xid_learns_cross_modal_agreement(mode):
    g = torch.Generator().manual_seed(1)
    n = 256
    z = torch.randn(n, 6, generator=g)
    video = torch.cat([z @ torch.randn(6, 6, generator=g), 3 * torch.randn(n, 6, generator=g)], 1)
    audio = torch.cat([3 * torch.randn(n, 5, generator=g), z @ torch.randn(6, 6, generator=g)], 1)
    ev, ea = torch.nn.Linear(12, 8), torch.nn.Linear(11, 8)
    loss_fn = XIDLoss(n, 8, mode=mode, num_negatives=64, temperature=0.1, momentum=0.0)
    index = torch.arange(n)
    present = {"audio": torch.rand(n, generator=g) > 0.2}
    opt = torch.optim.Adam([*ev.parameters(), *ea.parameters()], lr=3e-2)
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn({"video": ev(video), "audio": ea(audio)}, index, present=present)
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = _top1(ev(video), ea(audio))
    assert acc > 0.5, (mode, acc)  # chance is 1/256


def test_xid_skips_rows_with_absent_modality():
    loss_fn = XIDLoss(10, 4, mode="cross", num_negatives=3).eval()
    feats = {"video": torch.randn(4, 4), "audio": torch.randn(4, 4)}
    index = torch.arange(4)
    present = {"audio": torch.tensor([True, False, True, True])}
    torch.manual_seed(0)
    loss_fn.generator.manual_seed(0)
    with_absent = loss_fn(feats, index, present=present)
    loss_fn.generator.manual_seed(0)
    keep = present["audio"]
    only_present = loss_fn({k: v[keep] for k, v in feats.items()}, index[keep])
    assert with_absent.item() == pytest.approx(only_present.item(), rel=1e-6)
    with pytest.raises(ValueError, match="mode"):
        XIDLoss(10, 4, mode="joint")


@pytest.mark.parametrize("kind", ["pirl", "xid"])
def test_negative_sampling_generator_travels_in_the_state_dict(kind, tmp_path):
    """A loss rebuilt from a state dict draws the same negatives as the one that kept running
    (issue 14: the generators used to be outside ``state_dict`` and restarted from the seed)."""
    def make():
        return PIRLLoss(50, 4, num_negatives=6) if kind == "pirl" else XIDLoss(50, 4, num_negatives=6)

    def draw(loss_fn):
        bank = loss_fn.bank if kind == "pirl" else loss_fn.banks["audio"]
        return bank.sample_negatives(torch.arange(5), 6, loss_fn.generator)

    running = make()
    for _ in range(3):
        draw(running)
    rebuilt = make()
    rebuilt.load_state_dict(running.state_dict())
    torch.testing.assert_close(draw(rebuilt), draw(running), rtol=0, atol=0)
    save_weights(running, tmp_path / "m.safetensors")     # and through a safetensors checkpoint
    again = load_weights(make(), tmp_path / "m.safetensors")
    torch.testing.assert_close(draw(again), draw(running), rtol=0, atol=0)
