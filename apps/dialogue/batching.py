"""Dynamic batching: turns that arrive while the model is busy, or within a few milliseconds of
each other, are answered together in one forward pass.

    policy = BatchPolicy(max_batch=16, max_wait_ms=2.0)
    batcher = Batcher(engine.run, policy)        # one worker thread
    batcher.submit(turn)                         # from any thread; the turn's ``pieces`` queue answers

The worker takes every queued turn (up to ``max_batch``) as soon as it is free; this alone batches
under load (continuous batching: what arrives during a forward pass goes into the next).  When
turns have recently been arriving together (a running mean of the batch size above 1.5), the worker
also waits up to ``max_wait_ms`` for more before starting a batch that is not full; a lone client
never waits.  ``max_queue`` bounds the turns waiting (``submit`` raises :class:`Overloaded` beyond
it, the server answers 503), so a burst cannot grow memory without bound.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchPolicy:
    max_batch: int = 16          # turns per forward pass
    max_wait_ms: float = 2.0     # longest wait for company before a batch that is not full starts
    max_queue: int = 1024        # turns waiting; more are refused

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_wait_ms < 0 or self.max_queue < 1:
            raise ValueError(f"bad batch policy {self}: max_batch >= 1, max_wait_ms >= 0, max_queue >= 1")


class Overloaded(RuntimeError):
    """More turns are waiting than the policy's ``max_queue``."""


class Batcher:
    """Feeds ``run(list_of_items)`` from a queue, in batches, on one daemon thread.

    ``run`` must deliver each item's result itself (the engine fills each turn and closes its
    ``pieces`` queue, errors included); an exception escaping ``run`` is reported through
    ``on_error(items, exc)``.
    """

    def __init__(self, run: Callable[[list], object], policy: BatchPolicy | None = None,
                 on_error: Callable[[list, BaseException], None] | None = None) -> None:
        self.run, self.policy, self.on_error = run, policy or BatchPolicy(), on_error
        self._queue: deque = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._mean_batch = 1.0
        self.stats = {"batches": 0, "items": 0, "largest": 0}
        self._thread = threading.Thread(target=self._loop, name="dialogue-batcher", daemon=True)
        self._thread.start()

    def submit(self, item) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            if len(self._queue) >= self.policy.max_queue:
                raise Overloaded(f"{len(self._queue)} turns are already waiting; try again shortly")
            self._queue.append(item)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=10)

    def _next_batch(self) -> list | None:
        policy = self.policy
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed and not self._queue:
                return None
            if len(self._queue) < policy.max_batch and self._mean_batch > 1.5 and policy.max_wait_ms > 0:
                deadline = time.perf_counter() + policy.max_wait_ms / 1000
                while len(self._queue) < policy.max_batch and not self._closed:
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            n = min(policy.max_batch, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._mean_batch = 0.8 * self._mean_batch + 0.2 * len(batch)
            self.stats["batches"] += 1
            self.stats["items"] += len(batch)
            self.stats["largest"] = max(self.stats["largest"], len(batch))
            try:
                self.run(batch)
            except BaseException as exc:  # noqa: BLE001 - the worker must survive any batch
                if self.on_error is not None:
                    self.on_error(batch, exc)
