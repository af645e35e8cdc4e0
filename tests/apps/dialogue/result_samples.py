"""Small result folders in the exact layout of ``mm medical analyze`` / ``mm social analyze`` outputs
(fields copied from a real run on 2026-12-03), for tests of the serving mechanics (tools, uploads)
that do not need the pipelines to run."""
from __future__ import annotations

import json
from pathlib import Path

FINDINGS = {
    "status": "ok", "result": "lesion found", "diagnosis": "haemorrhage", "diagnosis_withheld": None, "flag": None,
    "input_kind": "nifti", "no_lesion_found": False, "messages": [],
    "intracranial_guard": {"icv_ml": 1881.4, "method": "CT bone threshold (HU > 250)", "removed_components": 0,
                           "removed_outside_ml": 0.0},
    "lesion": {"centroid_ras_mm": [17.0, 10.0, 35.9], "volume_ml": 5.886, "voxels": 1744,
               "location": "right hemisphere, 15 mm from the midline; 37 mm anterior and 27 mm superior of the "
                           "intracranial centroid (patient RAS; midline assumed through that centroid)"},
    "modalities_missing": [], "modalities_used": ["mr", "ct"], "reference_modality": "mr",
    "out_of_domain": {"distance": 1.655, "flagged": False, "pattern": "mr+ct", "reason": None, "threshold": 4.107},
    "outputs": {"report": "report.html"},
    "probabilities": {"calcified": 0.0164, "fatty": 0.0937, "haemorrhage": 0.8815, "ischemic": 0.0084},
    "registration": {"method": "SimpleITK Euler3D, Mattes MI (32 bins), 3 levels", "rotation_deg": 2.981,
                     "translation_mm": 6.738, "seconds": 1.985,
                     "quality": {"iterations": 29, "mi_header_only": -0.54688, "mi_registered": -0.83829,
                                 "passed": True, "reasons": []}},
    "study": "/nonexistent/studies/s1", "sources": {}, "series": {},
}


def medical(folder: Path, **changes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "findings.json").write_text(json.dumps({**FINDINGS, **changes}))
    (folder / "report.html").write_text("<html></html>")
    return folder


def social(folder: Path) -> Path:
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    users = pd.DataFrame({"user_id": ["u1", "u2", "u3", "u4"], "community": [0, 0, 1, 1],
                          "pagerank": [0.4, 0.3, 0.2, 0.1], "degree": [3, 2, 2, 1],
                          "participation": [0.5, 0.0, 0.4, 0.0], "bridge": [True, False, True, False]})
    users.to_parquet(folder / "user_analytics.parquet")
    (folder / "metrics.json").write_text(json.dumps({"n_posts": 12, "n_users": 4, "communities": 2,
                                                     "coordination_clusters": 0}))
    return folder
