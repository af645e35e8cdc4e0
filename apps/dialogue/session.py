"""The bot: backends that answer a question about an image given the history, and a Session.

    backend = load_backend()                       # the shipped SceneVLM (data/dialogue/scenes)
    backend = load_backend("path/to/hf-vlm")       # any local AutoModelForImageTextToText directory
    chat = Session(backend, image=Image.open("scene.png"))
    chat.ask("is there a red circle ?")            # -> "yes"
    for piece in chat.stream("what size is it ?"): print(piece, end="")

Both backends stream text pieces through transformers' ``TextIteratorStreamer`` (generation runs
in a worker thread).  Questions are checked first: empty or over-long ones raise
:class:`BadInput`, which the CLI prints and the server turns into HTTP 400.
"""
from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from .prompt import MAX_QUESTION_CHARS, BadInput, check_question  # noqa: F401 - re-exported for callers

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO_ROOT / "data" / "dialogue" / "scenes"
SOC_MODEL = REPO_ROOT / "data" / "dialogue" / "sort_of_clevr"
DEFAULT_CACHE_BYTES = 256 * 2**20


class EmbeddedBackend:
    """The suite's own SceneVLM, loaded with ``AutoModelForImageTextToText`` from a directory.

    Turns go through the incremental engine (:mod:`.engine`: per-conversation KV cache of
    ``cache_bytes``, and with ``batching`` a :class:`~.batching.Batcher` that answers concurrent
    turns in one forward pass) when the model has a reasoner; ``cache_bytes=0`` and no batching
    (or an older model) generate from the full prompt with ``generate``, as before.  Both give the
    same answers (tests/apps/dialogue/test_kv_cache.py).
    """

    def __init__(self, path: str | Path = DEFAULT_MODEL, device: str = "cpu", max_new_tokens: int = 4,
                 cache_bytes: int = DEFAULT_CACHE_BYTES, batching=None) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, PreTrainedTokenizerFast

        from . import model as _registers_scene_vlm  # noqa: F401

        self.path = Path(path)
        if not (self.path / "config.json").exists():
            raise FileNotFoundError(f"no model at {self.path} (config.json missing); train one with `mm dialogue train`")
        self.device = torch.device(device)
        self.model = AutoModelForImageTextToText.from_pretrained(self.path, dtype=torch.float32).to(self.device).eval()
        self.tokenizer = PreTrainedTokenizerFast.from_pretrained(self.path)
        self.name = "mmcore-scene-vlm"
        self.needs_image = True
        self.max_new_tokens = max_new_tokens
        self.lock = threading.Lock()
        self.engine = self.batcher = None
        self.configure(cache_bytes, batching)

    def configure(self, cache_bytes: int = DEFAULT_CACHE_BYTES, batching=None) -> None:
        """Switch the KV cache (``cache_bytes``, 0 = off) and dynamic batching (a
        :class:`~.batching.BatchPolicy`, None = off); cached states are dropped."""
        from .batching import Batcher
        from .engine import DialogueEngine

        if self.batcher is not None:
            self.batcher.close()
        self.engine = self.batcher = None
        if DialogueEngine.supports(self.model) and (cache_bytes or batching is not None):
            self.engine = DialogueEngine(self.model, self.tokenizer, self._objects, self.max_new_tokens,
                                         cache_bytes, lock=self.lock)
            if batching is not None:
                self.batcher = Batcher(self.engine.run, batching)

    def _objects(self, image: Image.Image) -> dict:
        """``{"object_pixels" [K,3,P,P], "object_geometry" [K,9], "object_mask" [K]}`` of ``image``."""
        from .objects import extract_objects

        return extract_objects(image, slots=self.model.config.num_image_tokens)

    def _inputs(self, image: Image.Image, history: list[tuple[str, str]], question: str) -> dict:
        import torch

        from .prompt import prompt_ids

        ids = torch.tensor([prompt_ids(self.tokenizer, self.model.config, self.max_new_tokens, history, question)])
        objs = {k_: v[None].to(self.device) for k_, v in self._objects(image).items()}
        return {"input_ids": ids.to(self.device), "attention_mask": ids.new_ones(ids.shape).to(self.device), **objs}

    def stream(self, image: Image.Image | None, history: list[tuple[str, str]], question: str) -> Iterator[str]:
        if image is None:
            raise BadInput("this model answers questions about an image: send one first")
        if self.engine is not None:
            yield from self._engine_stream(image, history, question)
        else:
            yield from self.generate_stream(image, history, question)

    def generate_stream(self, image: Image.Image, history: list[tuple[str, str]], question: str) -> Iterator[str]:
        """The whole conversation through ``generate`` (no cache, no batching): the reference path."""
        inputs = self._inputs(image, history, question)
        yield from _generate_streaming(self.model, self.tokenizer, inputs, self.max_new_tokens, self.lock,
                                       prefix_allowed_tokens_fn=self._answers_then_eos(inputs["input_ids"].shape[1]))

    def _engine_stream(self, image: Image.Image, history: list[tuple[str, str]], question: str) -> Iterator[str]:
        from .engine import Turn

        turn = Turn(image, list(history), question, pieces=queue.Queue())
        if self.batcher is not None:
            self.batcher.submit(turn)
        else:
            self.engine.run([turn])
        while (piece := turn.pieces.get(timeout=300)) is not None:
            yield piece
        if turn.error is not None:
            raise turn.error

    def _answers_then_eos(self, prompt_len: int):
        """The embedded model answers in one word of its answer vocabulary, then ``</s>`` (never a
        special token such as ``<image>``, which would also break the next prompt)."""
        from .answers import answer_ids

        answers, eos = answer_ids().tolist(), [self.tokenizer.eos_token_id]
        return lambda _batch, ids: answers if ids.shape[-1] <= prompt_len else eos


