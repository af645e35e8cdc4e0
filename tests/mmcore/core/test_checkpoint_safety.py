"""Checkpoints never unpickle arbitrary objects; weights round-trip exactly; writes are atomic."""
import os
import pickle

import pytest
import torch
from torch import nn

from mmcore.train import (
    CheckpointManager,
    UnsafeCheckpointError,
    atomic_write_text,
    load_weights,
    safe_torch_load,
    save_weights,
)

MARKER = "mmcore-pwned"


class Exploit:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_malicious_pickle_is_refused(tmp_path):
    evil = tmp_path / "state.pt"
    proof = tmp_path / MARKER
    with open(evil, "wb") as fh:
        pickle.dump({"optimizer": Exploit(proof)}, fh)
    with pytest.raises(UnsafeCheckpointError, match="refusing to load .*state.pt"):
        safe_torch_load(evil)
    assert not proof.exists(), "the pickle payload ran"


def test_malicious_checkpoint_in_run_dir_is_refused(tmp_path):
    model = nn.Linear(3, 2)
    manager = CheckpointManager(tmp_path)
    path = manager.save(5, model, {"optimizer": {}}, {"step": 5})
    proof = tmp_path / MARKER
    with open(path / "state.pt", "wb") as fh:
        torch.save({"optimizer": Exploit(proof)}, fh)  # torch.save pickles it as an object
    with pytest.raises(UnsafeCheckpointError):
        manager.load(manager.latest(), nn.Linear(3, 2))
    assert not proof.exists()


def test_pickled_weights_file_is_not_accepted_as_safetensors(tmp_path):
    bad = tmp_path / "model.safetensors"
    with open(bad, "wb") as fh:
        pickle.dump({"weight": Exploit(tmp_path / MARKER)}, fh)
    with pytest.raises(UnsafeCheckpointError, match="not a valid safetensors"):
        load_weights(nn.Linear(3, 2), bad)
    assert not (tmp_path / MARKER).exists()


def test_weights_round_trip_including_tied_parameters(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.out = nn.Linear(4, 10, bias=False)
            self.out.weight = self.embed.weight

    a = Tied()
    save_weights(a, tmp_path / "m.safetensors")
    b = load_weights(Tied(), tmp_path / "m.safetensors")
    x = torch.arange(10)
    assert torch.equal(a.out(a.embed(x)), b.out(b.embed(x)))
    assert b.out.weight.data_ptr() == b.embed.weight.data_ptr()


def test_mismatched_weights_name_the_keys(tmp_path):
    save_weights(nn.Linear(3, 2), tmp_path / "m.safetensors")
    with pytest.raises(RuntimeError, match="do not match the model"):
        load_weights(nn.Sequential(nn.Linear(3, 2)), tmp_path / "m.safetensors")


def test_checkpoint_manager_keeps_latest_and_prunes(tmp_path):
    manager = CheckpointManager(tmp_path, keep=2)
    model = nn.Linear(2, 2)
    for step in (1, 2, 3):
        manager.save(step, model, {"optimizer": {"x": torch.tensor(step)}}, {"step": step})
    kept = sorted(p.name for p in manager.dir.glob("step-*"))
    assert kept == ["step-00000002", "step-00000003"]
    state, trainer_state = manager.load(manager.latest(), nn.Linear(2, 2))
    assert trainer_state["step"] == 3 and int(state["optimizer"]["x"]) == 3


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "report.txt"
    atomic_write_text(target, "old")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.txt"]


def test_atomic_files_get_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        save_weights(nn.Linear(2, 2), tmp_path / "w.safetensors")
    finally:
        os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o644
