"""Uploaded results (POST /v1/results): safe extraction (zip-slip, absolute names, links, sizes,
file counts), validation with the result loaders, use as ``context`` and listing."""
from __future__ import annotations

import io
import json
import tarfile
import zipfile

import pytest
from fastapi.testclient import TestClient
from result_samples import FINDINGS, medical, social

from apps.dialogue.results.upload import UploadError, UploadStore, extract


class _NoModel:
    name, needs_image = "mmcore-scene-vlm", True


def _zip(folder, prefix="", extra=()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, prefix + str(p.relative_to(folder)))
        for name, data in extra:
            zf.writestr(name, data)
    return buf.getvalue()


def _tar(folder, arcname, mode="w:gz", extra=()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        tf.add(folder, arcname=arcname)
        for info in extra:
            tf.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return buf.getvalue()


@pytest.fixture
def client(tmp_path, monkeypatch):
    from apps.dialogue.server import create_app

    # the shipped n-gram parser (no sentence encoder to load): these tests are about uploads, not parsing
    monkeypatch.setattr("apps.dialogue.results.session.minilm_available", lambda: False)
    root = tmp_path / "root"
    medical(root / "med" / "s1")
    app = create_app(_NoModel(), tmp_path / "db" / "c.sqlite", results_root=root, max_upload_bytes=200_000)
    return TestClient(app), app


def test_upload_a_zip_then_talk_about_it_and_list_it(client, tmp_path):
    c, app = client
    folder = medical(tmp_path / "mine" / "study7", lesion={**FINDINGS["lesion"], "volume_ml": 12.25})
    r = c.post("/v1/results?name=study7", content=_zip(folder, "study7/"))
    assert r.status_code == 201, r.text
    meta = r.json()
    assert meta["id"].startswith("up-") and meta["kind"] == "medical" and meta["name"] == "study7"
    stored = app.state.results.uploads.root / meta["id"] / "result" / "findings.json"
    assert stored.is_file() and app.state.results.uploads.root == (tmp_path / "db" / "result-uploads").resolve()
    listing = c.get("/v1/results").json()["data"]
    assert {"path": "med/s1", "kind": "medical"} in listing
    assert {"upload": meta["id"], "kind": "medical", "name": "study7"} in listing
    ask = {"messages": [{"role": "user", "content": "how big is the lesion?"}], "context": {"upload": meta["id"]}}
    out = c.post("/v1/chat/completions", json=ask).json()
    assert out["program"] == "lesion.volume()" and out["result"]["value"] == 12.25
    assert out["context"] == {"upload": meta["id"], "kind": "medical"}
    follow = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "is the registration ok?"}],
                                                  "conversation_id": out["conversation_id"]}).json()
    assert follow["program"] == "registration.quality()"
    # the uploader's study path is never followed on the server: a picture says the images are absent
    pic = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "show me the lesion"}],
                                               "context": {"upload": meta["id"]}}).json()
    assert pic["images"] == [] and "/nonexistent" not in pic["choices"][0]["message"]["content"]
    # a social report as a tar.gz with the result at the archive's top
    soc = social(tmp_path / "soc")
    r = c.post("/v1/results", content=_tar(soc, "."))
    assert r.status_code == 201 and r.json()["kind"] == "social"
    top = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "who are the top 2 accounts by "
                                                                                         "pagerank?"}],
                                               "context": r.json()["context"]}).json()
    assert top["result"]["value"] == ["u1", "u2"]
    assert c.delete(f"/v1/results/{meta['id']}").json()["deleted"]
    assert c.post("/v1/chat/completions", json=ask).status_code == 404
    gone = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "and on the ct?"}],
                                                "conversation_id": out["conversation_id"]})
    assert gone.status_code == 404 and "no uploaded result" in gone.json()["error"]["message"]
    assert c.delete(f"/v1/results/{meta['id']}").status_code == 404


def _empty_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w"):
        pass
    return buf.getvalue()


def test_bad_uploads_get_clear_refusals_and_leave_nothing(client, tmp_path):
    c, app = client
    folder = medical(tmp_path / "s")
    outside = tmp_path / "evil.txt"
    link = tarfile.TarInfo("s/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    zlink = zipfile.ZipInfo("s/link")
    zlink.external_attr = (0o120777 << 16)
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("s/findings.json", json.dumps(FINDINGS))
        zf.writestr(zlink, "/etc/passwd")
    cases = [
        (_zip(folder, "s/", extra=[("../evil.txt", "pwned")]), 400, "'..' is not allowed"),         # zip-slip
        (_zip(folder, "s/", extra=[("/tmp/evil.txt", "pwned")]), 400, "absolute paths"),
        (_tar(folder, "s", extra=[link]), 400, "links are not allowed"),
        (zbuf.getvalue(), 400, "symbolic links"),
        (b"this is not an archive", 400, "not a readable zip or tar"),
        (b"", 400, "empty"),
        (_empty_zip(), 400, "the archive is empty"),                                                 # was a 500
        (_zip(tmp_path / "s", "a/b/"), 400, "holds no analysis result"),
        (_zip(medical(tmp_path / "m2", outputs={"mask_nifti": "../../../etc/passwd"})), 400, "points outside"),
        (_zip(medical(tmp_path / "m3", lesion={"volume_ml": "big"})), 400, "'lesion.volume_ml'"),
        (b"PK\x03\x04" + b"\0" * 300_000, 413, "over 200000 bytes"),                               # oversize body
    ]
    for body, status, words in cases:
        r = c.post("/v1/results", content=body)
        assert r.status_code == status, (words, r.text)
        message = r.json()["error"]["message"]
        assert words in message and str(tmp_path) not in message, message
    assert not outside.exists()
    assert [p.name for p in app.state.results.uploads.root.iterdir()] == []      # no partial uploads left
    assert c.get("/v1/results").json()["data"] == [{"path": "med/s1", "kind": "medical"}]
    for ctx, status in (({"upload": "up-0123456789abcdef"}, 404), ({"upload": "../med/s1"}, 400), ({"upload": 3}, 400)):
        r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "context": ctx})
        assert r.status_code == status, r.text


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_extraction_caps_count_what_is_written(tmp_path):
    folder = medical(tmp_path / "s")
    bomb = _zip(folder, extra=[("big.bin", b"\0" * 5_000_000)])          # compresses to a few kB
    assert len(bomb) < 50_000
    with pytest.raises(UploadError, match="unpacks to more than 1000000 bytes") as exc:
        extract(bomb, tmp_path / "x", max_total=1_000_000)
    assert exc.value.status == 413
    many = _zip(folder, extra=[(f"f{i}.txt", "x") for i in range(30)])
    with pytest.raises(UploadError, match="more than 10 files and folders"):
        extract(many, tmp_path / "y", max_files=10)
    twice = _zip(folder, extra=[("findings.json", "{}")])
    with pytest.raises(UploadError, match="appears twice"):
        extract(twice, tmp_path / "z")
    store = UploadStore(tmp_path / "store", max_uploads=1)
    store.add(_zip(folder))
    with pytest.raises(UploadError, match="at most 1 uploads") as exc:
        store.add(_zip(folder))
    assert exc.value.status == 507
