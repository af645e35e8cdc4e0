"""Study intake: find the MR and the CT of a study folder, DICOM or NIfTI, with readable rules.

DICOM: every file is read header-only with pydicom and grouped by SeriesInstanceUID (MONAI's
``PydicomReader`` would stack a whole folder as one series). Skipped: DICOMDIR, SR, SEG, RT,
presentation states, files without pixels, localizers/scouts, non-DICOM files. A series is a
candidate when it is MR or CT, has >= ``MIN_SLICES`` slices, one orientation and even spacing.
Selection (like MONAI Deploy's series selector, written as code you can read):

* MR: prefer a description naming T1 (``T1``, ``MPRAGE``, ``SPGR``), then one naming no weighting,
  then other weightings (T2, FLAIR, DWI ...), then more slices; a chosen MR not named T1 is kept
  with a warning in the messages (the model was trained on T1);
* CT: prefer original/primary axial, then more slices;
* a second candidate is never silently dropped: the study JSON names both and the rule used;
* a folder holding several studies (StudyInstanceUID + PatientID) is never read as one:
  :func:`dicom_studies` lists them and ``read_study(folder, select=key)`` reads one.

A candidate's slices must have finite positions/orientations and, for uncompressed transfer
syntaxes, complete pixel data; a cut file rejects its series with the file and the cause named.

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
        return "no image pixels (truncated header, or not an image)"
    itype = [str(v).upper() for v in getattr(ds, "ImageType", [])]
    if any(v in ("LOCALIZER", "SCOUT") for v in itype):
        return "localizer/scout image"
    return None


def index_dicom(folder: Path) -> tuple[dict[str, Series], list[str]]:
    """Group the DICOM files under ``folder`` by series; returns (series by UID, skip notes)."""
    from pydicom.errors import InvalidDicomError

    from .dicom_io import read_header

    series: dict[str, Series] = {}
    notes: list[str] = []
    skipped: dict[str, list[str]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix.lower() in (".json", ".html", ".png", ".txt", ".md", ".nii", ".gz"):
            continue
        try:
            ds = read_header(path)
        except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, AttributeError, KeyError) as exc:
            if path.name.upper() == "DICOMDIR":
                skipped.setdefault("DICOMDIR (media index)", []).append(path.name)
            else:
                notes.append(f"{path}: not readable as DICOM ({type(exc).__name__}: {str(exc)[:80]}); skipped")
            continue
        why = _skip_reason(ds, path)
        if why:
            skipped.setdefault(why, []).append(str(path.relative_to(folder)))
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "") or f"no-uid:{path.parent}")
        if uid not in series:
            series[uid] = Series(uid, str(getattr(ds, "Modality", "")).upper(), str(getattr(ds, "SeriesDescription", "")),
                                 int(getattr(ds, "SeriesNumber", 0) or 0), [], tuple(str(v).upper() for v in getattr(ds, "ImageType", [])),
                                 str(getattr(ds, "StudyInstanceUID", "")), str(getattr(ds, "PatientID", "")))
        series[uid].files.append(path)
    notes += [f"skipped {len(names)} file(s): {why}" + (f" ({_names(names)})" if why.startswith("no image") else "")
              for why, names in sorted(skipped.items())]
    return series, notes


def _names(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _pixel_problem(ds) -> str | None:
    """Why this slice's pixel data is unusable (missing or cut), or None; compressed data is left to the decoder."""
    if "PixelData" not in ds:
        return "no pixel data (file truncated?)"
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts is not None and getattr(ts, "is_compressed", False):
        return None
    try:
        expected = (int(ds.Rows) * int(ds.Columns) * int(ds.BitsAllocated) * int(getattr(ds, "SamplesPerPixel", 1) or 1)
                    * int(getattr(ds, "NumberOfFrames", 1) or 1) + 7) // 8
    except (AttributeError, TypeError, ValueError) as exc:
        return f"image size attributes unusable ({exc})"
    got = len(ds.PixelData)
    return f"pixel data cut: {got} of {expected} bytes (file truncated)" if got < expected else None


