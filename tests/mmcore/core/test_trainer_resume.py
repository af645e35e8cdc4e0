"""Kill a training run with SIGKILL mid-epoch, resume it, and get the same bits."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name("toy_train.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run(out, *extra, timeout=240):
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *extra], check=True, env=ENV, timeout=timeout,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def latest_step(out: Path):
    pointer = out / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    state = json.loads((out / "checkpoints" / pointer.read_text().strip() / "trainer.json").read_text())
    return state


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bitwise_identical(tmp_path):
    common = ["--epochs", "3", "--checkpoint-every", "4"]
    reference = tmp_path / "reference"
    run(reference, *common)

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--out", str(killed), *common, "--delay", "0.05"],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # 24 batches per epoch; wait for a mid-epoch checkpoint in the second epoch, then kill
    deadline = time.time() + 180
    state = None
    while time.time() < deadline:
        state = latest_step(killed)
        if state and state["epoch"] == 1 and state["batch_in_epoch"] > 0:
            time.sleep(0.12)  # land the kill between checkpoints, mid-step
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert state and state["epoch"] == 1 and 0 < state["batch_in_epoch"] < 24, state
    assert not (killed / "result.json").exists(), "the run finished before it could be killed"

    run(killed, *common, "--resume")
    a = load_file(str(reference / "rank0.safetensors"))
    b = load_file(str(killed / "rank0.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] == b[key]).all(), f"{key} differs after resume"
    ref = json.loads((reference / "result.json").read_text())
    res = json.loads((killed / "result.json").read_text())
    assert ref["step"] == res["step"] == 72
    assert ref["metrics"] == res["metrics"]
    assert (killed / "metrics.csv").exists() and (killed / "curves.png").stat().st_size > 1000


def test_resume_of_finished_run_does_nothing(tmp_path):
    out = tmp_path / "run"
    run(out, "--epochs", "1")
    first = load_file(str(out / "rank0.safetensors"))
    run(out, "--epochs", "1", "--resume")
    again = load_file(str(out / "rank0.safetensors"))
    assert all((first[k] == again[k]).all() for k in first)
