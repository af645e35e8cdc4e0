"""Result folders -> typed contexts a conversation is grounded in.

* :class:`MedicalContext`: a ``mm medical analyze`` output folder for one study: ``findings.json``
  (required), ``lesion_mask.nii.gz`` (read on demand, for pictures) and the study's own images
  (found through ``findings["study"]``, read on demand).
* :class:`SocialContext`: a ``mm social analyze`` output folder: ``user_analytics.parquet``
  (required), ``metrics.json`` (required), ``users.graphml`` (the account graph, read on demand),
  ``post_predictions.parquet`` and, where the analysis ingested raw files, ``data/posts.parquet``
  (hashtags and times) and ``data/users.parquet`` (usernames).

:func:`load_context` tells the kinds apart and raises :class:`ResultError` naming the file and
field that is missing or wrong, never a bare traceback.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

MEDICAL_REQUIRED = ("status", "lesion", "modalities_used", "modalities_missing")
# "incomplete": analysed, but one of the output files could not be written (findings say which)
ANALYSED = ("ok", "incomplete")
SOCIAL_USER_COLUMNS = ("user_id", "community", "pagerank", "degree", "bridge")


class ResultError(ValueError):
    """A folder that is not an analysis result (the message names the file and field)."""


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultError(f"{path}: file missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ResultError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


@dataclass
class MedicalContext:
    folder: Path
    findings: dict
    kind: str = "medical"
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def ok(self) -> bool:
        return self.findings.get("status") in ANALYSED

    @property
    def mask_path(self) -> Path | None:
        rel = (self.findings.get("outputs") or {}).get("mask_nifti")
        path = self.folder / rel if rel else None
        return path if path is not None and path.exists() else None

    def mask(self):
        """(mask [I, J, K] bool, RAS affine) on the reference modality's native grid."""
        import nibabel as nib
        import numpy as np

        if "mask" in self._cache:
            return self._cache["mask"]
        if self.mask_path is None:
            raise ResultError(f"{self.folder}: no lesion mask (findings.json 'outputs.mask_nifti' missing or file absent)")
        img = nib.load(str(self.mask_path))
        self._cache["mask"] = np.asarray(img.dataobj) > 0, np.asarray(img.affine, float)
        return self._cache["mask"]

    def image(self, modality: str):
        """(array [I, J, K], RAS affine) of ``modality`` read from the study the findings name, or a
        ResultError saying why it cannot be (moved study, missing modality)."""
        import numpy as np

        from apps.medical.intake import IntakeError, read_study
        from apps.medical.transforms import load_volume

        if modality in self._cache:
            return self._cache[modality]
        study = self.findings.get("study")
        if not study and self.findings.get("uploaded_study_path"):
            raise ResultError("an uploaded result carries no study images (only its mask and findings)")
        if not study:
            raise ResultError("findings.json names no study folder ('study'), so its images cannot be read")
        if not Path(study).exists():
            hint = "" if Path(study).is_absolute() else " (a relative path: run from the folder where it was analysed)"
            raise ResultError(f"the study's images are not at {study!r} (findings.json 'study'){hint}")
        try:
            sources = read_study(Path(study)).sources
            if modality not in sources:
                raise ResultError(f"the study at {study} has no {modality.upper()}")
            img = load_volume(sources[modality], modality)
        except IntakeError as exc:
            raise ResultError(f"the study's images cannot be read: {exc}") from None
        self._cache[modality] = np.asarray(img[0].numpy(), np.float32), np.asarray(img.affine, float)
        return self._cache[modality]


