"""PACS parts that need no archive: credentials, error messages, the ledger's exactly-once rules,
shards, result identity and the SR content (both with probabilities and withheld)."""
from __future__ import annotations

import time

import pytest

FINDINGS = {"status": "ok", "result": "lesion found", "probabilities": {"ischemic": 0.7, "haemorrhage": 0.1, "fatty": 0.15,
                                                                        "calcified": 0.05},
            "diagnosis": "ischemic", "diagnosis_withheld": None, "flag": None,
            "lesion": {"volume_ml": 2.5, "voxels": 40, "centroid_ras_mm": [12.0, -20.0, 15.0],
                       "location": "right hemisphere, 12 mm from the midline"}}


def test_credentials_come_from_env_or_netrc_never_the_url(tmp_path):
    from apps.medical.pacs.credentials import CredentialError, auth_for, check_url, redact

    url = "http://pacs.example:8042/dicom-web"
    assert auth_for(url, {"MM_PACS_USER": "u", "MM_PACS_PASSWORD": "p"}) == ("basic", ("u", "p"))
    assert auth_for(url, {"MM_PACS_TOKEN": "t"}) == ("bearer", "t")
    netrc = tmp_path / "netrc"
    netrc.write_text("machine pacs.example login alice password wonder\n")
    netrc.chmod(0o600)
    assert auth_for(url, {"MM_PACS_NETRC": str(netrc)}) == ("basic", ("alice", "wonder"))
    assert auth_for("http://other:1/x", {"MM_PACS_NETRC": str(netrc)}) is None
    with pytest.raises(CredentialError, match="MM_PACS_PASSWORD"):
        auth_for(url, {"MM_PACS_USER": "u"})
    with pytest.raises(CredentialError, match="not accepted") as err:
        check_url("http://bob:hunter2@pacs.example:8042/dicom-web")
    assert "hunter2" not in str(err.value)
    assert redact("https://bob:hunter2@pacs.example:8042/dicom-web?x=1") == "https://pacs.example:8042/dicom-web"


def test_unreachable_archive_is_one_clear_transient_error():
    from apps.medical.pacs.archive import Archive, ArchiveError
    from apps.medical.pacs.orthanc import free_port

    archive = Archive(f"http://127.0.0.1:{free_port()}/dicom-web", environ={"MM_PACS_USER": "u", "MM_PACS_PASSWORD": "sekrit"},
                      timeout=5)
    with pytest.raises(ArchiveError) as err:
        archive.find_studies({"PatientID": "x"})
    assert err.value.transient and "archive unreachable" in str(err.value) and "sekrit" not in str(err.value)


def test_ledger_claims_once_backs_off_and_resumes_own_claims(tmp_path):
    from apps.medical.pacs.ledger import BACKOFF_S, Ledger

    a, b = Ledger(tmp_path / "l.sqlite", "a"), Ledger(tmp_path / "l.sqlite", "b")
    assert a.enqueue("1.2.3", "v1") and not a.enqueue("1.2.3", "v1")
    assert a.claim("1.2.3", "v1") and not b.claim("1.2.3", "v1")          # one owner at a time
    a.close()
    a = Ledger(tmp_path / "l.sqlite", "a")                                 # "killed" and restarted
    assert a.pending("v1") == ["1.2.3"] and a.claim("1.2.3", "v1")
    a.finish("1.2.3", "v1", "failed", error="HTTP 500")
    state = a.state("1.2.3", "v1")
    assert state["state"] == "failed" and state["next_try"] >= time.time() + BACKOFF_S - 1 and not a.claim("1.2.3", "v1")
    assert a.claim("1.2.3", "v1", force=True)
    a.finish("1.2.3", "v1", "done")
    assert not a.claim("1.2.3", "v1") and not b.claim("1.2.3", "v1") and a.pending("v1") == []
    assert a.claim("1.2.3", "v2")                                          # a new model version is new work
    assert a.state("1.2.3", "v1")["runs"] == 1


