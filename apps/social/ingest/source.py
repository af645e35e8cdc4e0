"""Opening input files: compression found by magic bytes, truncation and corruption detected,
bytes decoded as UTF-8 with every undecodable line counted.

| magic bytes         | codec | module   |
|---------------------|-------|----------|
| ``1f 8b``           | gzip  | gzip     |
| ``42 5a 68`` (BZh)  | bz2   | bz2      |
| ``fd 37 7a 58 5a``  | xz    | lzma     |
| ``28 b5 2f fd``     | zstd  | zstandard (multi-frame, checked for a complete last frame) |

The file name's suffix is never trusted: a gzip file named ``.zst`` is read as gzip; a file named
``.zst``/``.gz``/``.bz2``/``.xz`` whose bytes are none of these is an :class:`InputError`.  A
stream that ends inside a compressed frame raises :class:`TruncatedInput` (Python's gzip, bz2 and
lzma readers raise ``EOFError`` there; zstandard's stream reader stops silently, so zstd is
decoded frame by frame with ``decompressobj`` and its ``eof`` flag checked at the end).
"""
from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
COMPRESSED_SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd", ".zstd": "zstd"}


class InputError(Exception):
    """A whole input file cannot be used (missing, empty, corrupt): one line for the user."""


class TruncatedInput(InputError):
    """The compressed stream ended before its end marker: what was read before is kept."""


def sniff(path: Path) -> str | None:
    """The compression codec named by the file's first bytes, or None for plain bytes."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    for magic, codec in MAGIC.items():
        if head.startswith(magic):
            return codec
    return None


def strip_compression_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in COMPRESSED_SUFFIXES:
        if lower.endswith(suffix):
            return lower[: -len(suffix)]
    return lower


class _ZstdRaw(io.RawIOBase):
    """Raw reader over a (possibly multi-frame) zstd file that raises on a truncated last frame."""

    def __init__(self, path: Path, chunk: int = 1 << 20) -> None:
        import zstandard

        self._zstd = zstandard
        self._fh = open(path, "rb")
        self._chunk = chunk
        self._dctx = zstandard.ZstdDecompressor(max_window_size=2**31)
        self._obj = self._dctx.decompressobj()
        self._pending = b""
        self._done = False
        self._in_frame = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        while not self._pending and not self._done:
            data = self._fh.read(self._chunk)
            if not data:
                if self._in_frame and not self._obj.eof:
                    raise TruncatedInput("zstd stream ends inside a frame (file truncated)")
                self._done = True
                return
            while data:
                self._in_frame = True
                try:
                    self._pending += self._obj.decompress(data)
                except self._zstd.ZstdError as exc:
                    raise InputError(f"corrupt zstd data: {exc}") from None
                if self._obj.eof:  # the next frame starts in unused_data
                    data = self._obj.unused_data
                    self._obj = self._dctx.decompressobj()
                    self._in_frame = False
                else:
                    data = b""

    def readinto(self, buffer) -> int:
        self._fill()
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


class _Checked(io.RawIOBase):
    """Turns the stdlib decompressors' EOFError/OSError into TruncatedInput/InputError."""

    def __init__(self, inner, codec: str) -> None:
        self._inner, self._codec = inner, codec

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            return self._inner.readinto(buffer)
        except EOFError:
            raise TruncatedInput(f"{self._codec} stream ends before its end marker (file truncated)") from None
        except Exception as exc:  # noqa: BLE001 - gzip.BadGzipFile, lzma.LZMAError, OSError: all corrupt data
            raise InputError(f"corrupt {self._codec} data: {exc}") from None

    def close(self) -> None:
        self._inner.close()
        super().close()


def open_binary(path: Path) -> io.BufferedReader:
    """A binary stream of the file's decompressed bytes (see the module table)."""
    codec = sniff(path)
    expected = COMPRESSED_SUFFIXES.get(path.suffix.lower())
    if codec is None and expected is not None:
        raise InputError(f"named {path.suffix} but its bytes are not {expected} (nor gzip/bz2/xz/zstd)")
    if codec is None:
        return open(path, "rb")
    if codec == "zstd":
        raw = _ZstdRaw(path)
    elif codec == "gzip":
        import gzip

        raw = _Checked(gzip.open(path, "rb"), codec)
    elif codec == "bz2":
        import bz2

        raw = _Checked(bz2.open(path, "rb"), codec)
    else:
        import lzma

        raw = _Checked(lzma.open(path, "rb"), codec)
    return io.BufferedReader(raw, buffer_size=1 << 20)


class DecodeCounter:
    """Decodes byte lines as UTF-8; undecodable ones are decoded with U+FFFD and counted."""

    def __init__(self) -> None:
        self.bad_lines = 0

    def __call__(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.bad_lines += 1
            return raw.decode("utf-8", errors="replace")


def byte_lines(path: Path, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, bytes without the line end) of the lines starting in [start, end):
    lines that *start* inside the byte range, numbered as in a whole-file read."""
    if (start or end is not None) and sniff(path) is not None:
        raise ValueError(f"{path}: compressed files cannot be split by byte range")
    with open_binary(path) as fh:
        lineno, pos = 0, 0
        if start:
            while pos < start:  # count the lines before the range so numbers match a whole-file run
                chunk = fh.read(min(1 << 20, start - pos))
                if not chunk:
                    break
                lineno += chunk.count(b"\n")
                pos += len(chunk)
            fh.seek(start - 1)
            if fh.read(1) != b"\n":  # mid-line: that line belongs to the previous range
                pos = start + len(fh.readline())
                lineno += 1
            else:
                pos = start
        for raw in fh:
            if end is not None and pos >= end:
                break
            pos += len(raw)
            lineno += 1
            yield lineno, raw.rstrip(b"\r\n")
