"""Issue 14, defect 1: DDP (2 gloo ranks, forked from the test) with a token encoder + transformer
fusion trains; a model with a parameter its loss never uses is named and handled (auto), or
refused with its name (``find_unused_parameters=False``) instead of DDP's "Expected to have
finished reduction in the prior iteration"."""
import json
import multiprocessing
import os
import socket
import traceback

import pytest
import torch
from torch import nn

from mmcore.data import MultimodalCollator, ToyMultimodalDataset
from mmcore.models import EncoderConfig, FusionConfig, HeadConfig, ModelConfig, MultimodalModel
from mmcore.train import TrainConfig, Trainer

DIMS = {"image": 6, "text": 4}


class Branchy(nn.Module):
    """A model with a conditional branch that this data never takes."""

    def __init__(self) -> None:
        super().__init__()
        self.body = MultimodalModel.from_config(token_model())
        self.rare = nn.Linear(3, 3)

    def forward(self, batch):
        logits = self.body(batch)
        return self.rare(logits) if batch.batch_size > 10_000 else logits


def token_model():
    return ModelConfig(modalities={m: EncoderConfig(d, 8, "tokens", {"num_tokens": 2}) for m, d in DIMS.items()},
                       fusion=FusionConfig("transformer", 8, {"heads": 2}), head=HeadConfig(num_classes=3, hidden=8))


def worker(rank: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    data = ToyMultimodalDataset(64, DIMS, missing_rate=0.3, seed=0)
    results = {}
    cases = [("tokens_transformer", lambda: MultimodalModel.from_config(token_model()), {}),
             ("branch_auto", Branchy, {}),
             ("branch_refused", Branchy, {"find_unused_parameters": False})]
    import logging

    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("mmcore.train").addHandler(handler)
    logging.getLogger("mmcore.train").setLevel(logging.WARNING)
    for name, make, extra in cases:
        messages.clear()
        torch.manual_seed(0)
        try:
            cfg = TrainConfig(out_dir=os.path.join(out, name), epochs=1, batch_size=8, device="cpu", progress=False,
                              **extra)
            trainer = Trainer(make(), cfg, data, collate_fn=MultimodalCollator(DIMS))
            result = trainer.fit()
            results[name] = {"step": result.step, "warnings": list(messages),
                             "find_unused": trainer.ddp_model.find_unused_parameters}
        except Exception as exc:  # the test reads what each rank saw
            results[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-1500:]}
    with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
        json.dump(results, fh)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@pytest.mark.distributed
def test_ddp_token_encoder_and_unused_parameters(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=worker, args=(r, port, str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(240)
        assert p.exitcode == 0, f"rank process exited with {p.exitcode}"
    for rank in range(2):
        res = json.loads((tmp_path / f"rank{rank}.json").read_text())
        tokens = res["tokens_transformer"]
        assert tokens.get("step") == 4, tokens
        assert tokens["find_unused"] is False and not tokens["warnings"]
        auto = res["branch_auto"]
        assert auto.get("step") == 4 and auto["find_unused"] is True, auto
        if rank == 0:
            assert any("rare.weight" in m and "rare.bias" in m for m in auto["warnings"]), auto
        refused = res["branch_refused"]
        assert refused.get("error", "").startswith("ValueError") and "rare.weight" in refused["error"], refused
