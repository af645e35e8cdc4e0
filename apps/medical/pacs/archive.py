"""One DICOMweb archive: QIDO-RS search, WADO-RS retrieval streamed to disk, STOW-RS store.

Every failure becomes an :class:`ArchiveError` whose one-line message names the archive (without
credentials), the operation and the cause, and says whether trying again later can help
(``transient``: unreachable, HTTP 5xx, a transfer that broke) or not (HTTP 401/403/404, a study
the archive does not have). Retrieval streams one instance at a time (dicomweb-client's chunked
multipart decoding), writing each to ``DEST/<series>/<sop>.dcm`` atomically: memory stays at
about one instance however large the study.
"""
from __future__ import annotations

import logging
from pathlib import Path

from .credentials import check_url, redact, session_for

log = logging.getLogger(__name__)

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


def _value(item: dict, tag: str, default=None):
    """One attribute of a DICOM JSON object (QIDO answer)."""
    v = item.get(tag, {}).get("Value")
    return v[0] if v else default


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
        """Stream every image series of the study into ``dest/<series>/<sop>.dcm``; returns counts.

        Non-image series (SEG, SR, PR, ...) are not downloaded. A transfer that breaks, or an archive
        that sends fewer instances than QIDO announced, raises a transient :class:`ArchiveError`."""
        import os

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
                for ds in self.client.iter_series(study_uid, s["series_uid"]):
                    # a scratch copy: renamed into place whole (no fsync: the archive keeps the original)
                    part = folder / f"{ds.SOPInstanceUID}.part"
                    ds.save_as(part, enforce_file_format=True)
                    stats["bytes"] += part.stat().st_size
                    os.replace(part, part.with_suffix(".dcm"))
                    got += 1
            except Exception as exc:  # noqa: BLE001
                err = explain(exc, self.name, what)
                raise ArchiveError(f"{err} (after {stats['instances'] + got} instance(s))", transient=err.transient,
                                   status=err.status) from None
            if s["instances"] and got < s["instances"]:
                raise ArchiveError(f"{self.name}: {what}: got {got} of {s['instances']} instances (transfer cut short); "
                                   "will retry", transient=True)
            stats["instances"] += got
        return stats

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
