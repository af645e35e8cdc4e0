"""Issue 14, defect 3: a run that stops mid-epoch and resumes ends with the same bits as one that
never stopped, also with DataLoader workers + random augmentation, a KL annealer, a modality
dropout curriculum and memory-bank losses (in the model and outside it).

The stop is an exception raised by a callback one step after a checkpoint (what a SIGKILL leaves
behind, without the cost of a subprocess); everything is rebuilt from scratch for the resume.
"""
import pytest
import torch
from torch import nn

from mmcore.data import MultimodalCollator, ToyMultimodalDataset
from mmcore.generative.annealing import KLAnnealing
from mmcore.missing.dropout import DropoutCurriculum, ModalityDropout
from mmcore.represent.pirl import PIRLLoss
from mmcore.represent.xid import XIDLoss
from mmcore.train import StepOutput, TrainConfig, Trainer

DIMS = {"image": 6, "text": 4}
N = 96


class Augmented(torch.utils.data.Dataset):
    """Toy items + Gaussian jitter drawn from the global RNG (in a worker when num_workers > 0)."""

    def __init__(self) -> None:
        self.inner = ToyMultimodalDataset(N, DIMS, missing_rate=0.3, seed=0)

    def __len__(self) -> int:
        return N

    def __getitem__(self, i):
        item = dict(self.inner[i])
        for m in DIMS:
            if item[m] is not None:
                item[m] = item[m] + 0.5 * torch.randn(DIMS[m])
        item["index"] = i
        return item


class Net(nn.Module):
    def __init__(self, bank: bool = False) -> None:
        super().__init__()
        self.enc = nn.ModuleDict({m: nn.Sequential(nn.Linear(d, 8), nn.Dropout(0.1)) for m, d in DIMS.items()})
        self.head = nn.Linear(8, 3)
        self.xid = XIDLoss(N, 8, modalities=("image", "text"), num_negatives=8, temperature=0.2) if bank else None

    def forward(self, batch):
        feats = {m: enc(batch[m]) for m, enc in self.enc.items()}
        total, count = 0.0, 0.0
        for m, f in feats.items():
            w = batch.mask(m).unsqueeze(-1).float()
            total, count = total + f * w, count + w
        logits = self.head(total / count.clamp(min=1))
        loss = nn.functional.cross_entropy(logits, batch.fields["label"])
        if self.xid is not None:
            loss = loss + self.xid(feats, batch.fields["index"], present=batch.present)
        return loss


class Stop(Exception):
    pass


class StopAt:
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer) -> None:
        if trainer.step == self.step:
            raise Stop


def run(out, setup: str, stop_at: int | None = None, resume: bool = False) -> dict:
    torch.manual_seed(0)
    model = Net(bank=setup == "memory_bank_in_model")
    callbacks, stateful, beta = [], {}, [lambda: 1.0]
    workers = 1 if setup == "workers_augmentation" else 0
    if setup == "kl_annealing":
        annealer = KLAnnealing("linear", warmup_steps=12)
        callbacks.append(annealer)
        beta[0] = lambda: annealer.beta
    dropout = ModalityDropout(0.5) if setup == "dropout_curriculum" else None
    if dropout is not None:
        callbacks.append(DropoutCurriculum(dropout, warmup_steps=12))
    pirl = PIRLLoss(N, 8, num_negatives=8, temperature=0.2) if setup == "memory_bank_outside" else None
    if pirl is not None:
        stateful["pirl"] = pirl

    def step(m, batch):
        if dropout is not None:
            batch = dropout(batch)
        loss = m(batch)
        if pirl is not None:
            inner = m.module if hasattr(m, "module") else m
            f = inner.enc["image"][0](batch["image"])
            loss = loss + pirl(f, f + 0.1, batch.fields["index"])
        # the annealed weight multiplies a term with a gradient: a wrong β changes the weights
        reg = sum(p.pow(2).sum() for p in m.parameters())
        return StepOutput(loss + 1e-2 * beta[0]() * reg)

    if stop_at is not None:
        callbacks.append(StopAt(stop_at))
    cfg = TrainConfig(out_dir=str(out), epochs=2, batch_size=16, lr=1e-2, device="cpu", progress=False, seed=3,
                      checkpoint_every=2, num_workers=workers, schedule="constant")
    trainer = Trainer(model, cfg, Augmented(), collate_fn=MultimodalCollator(DIMS), step_fn=step,
                      callbacks=callbacks, **({"stateful": stateful} if stateful else {}))
    if stop_at is not None:
        with pytest.raises(Stop):
            trainer.fit()
        return {}
    trainer.fit(resume=resume)
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.endswith("_extra_state")}
    if pirl is not None:
        state.update({f"pirl.{k}": v.clone() for k, v in pirl.state_dict().items() if not k.endswith("_extra_state")})
    return state


@pytest.mark.parametrize("setup", ["workers_augmentation", "kl_annealing", "dropout_curriculum",
                                   "memory_bank_in_model", "memory_bank_outside"])
def test_stop_mid_epoch_and_resume_is_bitwise(tmp_path, setup):
    torch.set_num_threads(1)
    reference = run(tmp_path / "ref", setup)
    run(tmp_path / "cut", setup, stop_at=9)      # 6 steps an epoch: last checkpoint at step 8, epoch 2
    resumed = run(tmp_path / "cut", setup, resume=True)
    assert reference.keys() == resumed.keys()
    diff = {k: float((reference[k].float() - resumed[k].float()).abs().max()) for k in reference}
    assert all(v == 0.0 for v in diff.values()), {k: v for k, v in diff.items() if v}