@dataclass
class SocialContext:
    folder: Path
    users: object                      # pandas DataFrame: user_analytics.parquet (+ username)
    metrics: dict
    kind: str = "social"
    names: dict = field(default_factory=dict)        # user_id -> username

    @property
    def name(self) -> str:
        return self.folder.name

    @cached_property
    def graph(self):
        """The directed account graph (networkx, from users.graphml; users.gexf as a fallback)."""
        import networkx as nx

        for fname, reader in (("users.graphml", nx.read_graphml), ("users.gexf", nx.read_gexf)):
            path = self.folder / fname
            if path.exists():
                try:
                    return reader(path)
                except Exception as exc:  # noqa: BLE001 - a corrupt graph file: say which
                    raise ResultError(f"{path}: cannot be read as a graph ({type(exc).__name__}: {exc})") from None
        raise ResultError(f"{self.folder}: no account graph (users.graphml or users.gexf)")

    @cached_property
    def posts(self):
        """Posts with ``created_at`` and ``hashtags`` (data/posts.parquet), or None when the report has none."""
        import pandas as pd

        path = self.folder / "data" / "posts.parquet"
        if not path.exists():
            return None
        frame = pd.read_parquet(path, columns=None)
        for col in ("created_at", "hashtags"):
            if col not in frame:
                raise ResultError(f"{path}: column '{col}' missing")
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
        return frame

    @cached_property
    def hashtags(self) -> list[str]:
        posts = self.posts
        if posts is None:
            return []
        tags = {str(t).lower().lstrip("#") for ts in posts.hashtags if ts is not None for t in ts}
        return sorted(tags)

    def user_id(self, name: str) -> str | None:
        """A user id from an id or a username (case-insensitive, '@' optional)."""
        key = name.lower().lstrip("@")
        return self._lookup.get(key)

    @cached_property
    def _lookup(self) -> dict:
        table = {str(u).lower(): str(u) for u in self.users.user_id}
        table.update({str(n).lower(): str(u) for u, n in self.names.items()})
        return table

    def display(self, user_id: str) -> str:
        return self.names.get(user_id, user_id)


def load_medical(folder: Path) -> MedicalContext:
    path = folder / "findings.json"
    if not path.exists():
        raise ResultError(f"{path}: file missing (not a `mm medical analyze` output folder; for a folder of studies "
                          "pick one study's subfolder)")
    findings = _read_json(path)
    if "status" not in findings:
        raise ResultError(f"{path}: field 'status' missing (not a `mm medical analyze` findings file)")
    if findings["status"] in ANALYSED:
        for key in MEDICAL_REQUIRED:
            if key not in findings:
                raise ResultError(f"{path}: field '{key}' missing")
        lesion = findings["lesion"]
        if not isinstance(lesion, dict) or not isinstance(lesion.get("volume_ml"), (int, float)):
            raise ResultError(f"{path}: field 'lesion.volume_ml' missing or not a number")
    return MedicalContext(folder, findings)


def load_social(folder: Path) -> SocialContext:
    import pandas as pd

    path = folder / "user_analytics.parquet"
    if not path.exists():
        raise ResultError(f"{path}: file missing (not a `mm social analyze` report folder)")
    try:
        users = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - corrupt Parquet: name the file
        raise ResultError(f"{path}: cannot be read as Parquet ({type(exc).__name__}: {exc})") from None
    for col in SOCIAL_USER_COLUMNS:
        if col not in users:
            raise ResultError(f"{path}: column '{col}' missing")
    users = users.assign(user_id=users.user_id.astype(str))
    metrics = _read_json(folder / "metrics.json")
    names = {}
    raw_users = folder / "data" / "users.parquet"
    if raw_users.exists():
        table = pd.read_parquet(raw_users, columns=["user_id", "username"])
        names = {str(u): str(n) for u, n in zip(table.user_id, table.username) if isinstance(n, str) and n}
    return SocialContext(folder, users, metrics, names=names)


def load_context(folder: str | Path, kind: str | None = None) -> MedicalContext | SocialContext:
    """A result folder -> its context; ``kind`` ("medical"/"social") or guessed from the files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ResultError(f"{folder}: not a folder" if folder.exists() else f"{folder}: no such folder")
    if kind is None:
        if (folder / "findings.json").exists():
            kind = "medical"
        elif (folder / "user_analytics.parquet").exists():
            kind = "social"
        else:
            raise ResultError(f"{folder}: not an analysis result (neither findings.json, from `mm medical analyze`, "
                              "nor user_analytics.parquet, from `mm social analyze`)")
    if kind == "medical":
        return load_medical(folder)
    if kind == "social":
        return load_social(folder)
    raise ResultError(f"unknown result kind {kind!r} (medical or social)")
