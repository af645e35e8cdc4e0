"""Support for the PACS tests (no tests here): a small synthetic MR+CT DICOM study, a real Orthanc
(apps.medical.pacs.orthanc) with test credentials, and a fault-injecting HTTP proxy in front of it."""
from __future__ import annotations

import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

USER, PASSWORD = "mmtest", "pacs-test-secret"


def skip_reason() -> str | None:
    from apps.medical.pacs.orthanc import missing

    return missing()


def head_volumes(seed: int = 0, lesion_center=(20, 22, 18)):
    """A blob MR (medical_helpers.blob_volume) and a CT of the same head with a skull shell (HU 1000),
    brain ~35 HU and a hyperdense lesion, air outside: enough for the CT-threshold intracranial guard."""
    import numpy as np
    from medical_helpers import blob_volume

    mr, lesion = blob_volume(seed=seed, lesion_center=lesion_center, radius=2.5)
    shape = mr.shape
    idx = np.indices(shape).astype(np.float32)
    c = (np.array(shape) - 1) / 2
    r = np.sqrt(sum(((idx[i] - c[i]) / (0.42 * shape[i])) ** 2 for i in range(3)))
    rng = np.random.default_rng(seed)
    ct = np.where(r < 0.86, 35.0 + 45.0 * lesion + rng.normal(0, 3, shape), np.where(r < 1.0, 1000.0, -1000.0))
    return mr, ct.astype(np.float32)


def write_study(root: Path, patient: str, seed: int = 0, lesion_center=(20, 22, 18), ct: bool = True) -> dict:
    """A small head-like MR (+ CT) DICOM study (4 mm grid, 36 slices each); returns UIDs and folders."""
    from medical_helpers import affine_for
    from pydicom.uid import generate_uid

    from apps.medical.dicom_io import new_study, write_series

    study = new_study(patient)
    mr, ct_hu = head_volumes(seed, lesion_center)
    aff = affine_for(spacing=(4.0, 4.0, 4.0), origin=(-80.0, -88.0, -72.0))     # an adult-sized head
    for_uid = generate_uid()
    folder = Path(root) / patient
    series = {"mr": write_series(mr, aff, folder / "MR", modality="MR", study=study, series_number=1,
                                 description="T1 MPRAGE", for_uid=for_uid)}
    if ct:
        series["ct"] = write_series(ct_hu, aff, folder / "CT", modality="CT", study=study, series_number=2,
                                    description="CT head", for_uid=for_uid)
    return {"study_uid": study["StudyInstanceUID"], "patient": patient, "folder": folder, "series": series}


def start_orthanc(workdir: Path):
    from apps.medical.pacs.orthanc import LocalOrthanc

    return LocalOrthanc(workdir, user=USER, password=PASSWORD)


class FaultProxy:
    """An HTTP proxy in front of the archive that can answer a fixed status or cut a response short.

    ``mode``: None (pass through), an int (answer that HTTP status to every request), or
    ``"cut"`` (WADO-RS instance data: send the headers and ~half the body, then close)."""

    def __init__(self, target: str) -> None:
        """``target``: the archive's server root (``http://host:port``); ``url`` is our DICOMweb root."""
        self.target, self.mode = target.rstrip("/"), None
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _forward(self):
                if isinstance(proxy.mode, int):
                    self.send_response(proxy.mode)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
                req = urllib.request.Request(proxy.target + self.path, data=body, method=self.command)
                for k, v in self.headers.items():
                    if k.lower() not in ("host", "content-length", "connection", "accept-encoding"):
                        req.add_header(k, v)
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        status, headers, data = r.status, r.headers, r.read()
                except urllib.error.HTTPError as e:
                    status, headers, data = e.code, e.headers, e.read()
                cut = proxy.mode == "cut" and "multipart" in headers.get("Content-Type", "") and len(data) > 1000
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2] if cut else data)
                if cut:
                    self.close_connection = True

            do_GET = do_POST = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/dicom-web"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
