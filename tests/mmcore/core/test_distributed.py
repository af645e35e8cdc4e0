"""The same training script under torchrun --nproc_per_node=2 (gloo on CPU)."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name("toy_train.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.distributed
def test_torchrun_two_ranks_match_and_learn(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(SCRIPT),
           "--out", str(ddp), "--epochs", "4", "--batch-size", "16"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = load_file(str(ddp / "rank0.safetensors"))
    r1 = load_file(str(ddp / "rank1.safetensors"))
    for key in r0:
        assert (r0[key] == r1[key]).all(), f"ranks disagree on {key}"
    result = json.loads((ddp / "result.json").read_text())
    assert result["world_size"] == 2
    losses = result["train_losses"]
    assert losses[-1] < 0.6 * losses[0], losses
    # only rank 0 wrote the run's files
    assert (ddp / "metrics.csv").exists() and (ddp / "checkpoints" / "latest").exists()

    single = tmp_path / "single"
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(single), "--epochs", "4", "--batch-size", "32"],
                   env=env, check=True, capture_output=True, timeout=300)
    one = json.loads((single / "result.json").read_text())
    assert abs(one["metrics"]["val_accuracy"] - result["metrics"]["val_accuracy"]) < 0.05, (one, result)
    assert one["metrics"]["val_accuracy"] > 0.8