def check_series_geometry(s: Series) -> str | None:
    """None when the slices form one evenly spaced stack, else the reason (naming the series)."""
    import pydicom

    if len(s.files) < MIN_SLICES:
        return f"{s.label()}: only {len(s.files)} slice(s); a 3-D volume needs at least {MIN_SLICES}"
    orients, positions = [], []
    for path in s.files:
        try:
            ds = pydicom.dcmread(path)
        except Exception as exc:  # noqa: BLE001 - a file that read header-only but not whole is cut
            return f"{s.label()}: {path.name} cannot be read ({type(exc).__name__}: {str(exc)[:120]})"
        bad_pixels = _pixel_problem(ds)
        if bad_pixels:
            return f"{s.label()}: {path.name}: {bad_pixels}"
        try:
            o, p = np.asarray(ds.ImageOrientationPatient, float), np.asarray(ds.ImagePositionPatient, float)
            if o.shape != (6,) or p.shape != (3,) or not (np.isfinite(o).all() and np.isfinite(p).all()):
                raise ValueError(f"orientation {list(o)} / position {list(p)}: need 6 and 3 finite numbers")
            orients.append(o)
            positions.append(p)
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


T1_RX = re.compile(r"t1|mprage|spgr|bravo|tfe|vibe", re.I)
NON_T1_RX = re.compile(r"t2|flair|dwi|diff|adc|trace|swi|pd\b|stir|perf|bold|dti|gre|mra|tof|fmri|epi", re.I)


def is_t1(s: Series) -> bool:
    return bool(T1_RX.search(s.description))


def _mr_rank(s: Series) -> tuple:
    weight = 2 if is_t1(s) else (0 if NON_T1_RX.search(s.description) else 1)
    return (weight, len(s.files))


def _ct_rank(s: Series) -> tuple:
    return ("ORIGINAL" in s.image_type and "AXIAL" in s.image_type, len(s.files))


def select_series(series: dict[str, Series], messages: list[str]) -> dict[str, Series]:
    chosen: dict[str, Series] = {}
    for modality, rank, rule in (("MR", _mr_rank, "T1-weighted description first, then no weighting named, then "
                                                  "other weightings (T2, FLAIR, ...), then most slices"),
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
    if "mr" in chosen and not is_t1(chosen["mr"]):
        messages.append(f"WARNING: the MR used, {chosen['mr'].label()}, is not named T1-weighted (no T1/MPRAGE/SPGR in its "
                        "description) but no T1 series was found; the model was trained on T1 MR, so its result on this "
                        "contrast may be wrong")
    return chosen


def study_key(s: Series) -> str:
    return f"{s.patient_id}|{s.study_uid}"


def dicom_studies(folder: Path | str) -> list[str]:
    """The studies (``PatientID|StudyInstanceUID`` keys) among the DICOM image series under ``folder``."""
    series, _ = index_dicom(Path(folder))
    return sorted({study_key(s) for s in series.values()})


def _nifti_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and (p.name.endswith(".nii") or p.name.endswith(".nii.gz")))


def read_study(folder: Path | str, select: str | None = None) -> StudyInput:
    """Find the MR and CT of one study folder; raises :class:`IntakeError` naming what is wrong.

    ``select``: a key from :func:`dicom_studies` when the folder holds several DICOM studies (without
    it such a folder is refused, never mixed)."""
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
    keys = sorted({study_key(s) for s in series.values()})
    if select is not None:
        if select not in keys:
            raise IntakeError(f"{folder}: no series of study {select} (patient|study UID); found {keys}")
        others = [s for s in series.values() if study_key(s) != select]
        series = {u: s for u, s in series.items() if study_key(s) == select}
        if others:
            messages.append(f"folder holds {len(keys)} studies; this is patient {select.split('|')[0]!r} study "
                            f"{select.split('|')[1]} ({len(series)} series; {len(others)} series of other studies left out)")
    elif len(keys) > 1:
        raise IntakeError(f"{folder}: holds {len(keys)} DICOM studies (patient|study UID: {', '.join(keys)}); "
                          "they are analysed one by one by `mm medical analyze`, never as one")
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
    # an empty folder (or one with only hidden entries) is one study, refused with a findings.json
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")) or [path]
