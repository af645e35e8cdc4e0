"""CLIP/SigLIP distributed mode: 2 gloo ranks give the single-process loss and gradients."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mmcore.represent
from mmcore.represent.dist_check import main as single_process_run

SCRIPT = Path(mmcore.represent.__file__).with_name("dist_check.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.distributed
def test_two_ranks_match_one_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    single, multi = tmp_path / "single.json", tmp_path / "multi.json"
    single_process_run(str(single))          # the reference: this process, whole batch
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
         "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(SCRIPT), str(multi)],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = json.loads(single.read_text()), json.loads(multi.read_text())
    for name in ("clip", "siglip"):
        assert two[name]["loss"] == pytest.approx(one[name]["loss"], abs=1e-5), name
        for g1, g2 in zip(one[name]["param_grads"], two[name]["param_grads"]):
            torch.testing.assert_close(torch.tensor(g2), torch.tensor(g1), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(torch.tensor(two[name]["feature_grad"]), torch.tensor(one[name]["feature_grad"]),
                                   atol=1e-6, rtol=1e-4)
        assert any(abs(v) > 1e-4 for g in one[name]["param_grads"] for v in g)  # gradients are not trivially zero
