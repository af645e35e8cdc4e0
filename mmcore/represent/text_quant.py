"""Quantised CPU paths for :class:`.text_encoder.MiniLMEncoder`, and a SQLite embedding store.

| backend      | what runs                                                                     |
|--------------|-------------------------------------------------------------------------------|
| ``torch``    | the fp32 BERT in PyTorch (the reference)                                      |
| ``torch-int8`` | ``torch.ao.quantization.quantize_dynamic``: every ``nn.Linear`` int8 per channel |
| ``onnx-int8``  | the model exported to ONNX once (``torch.onnx.export``), MatMul weights quantised to 8 bits (uint8, per channel; activations dynamically) by ONNX Runtime's ``quantize_dynamic``, run by ONNX Runtime |

The ONNX files are written once per machine under ``onnx_dir`` (default
``$MMCORE_CACHE`` or ``~/.cache/mmcore``) and reused.  Accuracy and speed against fp32 are measured
by ``mm bench social --scale`` (mean cosine of the unit embeddings, sentences/s on 2 threads).

:class:`EmbeddingStore` keeps embeddings in SQLite keyed by ``(model, text hash)``: it survives
restarts, is shared by processes (WAL journal, one transaction per write), and holds the
embeddings of every backend apart, since an int8 embedding is not the fp32 one.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import torch

BACKENDS = ("torch", "torch-int8", "onnx-int8")
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def default_onnx_dir() -> Path:
    return Path(os.environ.get("MMCORE_CACHE", Path.home() / ".cache" / "mmcore")) / "onnx"


def torch_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantisation of every Linear layer (weights per channel, activations per batch)."""
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao deprecation notices
        return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


class _Hidden(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state


def onnx_int8_file(model: torch.nn.Module, tokenizer, model_dir: Path, onnx_dir: Path | None = None) -> Path:
    """The int8 ONNX file of ``model`` (exported and quantised on first use, then reused)."""
    import warnings

    onnx_dir = Path(onnx_dir) if onnx_dir is not None else default_onnx_dir()
    name = Path(model_dir).resolve().parent.name + "-" + Path(model_dir).name
    out = onnx_dir / f"{name}-matmul-u8.onnx"  # the recipe is in the name: a changed recipe re-exports
    if out.exists():
        return out
    onnx_dir.mkdir(parents=True, exist_ok=True)
    fp32, tmp = onnx_dir / f".{name}-{os.getpid()}.onnx", onnx_dir / f".{name}-{os.getpid()}-int8.onnx"
    batch = tokenizer(["a sentence", "another longer sentence"], padding=True, return_tensors="pt")
    axes = {k: {0: "batch", 1: "tokens"} for k in (*ONNX_INPUTS, "hidden")}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Hidden(model).eval(), tuple(batch[k] for k in ONNX_INPUTS), str(fp32),
                              input_names=list(ONNX_INPUTS), output_names=["hidden"], dynamic_axes=axes,
                              opset_version=17, dynamo=False)
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # MatMul weights only (embeddings stay fp32), uint8 per channel: on 256 distinct posts this kept
        # a mean cosine of 0.991 to fp32 where int8 weights on every op gave 0.989, and ran faster
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QUInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])
        tmp.replace(out)  # atomic: a concurrent process sees the whole file or none
    finally:
        fp32.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return out


class OnnxHidden:
    """Callable like the torch model's ``last_hidden_state`` path: batch dict -> [B, T, 384]."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, batch) -> torch.Tensor:
        feed = {k: batch[k].cpu().numpy().astype(np.int64) for k in ONNX_INPUTS}
        return torch.from_numpy(self.session.run(None, feed)[0])


class EmbeddingStore:
    """``(model, sha256 of text) -> float32 vector`` in one SQLite file, shared by processes."""

    def __init__(self, path: str | Path, model: str, dim: int) -> None:
        self.path, self.model, self.dim = Path(path), model, dim
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS emb (model TEXT NOT NULL, hash TEXT NOT NULL, vec BLOB NOT NULL, "
                       "PRIMARY KEY (model, hash)) WITHOUT ROWID")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def get(self, hashes: list[str]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        with self._connect() as db:
            for s in range(0, len(hashes), 500):
                part = hashes[s:s + 500]
                rows = db.execute(f"SELECT hash, vec FROM emb WHERE model = ? AND hash IN ({','.join('?' * len(part))})",
                                  [self.model, *part]).fetchall()
                out.update({h: torch.from_numpy(np.frombuffer(v, np.float32).copy()) for h, v in rows})
        return out

    def put(self, items: dict[str, torch.Tensor]) -> None:
        if not items:
            return
        with self._connect() as db:
            db.executemany("INSERT OR IGNORE INTO emb VALUES (?, ?, ?)",
                           [(self.model, h, v.numpy().astype(np.float32).tobytes()) for h, v in items.items()])

    def __len__(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM emb WHERE model = ?", [self.model]).fetchone()[0]
