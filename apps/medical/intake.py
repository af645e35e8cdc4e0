"""Study intake: find the MR and the CT of a study folder, DICOM or NIfTI, with readable rules.

DICOM: every file is read header-only with pydicom and grouped by SeriesInstanceUID (MONAI's
``PydicomReader`` would stack a whole folder as one series). Skipped: DICOMDIR, SR, SEG, RT,
presentation states, files without pixels, localizers/scouts, non-DICOM files. A series is a
candidate when it is MR or CT, has >= ``MIN_SLICES`` slices, one orientation and even spacing.
Selection (like MONAI Deploy's series selector, written as code you can read):

* MR: prefer a description naming T1 (``T1``, ``MPRAGE``, ``SPGR``), then more slices;
* CT: prefer original/primary axial, then more slices;
* a second candidate is never silently dropped: the study JSON names both and the rule used.

NIfTI: ``manifest.json`` (``{"mr": "file", "ct": "file"}``) if present, else file names
(``mr|t1|mprage|anat`` -> MR, ``ct`` -> CT).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MIN_SLICES = 8
SKIP_SOP_PREFIXES = {
    "1.2.840.10008.1.3.10": "DICOMDIR (media index)",
    "1.2.840.10008.5.1.4.1.1.88.": "structured report",
    "1.2.840.10008.5.1.4.1.1.66.4": "segmentation (SEG)",
    "1.2.840.10008.5.1.4.1.1.481.": "radiotherapy object",
    "1.2.840.10008.5.1.4.1.1.11.": "presentation state",
    "1.2.840.10008.5.1.4.1.1.104.": "encapsulated document",
}
NIFTI_RULES = {"mr": re.compile(r"(^|[^a-z])(mr|mri|t1w?|mprage|anat\w*)([^a-z]|$)", re.I),
               "ct": re.compile(r"(^|[^a-z])(ct|cta)([^a-z]|$)", re.I)}


class IntakeError(ValueError):
    """The study cannot be analysed; the message names the file or series and why."""


def intake_cause(exc: BaseException | None) -> IntakeError | None:
    """The :class:`IntakeError` behind ``exc``, if any: MONAI's ``Compose`` wraps an exception raised
    inside a transform in ``RuntimeError("applying transform ...")``, which hides our clear message."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, IntakeError):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


@dataclass
class Series:
    uid: str
    modality: str
    description: str
    number: int
    files: list[Path]
    image_type: tuple[str, ...]
    study_uid: str = ""
    patient_id: str = ""
    problem: str | None = None

    def label(self) -> str:
        return f"series {self.number} '{self.description}' ({self.modality}, {len(self.files)} files, UID {self.uid})"


@dataclass
class StudyInput:
    """What intake found: one path or file list per modality, plus everything worth telling."""

    study_dir: Path
    kind: str                                   # "dicom" | "nifti"
    sources: dict[str, list[Path]]              # modality -> files (one NIfTI, or a DICOM series)
    study_uid: str | None = None
    series: dict[str, dict] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)

    @property
    def modalities(self) -> list[str]:
        return [m for m in ("mr", "ct") if m in self.sources]


