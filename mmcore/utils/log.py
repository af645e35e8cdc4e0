"""One logging setup for `mm` and every app: progress goes through :mod:`logging`, not print.

Library code asks for ``logging.getLogger(__name__)`` and never configures handlers; the entry point
calls :func:`setup_logging` once with the ``--verbose/--quiet`` count from the command line.
Results a command exists to print (tables, answers, file paths) still go to stdout.
"""
from __future__ import annotations

import logging
import sys

_FORMAT = "%(asctime)s %(levelname).1s %(name)s: %(message)s"


def level_for(verbosity: int) -> int:
    """0 -> INFO, 1+ -> DEBUG, -1 -> WARNING, -2 or less -> ERROR."""
    if verbosity > 0:
        return logging.DEBUG
    return {0: logging.INFO, -1: logging.WARNING}.get(verbosity, logging.ERROR)


class _ProgressSafeHandler(logging.StreamHandler):
    """Writes through ``tqdm.write``, so a record printed while a progress bar is drawn lands above
    the bar instead of breaking it (plain stderr when tqdm is not installed).  It writes to whatever
    ``sys.stderr`` is at the time of the record, not the one at setup: a stream swapped in and closed
    later (a test's capture, a redirect) would otherwise turn every record into a logging error."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        try:
            from tqdm import tqdm
        except ImportError:
            return super().emit(record)
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


def setup_logging(verbosity: int = 0) -> None:
    """Send the suite's log records (``mmcore.*`` and ``apps.*``) to stderr at the chosen level."""
    level = level_for(verbosity)
    handler = _ProgressSafeHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
    for name in ("mmcore", "apps"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
