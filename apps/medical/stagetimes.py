"""Wall and CPU seconds per named stage in this process: the cold-analyze breakdown of `mm bench medical`.

``with stage("registration"): ...`` adds to :data:`TIMES` (a few microseconds when nobody reads it).
:func:`process_age` is how long this process has existed (interpreter start included; Linux ``/proc``).
"""
from __future__ import annotations

import contextlib
import os
import time

TIMES: dict[str, list[float]] = {}      # stage -> [wall seconds, CPU seconds of this process]


@contextlib.contextmanager
def stage(name: str):
    w, c = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        rec = TIMES.setdefault(name, [0.0, 0.0])
        rec[0] += time.perf_counter() - w
        rec[1] += time.process_time() - c


def process_age() -> float | None:
    """Seconds since this process started (None where ``/proc`` is unavailable)."""
    try:
        with open(f"/proc/{os.getpid()}/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None
