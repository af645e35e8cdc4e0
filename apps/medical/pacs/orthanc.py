"""A throw-away local Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) for tests, the benchmark
and trying the PACS commands: HTTP and DICOM on free loopback ports, temporary storage, the
DICOMweb plugin, HTTP basic auth with one user, ``StableAge`` seconds before a study is "stable".
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from base64 import b64encode
from pathlib import Path

PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")


def orthanc_binary() -> str | None:
    return shutil.which("Orthanc")


def dicomweb_plugin() -> str | None:
    """The DICOMweb plugin of Debian's ``orthanc-dicomweb`` package, if installed."""
    for d in map(Path, PLUGIN_DIRS):
        if d.exists():
            for p in sorted(d.glob("libOrthancDicomWeb.so*")):
                return str(p)
    return None


def missing() -> str | None:
    """Why a local Orthanc cannot be started here (None when it can)."""
    if not orthanc_binary():
        return "Orthanc not installed (apt-get install -y orthanc orthanc-dicomweb; `make test` does it as root)"
    if not dicomweb_plugin():
        return "Orthanc's DICOMweb plugin not installed (apt-get install -y orthanc-dicomweb)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalOrthanc:
    """Start Orthanc in ``workdir``; ``url`` is its DICOMweb root, ``env`` the credentials to export."""

    def __init__(self, workdir: Path, *, user: str = "mm", password: str = "local-only", stable_age: int = 1,
                 http_port: int | None = None, dicom_port: int | None = None, aet: str = "ORTHANCTEST") -> None:
        why = missing()
        if why:
            raise RuntimeError(why)
        self.dir = Path(workdir)
        self.user, self.password, self.aet = user, password, aet
        self.http_port, self.dicom_port = http_port or free_port(), dicom_port or free_port()
        config = {
            "Name": "mmcore-local", "StorageDirectory": str(self.dir / "db"), "IndexDirectory": str(self.dir / "db"),
            "Plugins": [dicomweb_plugin()], "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": aet,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": True, "RegisteredUsers": {user: password},
            "StableAge": stable_age, "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}, "OrthancExplorerEnabled": True,
            "WebDavEnabled": False, "ConcurrentJobs": 1, "DicomCheckCalledAet": False, "SaveJobs": False,
        }
        (self.dir / "db").mkdir(parents=True, exist_ok=True)
        (self.dir / "orthanc.json").write_text(json.dumps(config, indent=1))
        self._log = open(self.dir / "orthanc.log", "wb")
        self.proc = subprocess.Popen([orthanc_binary(), str(self.dir / "orthanc.json")], cwd=self.dir,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        self.root = f"http://127.0.0.1:{self.http_port}"
        self.url = f"{self.root}/dicom-web"
        deadline = time.time() + 30
        while True:
            try:
                self.get("/system")
                return
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise RuntimeError(f"Orthanc did not start: {(self.dir / 'orthanc.log').read_text()[-800:]}") from None
                time.sleep(0.2)

    @property
    def env(self) -> dict[str, str]:
        return {"MM_PACS_USER": self.user, "MM_PACS_PASSWORD": self.password}

    def request(self, method: str, path: str, data: bytes | None = None, raw: bool = False):
        req = urllib.request.Request(self.root + path, data=data, method=method)
        req.add_header("Authorization", "Basic " + b64encode(f"{self.user}:{self.password}".encode()).decode())
        with urllib.request.urlopen(req, timeout=60) as r:
            body = r.read()
        return body if raw else (json.loads(body) if body else None)

    def get(self, path: str):
        return self.request("GET", path)

    def upload(self, folder: Path) -> int:
        """POST every ``*.dcm`` under ``folder`` to ``/instances``; returns how many."""
        files = sorted(Path(folder).rglob("*.dcm"))
        for p in files:
            self.request("POST", "/instances", p.read_bytes())
        return len(files)

    def series_of(self, study_uid: str) -> list[dict]:
        """[{modality, description, instances, series_uid, id}] of one study (Orthanc REST)."""
        found = self.request("POST", "/tools/lookup", study_uid.encode())
        studies = [f for f in found or [] if f.get("Type") == "Study"]
        if not studies:
            return []
        out = []
        for sid in self.get(f"/studies/{studies[0]['ID']}")["Series"]:
            s = self.get(f"/series/{sid}")
            t = s["MainDicomTags"]
            out.append({"modality": t.get("Modality"), "description": t.get("SeriesDescription", ""),
                        "instances": len(s["Instances"]), "series_uid": t.get("SeriesInstanceUID"), "id": sid})
        return out

    def instance_files(self, series_id: str) -> list[bytes]:
        return [self.request("GET", f"/instances/{i}/file", raw=True) for i in self.get(f"/series/{series_id}")["Instances"]]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()
