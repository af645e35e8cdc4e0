"""One DICOMweb archive: QIDO-RS search, WADO-RS retrieval streamed to disk, STOW-RS store.

Every failure becomes an :class:`ArchiveError` whose one-line message names the archive (without
credentials), the operation and the cause, and says whether trying again later can help
(``transient``: unreachable, HTTP 5xx, a transfer that broke) or not (HTTP 401/403/404, a study
the archive does not have). Retrieval streams one instance at a time: the WADO-RS multipart answer
is split into its parts as it arrives and each part's bytes (a PS3.10 file) are written as they
came to ``DEST/<series>/<n>.dcm`` atomically, without decoding and re-encoding them (that was a
quarter of a warm study's pull); memory stays at about one instance however large the study.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from .credentials import check_url, redact, session_for

log = logging.getLogger(__name__)
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")

# series we never download for analysis: our own results and other non-image objects
NON_IMAGE_MODALITIES = {"SEG", "SR", "PR", "KO", "RTSTRUCT", "RTPLAN", "RTDOSE", "DOC"}
HINTS = {401: "credentials rejected: set MM_PACS_USER/MM_PACS_PASSWORD, MM_PACS_TOKEN or a netrc file (MM_PACS_NETRC)",
         403: "access forbidden for these credentials", 404: "not found on the archive"}


class ArchiveError(RuntimeError):
    """A failed archive operation; ``transient`` says whether a later retry may succeed."""

    def __init__(self, message: str, *, transient: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.transient, self.status = transient, status


def explain(exc: BaseException, archive: str, what: str) -> ArchiveError:
    """Turn a requests/dicomweb-client exception into one clear :class:`ArchiveError`."""
    import requests

    if isinstance(exc, ArchiveError):
        return exc
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        hint = HINTS.get(code, "archive-side error, will retry" if code >= 500 else "request refused")
        return ArchiveError(f"{archive}: {what}: HTTP {code} ({hint})", transient=code >= 500 or code == 429, status=code)
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return ArchiveError(f"{archive}: {what}: the transfer broke mid-stream ({type(exc).__name__}); will retry",
                            transient=True)
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return ArchiveError(f"{archive}: {what}: archive unreachable ({type(exc).__name__}); will retry", transient=True)
    return ArchiveError(f"{archive}: {what}: {type(exc).__name__}: {str(exc)[:200]}", transient=True)


def iter_parts(response, chunk_size: int = 1 << 16):
    """The body parts of a ``multipart/related`` answer, one at a time as bytes (RFC 2046 framing:
    ``--boundary`` lines, part headers, a blank line, the body). A stream that ends before the closing
    ``--boundary--`` raises :class:`ArchiveError` (transient): the transfer broke."""
    media, *params = [p.strip() for p in response.headers.get("Content-Type", "").split(";")]
    if media.lower() == "application/dicom":       # a non-compliant archive sending one bare instance
        yield response.content
        return
    boundary = next((v.strip().strip('"') for k, _, v in (p.partition("=") for p in params) if k.strip().lower() == "boundary"), "")
    if media.lower() != "multipart/related" or not boundary:
        raise ArchiveError(f"answer is {media or 'untyped'} without a multipart boundary, not multipart/related",
                           transient=False)
    delimiter = b"\r\n--" + boundary.encode()
    buf, pos, started = bytearray(b"\r\n"), 0, False       # the body opens with "--boundary": give it its CRLF
    for chunk in response.iter_content(chunk_size):
        buf += chunk
        while True:
            i = buf.find(delimiter, pos)
            end = i + len(delimiter)
            eol = buf.find(b"\r\n", end) if i >= 0 else -1
            closing = i >= 0 and buf[end:end + 2] == b"--"
            if i < 0 or (eol < 0 and not closing):          # wait for the rest of the delimiter line
                pos = i if i >= 0 else max(0, len(buf) - len(delimiter) - 2)
                break
            if started:         # the part: its headers, a blank line, the body
                head = 2 if buf[:2] == b"\r\n" else buf.find(b"\r\n\r\n", 0, i) + 4
                if head < 4 and head != 2:
                    raise ArchiveError("a multipart part without the blank line after its headers", transient=True)
                yield bytes(memoryview(buf)[head:i])
            if closing:
                return
            del buf[:eol + 2]
            pos, started = 0, True
    raise ArchiveError("the transfer broke mid-stream (no closing multipart boundary); will retry", transient=True)


def _value(item: dict, tag: str, default=None):
    """One attribute of a DICOM JSON object (QIDO answer)."""
    v = item.get(tag, {}).get("Value")
    return v[0] if v else default


def _write_instance(path: Path, data: bytes) -> None:
    """One retrieved instance to ``path``: as sent when it is a PS3.10 file (preamble + ``DICM``), else
    (a bare data set) through pydicom so that what lands on disk is always a DICOM file."""
    if data[128:132] == b"DICM":
        path.write_bytes(data)       # a scratch copy: renamed into place whole (no fsync: the archive keeps the original)
        return
    import io

    import pydicom

    pydicom.dcmread(io.BytesIO(data), force=True).save_as(path, enforce_file_format=True)


class Archive:
    """A DICOMweb archive at ``url`` (its DICOMweb root, e.g. ``http://host:8042/dicom-web``)."""

    def __init__(self, url: str, *, environ: dict | None = None, timeout: float = 30.0) -> None:
        from dicomweb_client.api import DICOMwebClient

        self.url = check_url(url)
        self.name = redact(self.url)
        self.session = session_for(self.url, environ, timeout)
        self.client = DICOMwebClient(self.url, session=self.session, timeout=timeout)
        self.client.set_http_retry_params(retry=False)      # the watcher retries with back-off itself

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one clear ArchiveError
            raise explain(exc, self.name, what) from None

    # ---------------------------------------------------------------- QIDO-RS
    def find_studies(self, query: dict | None = None, limit: int = 1000) -> list[dict]:
        """Studies matching ``query`` (QIDO attribute keywords, e.g. ``{"PatientID": "x", "StudyDate": "20240101-"}``)."""
        rows = self._call("search studies", self.client.search_for_studies, search_filters=dict(query or {}),
                          limit=limit, fields=["NumberOfStudyRelatedInstances"])
        return [{"study_uid": _value(r, "0020000D"), "patient_id": _value(r, "00100020"),
                 "instances": int(_value(r, "00201208", 0) or 0)} for r in rows]

    def series(self, study_uid: str) -> list[dict]:
        """The study's series (UID, modality, description, instance count); 404 when the study is unknown."""
        rows = self._call(f"list series of study {study_uid}", self.client.search_for_series,
                          study_instance_uid=study_uid, fields=["NumberOfSeriesRelatedInstances", "SeriesDescription"])
        if not rows:
            raise ArchiveError(f"{self.name}: study {study_uid}: not found on the archive", transient=False, status=404)
        return [{"series_uid": _value(r, "0020000E"), "modality": str(_value(r, "00080060", "")).upper(),
                 "description": str(_value(r, "0008103E", "") or ""),
                 "instances": int(_value(r, "00201209", 0) or 0)} for r in rows]

    def results_of(self, study_uid: str, tag: str) -> dict[str, list[str]]:
        """Our SEG and SR series already in the study whose description carries ``tag`` (model version)."""
        found: dict[str, list[str]] = {"SEG": [], "SR": []}
        for s in self.series(study_uid):
            if s["modality"] in found and s["description"].endswith(tag):
                found[s["modality"]].append(s["series_uid"])
        return found

    # ---------------------------------------------------------------- WADO-RS
    def download_study(self, study_uid: str, dest: Path) -> dict:
        """Stream every image series of the study into ``dest/<series>/<n>.dcm``; returns counts.

        Non-image series (SEG, SR, PR, ...) are not downloaded. A transfer that breaks, or an archive
        that sends fewer instances than QIDO announced, raises a transient :class:`ArchiveError`."""
        from mmcore.utils.io import publish

        dest = Path(dest)
        series = self.series(study_uid)
        images = [s for s in series if s["modality"] not in NON_IMAGE_MODALITIES]
        stats = {"series": len(images), "instances": 0, "bytes": 0,
                 "skipped_series": [f"{s['modality']} '{s['description']}'" for s in series if s not in images]}
        for s in images:
            folder = dest / s["series_uid"]
            folder.mkdir(parents=True, exist_ok=True)
            got = 0
            what = f"retrieve study {study_uid} series {s['series_uid']}"
            try:
                for data in self._retrieve_series(study_uid, s["series_uid"]):
                    part = folder / f"{got:06d}.part"
                    _write_instance(part, data)
                    stats["bytes"] += len(data)
                    publish(part, part.with_suffix(".dcm"))
                    got += 1
            except Exception as exc:  # noqa: BLE001
                err = (ArchiveError(f"{self.name}: {what}: {exc}", transient=exc.transient, status=exc.status)
                       if isinstance(exc, ArchiveError) else explain(exc, self.name, what))
                raise ArchiveError(f"{err} (after {stats['instances'] + got} instance(s))", transient=err.transient,
                                   status=err.status) from None
            if s["instances"] and got < s["instances"]:
                raise ArchiveError(f"{self.name}: {what}: got {got} of {s['instances']} instances (transfer cut short); "
                                   "will retry", transient=True)
            stats["instances"] += got
        return stats

    def _retrieve_series(self, study_uid: str, series_uid: str):
        """WADO-RS Retrieve Series: each instance's bytes as the archive sent them (streamed)."""
        for uid in (study_uid, series_uid):
            if not UID.match(str(uid)) or len(str(uid)) > 64:
                raise ArchiveError(f"{uid!r} is not a DICOM UID", transient=False)
        response = self.session.get(f"{self.url}/studies/{study_uid}/series/{series_uid}", stream=True,
                                    headers={"Accept": 'multipart/related; type="application/dicom"'})
        with response:
            response.raise_for_status()
            yield from iter_parts(response)

    # ---------------------------------------------------------------- STOW-RS
    def store(self, datasets: list, study_uid: str) -> None:
        """STOW-RS ``datasets`` into ``study_uid`` in one request; any failed instance is an error."""
        reply = self._call(f"store {len(datasets)} instance(s) into study {study_uid}", self.client.store_instances,
                           datasets, study_instance_uid=study_uid)
        failed = getattr(reply, "FailedSOPSequence", None)
        if failed:
            reasons = [str(getattr(f, "FailureReason", "?")) for f in failed]
            raise ArchiveError(f"{self.name}: store into study {study_uid}: {len(failed)} instance(s) rejected "
                               f"(failure reasons {reasons})", transient=False)
