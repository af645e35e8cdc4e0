"""Per-conversation state for incremental turns, kept in an LRU bounded by bytes.

A finished turn leaves, per conversation (per prompt), everything the next turn would otherwise
recompute from the whole history:

==================  ======================  ==============================================
field               shape                   meaning
==================  ======================  ==============================================
``ids``             ``L`` ints              prompt tokens whose keys/values are cached
``past``            per layer ``2 x [H, L, d]``  the language model's keys (after RoPE) and values
``mentions``        ``R`` ints              focus slot of each finished round (-1: none),
                                            the reasoner's mention memory
``objects``         ``[K, D]``              the image's object tokens before the reasoner
``object_mask``     ``[K]`` bool            real objects
``slot_words``      ``[K, 3, V]`` or None   per-slot colour/shape/size word distributions
``xy``              ``[K, 2]`` or None      object centres (relate)
==================  ======================  ==============================================

States are addressed by content, ``(image_key, prompt ids)``, not by a conversation id: a turn
starts from the longest cached prompt of the same image that its own prompt extends token for
token (:meth:`ConversationCache.longest_prefix`; cached prompts end at ``ASSISTANT:``, so only
those boundaries are looked up).  The bot therefore needs no id from its caller (the CLI, the
server, a wrapper such as the abstention guard), a conversation continued by another process or
after an eviction simply finds nothing and is rebuilt from its full prompt, and conversations that
share an opening (same image, same first questions) share its state.  Anything else (another image,
a history the prompt limit has cut from the front) finds no prefix: the cache changes speed, never
answers.  A state is never modified once cached (a turn extends a copy), so the parent of an
extended state stays valid for other conversations until the LRU drops it.  Bytes counted are the
tensors' storage (``past`` dominates: ``2 * layers * H * d * 4`` bytes per token in float32,
1 KiB for the shipped model).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import torch


@dataclass
class ConversationState:
    image_key: bytes
    objects: torch.Tensor
    object_mask: torch.Tensor
    slot_words: torch.Tensor | None
    xy: torch.Tensor | None
    ids: list[int] = field(default_factory=list)
    past: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    mentions: list[int] = field(default_factory=list)
    rounds: int = 0              # USER: tokens in ``ids`` (finished rounds plus the open one)

    @property
    def nbytes(self) -> int:
        tensors = [self.objects, self.object_mask, self.slot_words, self.xy, *(t for kv in self.past for t in kv)]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None) + 8 * (len(self.ids) + len(self.mentions))

    def child(self) -> ConversationState:
        """A copy to extend (tensors shared: they are never written in place)."""
        return ConversationState(self.image_key, self.objects, self.object_mask, self.slot_words, self.xy,
                                 list(self.ids), list(self.past), list(self.mentions), self.rounds)


class ConversationCache:
    """``(image_key, ids) -> ConversationState``, least recently used out first once ``max_bytes``
    is exceeded.  ``max_bytes = 0`` keeps nothing (every turn rebuilds from its history).  Thread-safe.
    """

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = int(max_bytes)
        self._states: OrderedDict[tuple[bytes, tuple[int, ...]], tuple[ConversationState, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.stats = {"hits": 0, "misses": 0, "evictions": 0}

    def longest_prefix(self, image_key: bytes, ids: list[int], boundary: int) -> ConversationState | None:
        """The cached state of this image whose prompt is the longest proper prefix of ``ids`` ending
        just after a ``boundary`` token (``ASSISTANT:``), or None."""
        ends = [i + 1 for i, t in enumerate(ids[:-1]) if t == boundary]
        with self._lock:
            for end in reversed(ends):
                key = (image_key, tuple(ids[:end]))
                item = self._states.get(key)
                if item is not None:
                    self._states.move_to_end(key)
                    self.stats["hits"] += 1
                    return item[0]
            self.stats["misses"] += 1
            return None

    def put(self, state: ConversationState) -> None:
        key, size = (state.image_key, tuple(state.ids)), state.nbytes
        with self._lock:
            old = self._states.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            if size > self.max_bytes:
                return
            self._states[key] = (state, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, freed) = self._states.popitem(last=False)
                self.bytes -= freed
                self.stats["evictions"] += 1

    def clear(self) -> None:
        with self._lock:
            self._states.clear()
            self.bytes = 0

    def __len__(self) -> int:
        return len(self._states)

    def info(self) -> dict:
        with self._lock:
            return {"states": len(self._states), "bytes": self.bytes, "max_bytes": self.max_bytes, **self.stats}
