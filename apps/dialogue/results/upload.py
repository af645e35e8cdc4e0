"""Uploaded results: ``POST /v1/results`` with a zip or tar(.gz) of a ``mm medical analyze`` output
folder or a ``mm social analyze`` report folder; the server checks it, unpacks it safely, validates
it with the same loaders as server-side results and keeps it under its own folder with an id
(``up-...``).  A chat completion names it with ``"context": {"upload": "up-..."}``; ``GET
/v1/results`` lists it.

Safe extraction (every rule -> 400 naming the member, or 413 for sizes):

* the body is capped (``max_bytes``) while it is read;
* members: relative names only -- no absolute path, drive letter, backslash or ``..``; regular files
  and folders only -- symlinks, hard links, devices and FIFOs are refused;
* at most ``max_files`` entries (files and folders) and ``max_total`` bytes unpacked, counted while writing (a zip that
  lies about its sizes is stopped at the cap);
* the result is at the archive's top or in its one top folder; it must load as a result
  (:func:`.context.load_context`); a findings file may not point outside the upload
  (``outputs.mask_nifti``), and an uploaded study's ``study`` path -- a path on the uploader's
  machine -- is never followed on the server (answers needing the images say they are absent).

Files are unpacked into a temporary folder beside the store and moved in with one rename, so a
failed upload leaves nothing behind.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import tarfile
import threading
import time
import uuid
import zipfile
from pathlib import Path, PurePosixPath

from .context import ResultError, load_context

MAX_BYTES = 64 * 1024 * 1024          # archive body
MAX_TOTAL = 256 * 1024 * 1024         # unpacked bytes
MAX_FILES = 2000
MAX_UPLOADS = 200                     # kept at once
ID = re.compile(r"^up-[0-9a-f]{16}$")


class UploadError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _safe_name(name: str) -> PurePosixPath:
    if not name or "\\" in name or "\x00" in name:
        raise UploadError(400, f"archive member {name!r}: name is empty or holds a backslash or NUL")
    p = PurePosixPath(name)
    if p.is_absolute() or re.match(r"^[A-Za-z]:", name):
        raise UploadError(400, f"archive member {name!r}: absolute paths are not allowed")
    if ".." in p.parts:
        raise UploadError(400, f"archive member {name!r}: '..' is not allowed")
    parts = [x for x in p.parts if x not in ("", ".")]
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


class _Budget:
    def __init__(self, max_files: int, max_total: int) -> None:
        self.files, self.bytes, self.max_files, self.max_total = 0, 0, max_files, max_total

    def file(self, name: str) -> None:
        """One more entry (file or folder)."""
        self.files += 1
        if self.files > self.max_files:
            raise UploadError(413, f"archive holds more than {self.max_files} files and folders")

    def add(self, n: int) -> None:
        self.bytes += n
        if self.bytes > self.max_total:
            raise UploadError(413, f"archive unpacks to more than {self.max_total} bytes")


def _write(src, dest: Path, budget: _Budget) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "xb") as out:              # "x": a name given twice in the archive is refused below
        while chunk := src.read(1 << 20):
            budget.add(len(chunk))
            out.write(chunk)


def _target(root: Path, name: str) -> Path | None:
    rel = _safe_name(name)
    if str(rel) == ".":
        return None
    return root / rel


def extract(data: bytes, into: Path, max_files: int = MAX_FILES, max_total: int = MAX_TOTAL) -> None:
    """Unpack a zip or tar(.gz/.bz2/.xz) archive into the empty folder ``into`` (UploadError otherwise)."""
    budget = _Budget(max_files, max_total)
    try:
        if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
            _extract_zip(data, into, budget)
        else:
            _extract_tar(data, into, budget)
    except FileExistsError as exc:
        raise UploadError(400, f"archive member {Path(exc.filename).relative_to(into)} appears twice") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, UploadError):
            raise
        if isinstance(exc, tarfile.ReadError):  # not an archive at all: tarfile's own text lists its methods
            raise UploadError(400, "the upload is not a readable zip or tar archive (zip, tar, tar.gz/.bz2/.xz)") from None
        first = (str(exc).splitlines() or [""])[0][:120]
        raise UploadError(400, f"the upload is not a readable zip or tar archive ({type(exc).__name__}: {first})") from None
    if not into.is_dir() or not any(into.iterdir()):
        raise UploadError(400, "the archive is empty")


def _unpack(name: str, dest: Path | None, is_dir: bool, size: int, open_member, budget: _Budget) -> None:
    """One member that passed its type checks: counted, then its folder made or its bytes written
    within the budget (``dest`` None: the archive's own root entry, nothing to write)."""
    if dest is None:
        return
    budget.file(name)
    if is_dir:
        dest.mkdir(parents=True, exist_ok=True)
        return
    if size > budget.max_total:
        raise UploadError(413, f"archive member {name!r} unpacks to more than {budget.max_total} bytes")
    with open_member() as src:
        _write(src, dest, budget)


def _extract_zip(data: bytes, into: Path, budget: _Budget) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            dest = _target(into, info.filename)
            ftype = stat.S_IFMT(info.external_attr >> 16)          # 0 when the archiver wrote no Unix type
            if ftype == stat.S_IFLNK:
                raise UploadError(400, f"archive member {info.filename!r}: symbolic links are not allowed")
            if ftype and ftype not in (stat.S_IFREG, stat.S_IFDIR):
                raise UploadError(400, f"archive member {info.filename!r}: only regular files and folders are allowed")
            _unpack(info.filename, dest, info.is_dir(), info.file_size, lambda i=info: zf.open(i), budget)


def _extract_tar(data: bytes, into: Path, budget: _Budget) -> None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
        for member in tf:
            dest = _target(into, member.name)
            if member.issym() or member.islnk():
                raise UploadError(400, f"archive member {member.name!r}: links are not allowed")
            if not (member.isfile() or member.isdir()):
                raise UploadError(400, f"archive member {member.name!r}: only regular files and folders are allowed")
            _unpack(member.name, dest, member.isdir(), member.size, lambda m=member: tf.extractfile(m), budget)


def _result_folder(root: Path) -> Path:
    def is_result(p: Path) -> bool:
        return (p / "findings.json").is_file() or (p / "user_analytics.parquet").is_file()

    if is_result(root):
        return root
    tops = [p for p in root.iterdir()]
    if len(tops) == 1 and tops[0].is_dir() and is_result(tops[0]):
        return tops[0]
    raise UploadError(400, "the archive holds no analysis result: findings.json (mm medical analyze) or "
                           "user_analytics.parquet (mm social analyze) at its top or in its one top folder")


def confine(ctx, folder: Path) -> None:
    """An uploaded context may read only its own files: no mask outside the upload, no study images."""
    if ctx.kind != "medical":
        return
    rel = (ctx.findings.get("outputs") or {}).get("mask_nifti")
    if rel:
        target = (folder / str(rel)).resolve()
        if folder.resolve() not in target.parents:
            raise UploadError(400, "findings.json 'outputs.mask_nifti' points outside the uploaded folder")
    ctx.findings = {**ctx.findings, "study": None, "uploaded_study_path": ctx.findings.get("study")}


class UploadStore:
    """Uploaded results under ``root`` (server-owned): ``root/<id>/result/`` + ``root/<id>/meta.json``."""

    def __init__(self, root: str | Path, max_bytes: int = MAX_BYTES, max_total: int = MAX_TOTAL,
                 max_files: int = MAX_FILES, max_uploads: int = MAX_UPLOADS) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.root = self.root.resolve()
        self.max_bytes, self.max_total, self.max_files, self.max_uploads = max_bytes, max_total, max_files, max_uploads
        self.lock = threading.Lock()

    def add(self, data: bytes, name: str | None = None) -> dict:
        if len(data) > self.max_bytes:
            raise UploadError(413, f"upload over {self.max_bytes} bytes")
        if not data:
            raise UploadError(400, "the upload is empty (send a zip or tar archive of a result folder as the body)")
        with self.lock:
            if len(self.listing()) >= self.max_uploads:
                raise UploadError(507, f"the server keeps at most {self.max_uploads} uploads; delete one first")
        uid = "up-" + uuid.uuid4().hex[:16]
        tmp = self.root / f".tmp-{uid}"
        tmp.mkdir()
        try:
            extract(data, tmp / "files", self.max_files, self.max_total)
            folder = _result_folder(tmp / "files")
            try:
                ctx = load_context(folder)
            except ResultError as exc:
                raise UploadError(400, "the uploaded result does not load: "
                                       + str(exc).replace(str(tmp / "files") + "/", "").replace(str(tmp / "files"), ".")) from None
            confine(ctx, folder)
            label = _label(name) or (folder.name if folder != tmp / "files" else uid)
            meta = {"id": uid, "kind": ctx.kind, "name": label, "created": time.time(), "bytes": len(data)}
            folder.rename(tmp / "result")
            (tmp / "meta.json").write_text(json.dumps(meta))
            os.rename(tmp, self.root / uid)            # one rename: the upload appears whole or not at all
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return meta

    def folder(self, uid) -> tuple[Path, dict]:
        if not isinstance(uid, str) or not ID.match(uid):
            raise UploadError(400, f"{str(uid)[:40]!r} is not an upload id ('up-' + 16 hex digits, as POST /v1/results returns)")
        base = self.root / uid
        if not (base / "meta.json").is_file():
            raise UploadError(404, f"no uploaded result '{uid}'")
        return base / "result", json.loads((base / "meta.json").read_text())

    def listing(self) -> list[dict]:
        out = []
        for p in sorted(self.root.glob("up-*")):
            try:
                out.append(json.loads((p / "meta.json").read_text()))
            except (OSError, json.JSONDecodeError):
                continue
        return out

    def delete(self, uid) -> None:
        folder, _ = self.folder(uid)
        shutil.rmtree(folder.parent)


def _label(name: str | None) -> str | None:
    if not name:
        return None
    return re.sub(r"[^A-Za-z0-9._ -]", "_", name)[:80] or None
