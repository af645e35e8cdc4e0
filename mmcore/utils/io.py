"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every writer in the suite goes through these: bytes, text and JSON directly, and any library that
insists on writing to a path itself (pandas, nibabel, networkx, highdicom) through
:func:`atomic_path`, which hands it a temporary path in the same directory and renames it into
place only when the write returned without an error.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def fsync_dir(path: str | Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def umask_mode(path: str | Path, directory: bool = False) -> None:
    """mkstemp/mkdtemp create private files; give them the mode a plain open() would."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if directory else 0o666) & ~mask)


def publish(tmp: str | Path, path: str | Path, *, private: bool = False) -> None:
    """Move a finished temporary file ``tmp`` onto ``path`` durably: fsync it, give it the mode a
    plain open() would (unless ``private``), rename it in one step and fsync the directory.

    For writers that must name their own temporary file (a stream written over many calls, a
    ``.part`` file that readers skip by its suffix); everything else uses :func:`atomic_path`."""
    tmp, path = Path(tmp), Path(path)
    with contextlib.suppress(OSError):
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
    if not private:
        umask_mode(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path`` atomically.

    The temporary name keeps ``path``'s suffixes, so writers that pick a format from the extension
    (``x.nii.gz``, ``x.parquet``) behave as they would on the final name. On an exception the
    temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=f"-{path.name}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same directory and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
