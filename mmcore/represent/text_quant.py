"""Quantised CPU paths for :class:`.text_encoder.MiniLMEncoder`, and a SQLite embedding store.

| backend        | what runs                                                                   |
|----------------|-----------------------------------------------------------------------------|
| ``torch``      | the fp32 BERT in PyTorch (the reference)                                    |
| ``torch-int8`` | ``torch.ao.quantization.quantize_dynamic``: every ``nn.Linear`` int8 per channel |
| ``onnx-int8``  | the model exported to ONNX once (``torch.onnx.export``); ONNX Runtime's ``quantize_dynamic`` |
|                | makes every weight MatMul int8 (signed, per output channel, 7-bit range) except layer 0's |
|                | FFN output, which stays fp32; activations uint8, quantised per batch; run by ONNX Runtime |
|                | with its worker threads sleeping instead of spinning between ops           |

Why this ``onnx-int8`` recipe (all-MiniLM-L6-v2, 512 synthetic posts, batches of 64, 2 threads,
the fp32 torch encoder timed on the same batches in the same run, onnxruntime 1.32, an AVX2 CPU
without VNNI shared with other jobs):

| variant                                        | x fp32 torch | mean / min cosine |
|------------------------------------------------|--------------|-------------------|
| MatMul uint8 weights, per channel (the old one) | 2.38         | 0.9914 / 0.9728   |
| the same, threads not spinning                 | 2.80         | 0.9914 / 0.9728   |
| int8 weights, 7-bit, not spinning              | 3.35         | 0.9902 / 0.9699   |
| + layer 0's FFN output kept fp32 (this one)    | 3.65         | 0.9924 / 0.9741   |
| fp32 ONNX, not spinning                        | 2.13         | 1 / 1             |
| ``torch-int8``                                 | 1.50         | 0.9690 / 0.9082   |

Signed weights use MLAS's u8 x s8 kernel, cheaper than u8 x u8 on AVX2 (the whole encoder: 0.50
against 0.64 CPU seconds per 100 posts).  The 7-bit weight range keeps that kernel's 16-bit pair
sums from saturating (no VNNI here): with layer 0's FFN output in fp32 it took the cosine from
0.9919 / 0.9680 to 0.9924 / 0.9741.  Kept in fp32 one at a time, layer 0's FFN output lifted the
mean cosine most of the six FFN outputs (0.9904 -> 0.9929 on 384 posts; the other five
0.9906-0.9912), for ~6% of the MatMul work.  Spinning worker threads burn CPU that a busy box
lacks.  ONNX Runtime's BERT fusions (``onnxruntime.transformers.optimizer`` on an eager-attention
export: EmbedLayerNorm, Attention, SkipLayerNorm, BiasGelu; Attention quantised too) ran no faster
than the plain export with the session's own graph optimisations, so they are not used.  The
ratios depend on the load: the fp32 torch encoder, whose 2 OpenMP threads suffer most from a
busy box, ran 48 sentences/s in the run above and 192 in a quiet one.

The ONNX files are written once per machine under ``onnx_dir`` (default ``$MMCORE_CACHE`` or
``~/.cache/mmcore``) and reused; the recipe is in the file name.  ``mm bench social --scale``
measures accuracy and speed against fp32 again (mean cosine of the unit embeddings, sentences/s).

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
ONNX_RECIPE = "mm-s8c7-l0out32"  # in the cached file's name: a changed recipe writes a new file
KEEP_FP32 = ("layer.0/output/dense/MatMul",)  # the weight MatMuls left unquantised (name suffixes)


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
    out = onnx_dir / f"{name}-{ONNX_RECIPE}.onnx"
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
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        matmuls = [n.name for n in onnx.load(str(fp32), load_external_data=False).graph.node if n.op_type == "MatMul"]
        keep = [n for n in matmuls if n.endswith(KEEP_FP32)]
        if len(keep) != len(KEEP_FP32):  # the exporter renamed the nodes: fail rather than quantise them all
            raise RuntimeError(f"ONNX export: expected MatMuls ending in {KEEP_FP32}, found {keep}")
        # weight MatMuls only (embeddings stay fp32; MatMuls of two activations are left alone), signed
        # 7-bit per channel: see the module docstring for what each choice bought
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=keep)
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
        # idle workers sleep: spinning between ops cost 20-35% sentences/s on a 2-core box with other jobs
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
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