def test_shards_are_stable_and_cover_every_study():
    from apps.medical.pacs.ledger import parse_shard, shard_of

    uids = [f"1.2.826.0.1.{i}" for i in range(400)]
    counts = [sum(shard_of(u, 3) == k for u in uids) for k in range(3)]
    assert sum(counts) == 400 and min(counts) > 100                     # every study in exactly one shard, balanced
    assert shard_of("1.2.3.4", 2) == shard_of("1.2.3.4", 2) == int.from_bytes(
        __import__("hashlib").sha256(b"1.2.3.4").digest()[:8], "big") % 2
    assert parse_shard("1/2") == (1, 2)
    for bad in ("2/2", "x", "1/0"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


def test_result_uids_are_deterministic_and_force_makes_new_ones():
    from apps.medical.pacs.results import result_uids

    one, again, forced = result_uids("1.2.3", "v"), result_uids("1.2.3", "v"), result_uids("1.2.3", "v", "nonce")
    assert one == again and not set(one.values()) & set(forced.values()) and len(set(one.values())) == 4
    assert result_uids("1.2.3", "w") != one


@pytest.mark.parametrize("withheld", [None, "out of domain: intensities unlike the training studies"])
def test_sr_carries_findings_or_says_withheld_with_the_reason(withheld, tmp_path):
    import numpy as np
    import pydicom

    from apps.medical.dicom_io import new_study, write_series
    from apps.medical.pacs.results import build_sr, read_report, result_uids

    write_series(np.zeros((4, 4, 2)), np.eye(4), tmp_path, modality="MR", study=new_study("UNIT"))
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(tmp_path.glob("*.dcm"))]
    findings = dict(FINDINGS, diagnosis_withheld=withheld, probabilities=None if withheld else FINDINGS["probabilities"],
                    diagnosis=None if withheld else "ischemic")
    report = read_report(build_sr(findings, None, sources, "0.1.0+abc", result_uids("1.2.3", "0.1.0+abc")))
    assert report["measurements"]["Volume"] == 2.5 and report["algorithm"]["version"] == "0.1.0+abc"
    assert report["finding_sites"] == [("Brain", "Right")]
    assert report["texts"]["Lesion location"] == FINDINGS["lesion"]["location"]
    if withheld:
        assert report["evaluations"]["Most likely lesion class"] == "withheld"
        assert report["texts"]["Reason withheld"] == withheld
        assert not [k for k in report["measurements"] if k.startswith("Probability")]
    else:
        assert {k: v for k, v in report["measurements"].items() if k.startswith("Probability")} == {
            f"Probability of {k}": v for k, v in FINDINGS["probabilities"].items()}
        assert report["evaluations"]["Most likely lesion class"] == "ischemic"


class _Streamed:
    """A requests.Response stand-in: ``body`` delivered in ``chunk``-byte pieces."""

    def __init__(self, body: bytes, content_type: str, chunk: int) -> None:
        self.body, self.headers, self.chunk = body, {"Content-Type": content_type}, chunk

    def iter_content(self, chunk_size):
        for i in range(0, len(self.body), self.chunk):
            yield self.body[i:i + self.chunk]

    @property
    def content(self) -> bytes:
        return self.body


def test_multipart_parts_are_split_exactly_whatever_the_chunking_and_a_cut_stream_is_an_error():
    import numpy as np

    from apps.medical.pacs.archive import ArchiveError, iter_parts

    rng = np.random.default_rng(0)
    # bodies that contain CRLF, "--" and a near-miss of the boundary must come back byte for byte
    parts = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() + b"\r\n--bnd12\r\n--" for n in (0, 1, 700, 3000)]
    ctype = 'multipart/related; type="application/dicom"; boundary="bnd123"'
    body = b"".join(b"--bnd123\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n" for p in parts) + b"--bnd123--\r\n"
    for chunk in (1, 3, 64, len(body)):
        assert list(iter_parts(_Streamed(body, ctype, chunk))) == parts
    # a preamble and a part without headers
    assert list(iter_parts(_Streamed(b"preamble\r\n--b\r\n\r\nABC\r\n--b--", "multipart/related; boundary=b", 2))) == [b"ABC"]
    # a non-compliant archive answering one bare instance
    assert list(iter_parts(_Streamed(b"DICOMBYTES", "application/dicom", 4))) == [b"DICOMBYTES"]
    with pytest.raises(ArchiveError, match="mid-stream") as cut:
        list(iter_parts(_Streamed(body[: len(body) // 2], ctype, 50)))
    assert cut.value.transient
    with pytest.raises(ArchiveError, match="not multipart/related") as wrong:
        list(iter_parts(_Streamed(b"{}", "application/json", 2)))
    assert not wrong.value.transient


def test_auto_feed_is_decided_only_on_an_answer(monkeypatch, tmp_path):
    """A watcher started while the archive is down must not settle for QIDO (which only looks at
    recent StudyDates): it asks again on each poll and takes Orthanc's change log once it answers;
    `--once` against an unreachable archive exits 1."""
    from apps.medical.pacs.archive import Archive, ArchiveError
    from apps.medical.pacs.ledger import Ledger
    from apps.medical.pacs.orthanc import free_port
    from apps.medical.pacs.watch import OrthancChanges, Watcher

    class NoWorker:
        version = "test"

    archive = Archive(f"http://127.0.0.1:{free_port()}/dicom-web", environ={}, timeout=5)
    watcher = Watcher(archive, NoWorker(), Ledger(tmp_path / "ledger.sqlite", "t"), interval=0.01)
    assert watcher.feed is None and watcher.feed_name.startswith("auto")
    with pytest.raises(ArchiveError, match="probe for Orthanc's change log: archive unreachable") as err:
        watcher.cycle()
    assert err.value.transient and watcher.feed is None
    assert watcher.run(once=True) == 1
    monkeypatch.setattr(OrthancChanges, "probe", lambda self: True)        # the archive is back: an Orthanc
    with pytest.raises(ArchiveError, match="read the change log"):           # (still nothing listening here)
        watcher.cycle()
    assert watcher.feed_name == "orthanc"
