"""One study from archive to archive: skip if done, pull, analyse (warm model), push SEG + SR.

:class:`Worker` keeps the model loaded; :meth:`Worker.process` handles a study on a DICOMweb
archive and :meth:`Worker.process_folder` one already on disk (the DIMSE listener's path). Every
outcome is a dict with ``outcome``: ``done`` | ``skipped`` | ``refused`` (the study cannot be
analysed; retrying will not help) | ``failed`` (transient: retry later) and a one-line ``message``.

The pulled copy of a study is deleted by a background thread once the study is finished: unlinking
a few hundred files waits on the disk for 0.3-0.7 s that no result needs (the thread is not a
daemon, so the interpreter still finishes the deletion before it exits; :meth:`Worker.close` waits).
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

from .archive import Archive, ArchiveError
from .results import build_sr, finalize_seg, model_version, result_uids, series_tag

log = logging.getLogger(__name__)


def warm_imports() -> float:
    """Import what a study's analysis and results need (highdicom alone is ~1.5-3 s here), so that a
    long-lived worker pays it at start-up and not on its first study; returns the seconds spent."""
    import importlib

    t0 = time.perf_counter()
    for name in ("highdicom", "pydicom.sr.codedict", "SimpleITK", "nibabel", "scipy.ndimage", "matplotlib.pyplot"):
        try:
            if name == "matplotlib.pyplot":
                importlib.import_module("matplotlib").use("Agg")
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a missing optional part fails later, on the study, with its message
            log.debug("warm import of %s failed: %s", name, exc)
    return time.perf_counter() - t0

def _reportable(findings: dict) -> bool:
    """True when analyze produced findings worth a report (ok, or a new state like withheld / no lesion)."""
    return findings.get("status") not in ("refused", "error") and ("lesion" in findings or "probabilities" in findings)


class Worker:
    """Holds the warm model; ``out_root/<StudyInstanceUID>/`` keeps each study's local outputs."""

    def __init__(self, model, bundle: Path, out_root: Path, *, register: bool = True, scratch: Path | None = None) -> None:
        self.model, self.register = model, register
        self.version = model_version(bundle)
        self.tag = series_tag(self.version)
        self.out_root = Path(out_root)
        self.scratch = Path(scratch) if scratch else None
        self._cleanups: list[threading.Thread] = []
        self.warm_seconds = round(warm_imports(), 3)

    def warm_up(self) -> float:
        """Analyse one small generated DICOM study end to end (SEG and SR built, nothing stored), so
        that a long-lived watcher or listener pays the first study's one-off costs (lazy imports,
        first-call set-up in the SEG writer, the registration and the report) at start-up rather than
        on a user's study; returns the seconds spent. A failure is logged and ignored: the first real
        study then pays those costs itself."""
        from ..demo_data import write_study

        class _Discard:
            def store(self, datasets, study_uid):
                return None

        t0 = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix="mm-pacs-warmup-", dir=self.scratch))
        try:
            entry = write_study(tmp, "warmup", seed=7, fmt="dicom")
            out_root, self.out_root = self.out_root, tmp / "out"
            try:
                self.process_folder(Path(entry["study"]), "warmup", sink=_Discard())
            finally:
                self.out_root = out_root
        except Exception as exc:  # noqa: BLE001 - warming is an optimisation, never a reason to stop
            log.warning("warm-up study failed (%s: %s); the first real study will be slower", type(exc).__name__, exc)
        finally:
            self._remove_later(tmp)
        seconds = time.perf_counter() - t0
        log.info("warm-up study analysed in %.1f s", seconds)
        return seconds

    def _remove_later(self, path: Path) -> None:
        """Delete ``path`` (a pulled study) in a background thread; see the module docstring."""
        job = threading.Thread(target=shutil.rmtree, args=(path,), kwargs={"ignore_errors": True}, name="mm-pacs-cleanup")
        job.start()
        self._cleanups = [j for j in self._cleanups if j.is_alive()] + [job]

    def close(self) -> None:
        """Wait for pending deletions of pulled studies."""
        for job in self._cleanups:
            job.join()
        self._cleanups = []

    # ------------------------------------------------------------------ DICOMweb
    def process(self, archive: Archive, study_uid: str, *, force: bool = False) -> dict:
        t0 = time.perf_counter()
        try:
            if not force:
                have = archive.results_of(study_uid, self.tag)
                if have["SEG"] and have["SR"]:
                    return {"study": study_uid, "outcome": "skipped", "seconds": time.perf_counter() - t0,
                            "message": f"already holds our SEG and SR for model {self.version} (--force re-runs)"}
            tmp = Path(tempfile.mkdtemp(prefix="mm-pacs-", dir=self.scratch))
            try:
                t1 = time.perf_counter()
                stats = archive.download_study(study_uid, tmp / "study")
                download_s = time.perf_counter() - t1
                if not stats["instances"]:
                    return {"study": study_uid, "outcome": "refused", "seconds": time.perf_counter() - t0,
                            "message": f"study {study_uid} has no image series ({', '.join(stats['skipped_series']) or 'empty'})"}
                # the download is deleted afterwards: the findings name the study by its archive address
                out = self.process_folder(tmp / "study", study_uid, sink=archive, force=force,
                                          source=f"{archive.name}/studies/{study_uid}")
                out.update(download_seconds=round(download_s, 3), downloaded=stats)
            finally:
                self._remove_later(tmp)
        except ArchiveError as exc:
            out = {"study": study_uid, "outcome": "failed" if exc.transient else "refused", "message": str(exc)}
        out["seconds"] = round(time.perf_counter() - t0, 3)
        return out

    # ------------------------------------------------------------------ a study on disk
    def process_folder(self, folder: Path, study_uid: str, *, sink, force: bool = False, source: str | None = None) -> dict:
        """Analyse the study in ``folder`` and store SEG + SR through ``sink.store(datasets, study_uid)``;
        ``source``: how the findings name the study (default: the folder)."""
        import pydicom

        from ..analyze import analyze_study

        out_dir = self.out_root / study_uid
        t0 = time.perf_counter()
        findings = analyze_study(folder, out_dir, self.model, register=self.register, source=source)
        analyse_s = time.perf_counter() - t0
        base = {"study": study_uid, "analyse_seconds": round(analyse_s, 3), "findings": str(out_dir / "findings.json"),
                "status": findings.get("status")}
        if not _reportable(findings):
            return {**base, "outcome": "refused", "message": f"study {study_uid}: {findings.get('status')}: {findings.get('error')}"}
        t1 = time.perf_counter()
        uids = result_uids(study_uid, self.version, uuid.uuid4().hex if force else "")
        seg = None
        if (findings.get("outputs") or {}).get("dicom_seg"):
            seg = finalize_seg(out_dir / findings["outputs"]["dicom_seg"], self.version, uids)
        used = {s.get("uid") for s in (findings.get("series") or {}).values()}
        sources = [d for d in (pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(Path(folder).rglob("*.dcm")))
                   if str(getattr(d, "SeriesInstanceUID", "")) in used]
        sr = build_sr(findings, seg, sources, self.version, uids)
        objects = [x for x in (seg, sr) if x is not None]
        for name, ds in (("seg", seg), ("sr", sr)):
            if ds is not None:
                ds.save_as(out_dir / f"pacs_{name}.dcm", enforce_file_format=True)
        results_s = time.perf_counter() - t1
        t1 = time.perf_counter()
        sink.store(objects, study_uid)
        return {**base, "outcome": "done", "results_seconds": round(results_s, 3), "push_seconds": round(time.perf_counter() - t1, 3),
                "message": f"stored {'SEG + ' if seg is not None else ''}SR (model {self.version}); status {findings.get('status')}",
                "seg_sop": seg.SOPInstanceUID if seg is not None else None, "sr_sop": sr.SOPInstanceUID}
