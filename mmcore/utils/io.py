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
    if path.is_dir():  # a folder of the same name (e.g. a partitioned table) is replaced too
        publish_dir(tmp, path)
        return
    os.replace(tmp, path)
    fsync_dir(path.parent)


def publish_dir(tmp: str | Path, path: str | Path) -> None:
    """Move a finished temporary folder (or file) ``tmp`` onto ``path``, which may be a file or a
    folder already.  A folder cannot be renamed over another in one step, so the old one is first
    renamed aside to ``.<name>.old-<pid>`` and deleted after the new one is in place: a reader sees
    the old data, the new data, or (between the two renames) no ``path``, never a mixture."""
    import shutil

    tmp, path = Path(tmp), Path(path)
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    elif old.exists():
        old.unlink()


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