def _skip_reason(ds, path: Path) -> str | None:
    sop = str(getattr(ds, "SOPClassUID", "") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
    if path.name.upper() == "DICOMDIR":
        return "DICOMDIR (media index)"
    for prefix, why in SKIP_SOP_PREFIXES.items():
        if sop.startswith(prefix):
            return why
    if "Rows" not in ds:
        return "no image pixels"
    itype = [str(v).upper() for v in getattr(ds, "ImageType", [])]
    if any(v in ("LOCALIZER", "SCOUT") for v in itype):
        return "localizer/scout image"
    return None


def index_dicom(folder: Path) -> tuple[dict[str, Series], list[str]]:
    """Group the DICOM files under ``folder`` by series; returns (series by UID, skip notes)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    series: dict[str, Series] = {}
    notes: list[str] = []
    skipped: dict[str, int] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix.lower() in (".json", ".html", ".png", ".txt", ".md", ".nii", ".gz"):
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, AttributeError, KeyError) as exc:
            if path.name.upper() == "DICOMDIR":
                skipped["DICOMDIR (media index)"] = skipped.get("DICOMDIR (media index)", 0) + 1
            else:
                notes.append(f"{path}: not readable as DICOM ({type(exc).__name__}: {str(exc)[:80]}); skipped")
            continue
        why = _skip_reason(ds, path)
        if why:
            skipped[why] = skipped.get(why, 0) + 1
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "") or f"no-uid:{path.parent}")
        if uid not in series:
            series[uid] = Series(uid, str(getattr(ds, "Modality", "")).upper(), str(getattr(ds, "SeriesDescription", "")),
                                 int(getattr(ds, "SeriesNumber", 0) or 0), [], tuple(str(v).upper() for v in getattr(ds, "ImageType", [])),
                                 str(getattr(ds, "StudyInstanceUID", "")), str(getattr(ds, "PatientID", "")))
        series[uid].files.append(path)
    notes += [f"skipped {n} file(s): {why}" for why, n in sorted(skipped.items())]
    return series, notes


def check_series_geometry(s: Series) -> str | None:
    """None when the slices form one evenly spaced stack, else the reason (naming the series)."""
    import pydicom

    if len(s.files) < MIN_SLICES:
        return f"{s.label()}: only {len(s.files)} slice(s); a 3-D volume needs at least {MIN_SLICES}"
    orients, positions = [], []
    for path in s.files:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["ImageOrientationPatient", "ImagePositionPatient"])
            orients.append(np.asarray(ds.ImageOrientationPatient, float))
            positions.append(np.asarray(ds.ImagePositionPatient, float))
        except Exception as exc:  # noqa: BLE001 - any broken header makes the series unusable
            return f"{s.label()}: {path.name} has no usable geometry ({type(exc).__name__}: {exc})"
    o = np.stack(orients)
    if np.abs(o - o[0]).max() > 1e-3:
        return f"{s.label()}: slices have different orientations (ImageOrientationPatient varies)"
    normal = np.cross(o[0][:3], o[0][3:])
    along = np.sort(np.stack(positions) @ normal)
    gaps = np.diff(along)
    if gaps.min() < 1e-3:
        return f"{s.label()}: two slices share a position (duplicate or multi-volume series)"
    if gaps.max() > 1.1 * gaps.min():
        return (f"{s.label()}: inconsistent slice spacing ({gaps.min():.2f}-{gaps.max():.2f} mm, missing or "
                f"irregular slices)")
    return None


def _mr_rank(s: Series) -> tuple:
    return (bool(re.search(r"t1|mprage|spgr", s.description, re.I)), len(s.files))


def _ct_rank(s: Series) -> tuple:
    return ("ORIGINAL" in s.image_type and "AXIAL" in s.image_type, len(s.files))


def select_series(series: dict[str, Series], messages: list[str]) -> dict[str, Series]:
    chosen: dict[str, Series] = {}
    for modality, rank, rule in (("MR", _mr_rank, "T1-weighted description first, then most slices"),
                                 ("CT", _ct_rank, "original axial first, then most slices")):
        cands = []
        for s in series.values():
            if s.modality != modality:
                continue
            problem = check_series_geometry(s)
            if problem:
                messages.append(f"rejected {problem}")
                continue
            cands.append(s)
        if not cands:
            continue
        cands.sort(key=lambda s: (rank(s), -s.number), reverse=True)
        if len(cands) > 1:
            tie = rank(cands[0]) == rank(cands[1])
            messages.append(
                f"{len(cands)} candidate {modality} series: " + "; ".join(c.label() for c in cands)
                + f". Chose series {cands[0].number} by rule: {rule}" + (" (tie: lowest series number)" if tie else ""))
        chosen[modality.lower()] = cands[0]
    return chosen


def _nifti_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and (p.name.endswith(".nii") or p.name.endswith(".nii.gz")))


def read_study(folder: Path | str) -> StudyInput:
    """Find the MR and CT of one study folder; raises :class:`IntakeError` naming what is wrong."""
    folder = Path(folder)
    if not folder.exists():
        raise IntakeError(f"{folder}: no such folder")
    if folder.is_file():
        if folder.name.endswith((".nii", ".nii.gz")):
            m = "ct" if NIFTI_RULES["ct"].search(folder.name) else "mr"
            return StudyInput(folder.parent, "nifti", {m: [folder]},
                              messages=[f"single NIfTI file {folder.name}: taken as {m.upper()}"])
        raise IntakeError(f"{folder}: a study is a folder (DICOM series or NIfTI files) or one .nii/.nii.gz file")
    messages: list[str] = []
    manifest = folder / "manifest.json"
    niftis = _nifti_files(folder)
    if manifest.exists():
        try:
            spec = json.loads(manifest.read_text())
            sources = {m: [folder / spec[m]] for m in ("mr", "ct") if spec.get(m)}
        except (json.JSONDecodeError, AttributeError, TypeError) as exc:
            raise IntakeError(f"{manifest}: not a JSON object like {{\"mr\": \"t1.nii.gz\", \"ct\": \"ct.nii.gz\"}} ({exc})") from None
        missing = [str(p[0]) for p in sources.values() if not p[0].exists()]
        if missing:
            raise IntakeError(f"{manifest}: names files that do not exist: {missing}")
        return StudyInput(folder, "nifti", sources, messages=["modalities from manifest.json"])
    if niftis:
        sources: dict[str, list[Path]] = {}
        for path in niftis:
            kinds = [m for m, rx in NIFTI_RULES.items() if rx.search(path.name.split(".nii")[0])]
            if len(kinds) != 1:
                messages.append(f"{path.name}: name matches {'no' if not kinds else 'both'} modality pattern(s); ignored "
                                "(name files mr*/t1*/ct* or add manifest.json)")
                continue
            if kinds[0] in sources:
                messages.append(f"two candidate {kinds[0].upper()} files: {sources[kinds[0]][0].name} and {path.name}; "
                                f"kept {sources[kinds[0]][0].name} (first by name). Use manifest.json to choose")
                continue
            sources[kinds[0]] = [path]
        if not sources:
            raise IntakeError(f"{folder}: NIfTI files found but none is recognisably MR or CT: "
                              f"{[p.name for p in niftis]}")
        return StudyInput(folder, "nifti", sources, messages=messages)
    series, notes = index_dicom(folder)
    messages += notes
    if not series:
        raise IntakeError(f"{folder}: no image series found (empty folder, or no readable DICOM/NIfTI)" +
                          (f"; {'; '.join(notes)}" if notes else ""))
    chosen = select_series(series, messages)
    if not chosen:
        raise IntakeError(f"{folder}: no usable MR or CT series. " + "; ".join(messages))
    study_uids = {s.study_uid for s in chosen.values()}
    if len(study_uids) > 1 or len({s.patient_id for s in chosen.values()}) > 1:
        raise IntakeError(f"{folder}: the chosen MR and CT belong to different studies/patients: "
                          + "; ".join(f"{m}: patient {s.patient_id} study {s.study_uid}" for m, s in chosen.items()))
    return StudyInput(folder, "dicom", {m: sorted(s.files) for m, s in chosen.items()}, study_uid=study_uids.pop(),
                      series={m: {"uid": s.uid, "description": s.description, "number": s.number, "files": len(s.files)}
                              for m, s in chosen.items()}, messages=messages)


def looks_like_study(folder: Path) -> bool:
    """A folder holding images directly (not only sub-folders that are studies themselves)."""
    if _nifti_files(folder) or (folder / "manifest.json").exists():
        return True
    subdirs = [p for p in folder.iterdir() if p.is_dir()]
    files = [p for p in folder.iterdir() if p.is_file() and p.name.upper() != "DICOMDIR" and not p.name.startswith(".")]
    if files:
        return True
    # DICOM studies keep series in sub-folders; a batch folder's children are studies with sub-folders
    return bool(subdirs) and not any(any(c.is_dir() for c in d.iterdir()) or _nifti_files(d) for d in subdirs)


def list_studies(path: Path | str) -> list[Path]:
    """One study (``path`` itself) or every study folder directly inside ``path``."""
    path = Path(path)
    if path.is_file() or not path.exists() or looks_like_study(path):
        return [path]
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