class HFBackend:
    """Any local Hugging Face vision-language model: ``AutoProcessor`` + ``AutoModelForImageTextToText``."""

    def __init__(self, path: str | Path, device: str = "cpu", max_new_tokens: int = 32) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.path = Path(path)
        self.device = torch.device(device)
        self.processor = AutoProcessor.from_pretrained(self.path)
        self.model = AutoModelForImageTextToText.from_pretrained(self.path).to(self.device).eval()
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.name = self.path.name
        self.needs_image = False
        self.max_new_tokens = max_new_tokens
        self.lock = threading.Lock()

    def stream(self, image: Image.Image | None, history: list[tuple[str, str]], question: str) -> Iterator[str]:
        messages = []
        for i, (q, a) in enumerate(history):
            content = ([{"type": "image"}] if i == 0 and image is not None else []) + [{"type": "text", "text": q}]
            messages += [{"role": "user", "content": content}, {"role": "assistant", "content": [{"type": "text", "text": a}]}]
        first = not history and image is not None
        messages.append({"role": "user", "content": ([{"type": "image"}] if first else []) + [{"type": "text", "text": question}]})
        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        kwargs = {"images": [image.convert("RGB")]} if image is not None else {}
        inputs = self.processor(text=prompt, return_tensors="pt", **kwargs).to(self.device)
        yield from _generate_streaming(self.model, self.tokenizer, dict(inputs), self.max_new_tokens, self.lock)


def _generate_streaming(model, tokenizer, inputs: dict, max_new_tokens: int, lock: threading.Lock,
                        **generate_kwargs) -> Iterator[str]:
    import torch
    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=120)
    errors: list[BaseException] = []
    threads = torch.get_num_threads()

    def work() -> None:
        try:
            with lock, torch.inference_mode():
                torch.set_num_threads(threads)   # a new thread runs a default-sized OpenMP team otherwise
                model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, streamer=streamer,
                               pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                               **generate_kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
            errors.append(exc)
            streamer.end()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    for piece in streamer:
        if piece:
            yield piece
    thread.join()
    if errors:
        raise errors[0]


def load_backend(path: str | Path | None = None, device: str = "cpu"):
    """The embedded SceneVLM for ``None`` or a SceneVLM directory; :class:`HFBackend` otherwise."""
    if path is None:
        return EmbeddedBackend(DEFAULT_MODEL, device)
    path = Path(path)
    config = path / "config.json"
    if not config.exists():
        raise FileNotFoundError(f"--model {path}: no config.json there (expected a Hugging Face model directory)")
    if json.loads(config.read_text()).get("model_type") == "mmcore_scene_vlm":
        return EmbeddedBackend(path, device)
    return HFBackend(path, device)


class Session:
    """A conversation about one image: ``ask`` returns the answer, ``stream`` yields it in pieces."""

    def __init__(self, backend, image: Image.Image | None = None) -> None:
        self.backend = backend
        self.image = image
        self.history: list[tuple[str, str]] = []

    def set_image(self, image: Image.Image) -> None:
        """A new image starts a new conversation."""
        self.image = image
        self.history = []

    def stream(self, question: str) -> Iterator[str]:
        question = check_question(question)
        pieces = []
        for piece in self.backend.stream(self.image, self.history, question):
            pieces.append(piece)
            yield piece
        self.history.append((question, "".join(pieces).strip()))

    def ask(self, question: str) -> str:
        return "".join(self.stream(question)).strip()
