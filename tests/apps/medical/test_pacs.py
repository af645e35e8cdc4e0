"""PACS in and out against a real Orthanc (Debian's orthanc + orthanc-dicomweb): watch picks up a
study, SEG and SR land in the same study and read back with highdicom, a second cycle does nothing,
a killed watcher redoes its study exactly once, two shards split the studies, the DIMSE listener
receives a study and delivers results, and bad archives/studies give clear messages without
stopping anything. Skipped, with the reason, where Orthanc is not installed."""
from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from test_pacs_support import FaultProxy, skip_reason, start_orthanc, write_study

from apps.medical.pacs.orthanc import free_port

pytestmark = [pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or ""), pytest.mark.slow]


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def env(orthanc):
    return orthanc.env


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    import torch

    from apps.medical.analyze import load_model
    from apps.medical.bundle import DEFAULT_BUNDLE
    from apps.medical.pacs.worker import Worker

    if not (DEFAULT_BUNDLE / "models" / "model.safetensors").exists():
        pytest.skip("shipped model bundle missing (data/medical/model)")
    torch.set_num_threads(1)
    return Worker(load_model(), DEFAULT_BUNDLE, tmp_path_factory.mktemp("results"), register=False)


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("studies")
    return [write_study(root, f"PACS{i}", seed=i) for i in range(3)]


def make_watcher(orthanc, worker, ledger_path, owner="w", shard=(0, 1), url=None, environ=None, interval=0.2):
    from apps.medical.pacs.archive import Archive
    from apps.medical.pacs.ledger import Ledger
    from apps.medical.pacs.watch import Watcher

    archive = Archive(url or orthanc.url, environ=orthanc.env if environ is None else environ)
    return Watcher(archive, worker, Ledger(ledger_path, owner), shard=shard, feed="orthanc", interval=interval)


def cycle_until(watchers, study_uids, timeout=60.0):
    """Poll (as the watch loop does) until every study in ``study_uids`` has an outcome."""
    seen: dict[str, list] = {}
    end = time.time() + timeout
    while time.time() < end and not set(study_uids) <= set(seen):
        for w in watchers:
            for out in w.cycle():
                seen.setdefault(out["study"], []).append((w.ledger.owner, out["outcome"]))
        time.sleep(0.3)
    return seen


def ours(orthanc, study_uid):
    series = orthanc.series_of(study_uid)
    return ([s for s in series if s["modality"] == "SEG"], [s for s in series if s["modality"] == "SR"])


def test_watch_end_to_end_seg_and_sr_read_back(orthanc, worker, studies, tmp_path):
    import highdicom as hd
    import pydicom

    from apps.medical.pacs.results import read_report

    study = studies[0]
    orthanc.upload(study["folder"])
    watcher = make_watcher(orthanc, worker, tmp_path / "ledger.sqlite")
    seen = cycle_until([watcher], [study["study_uid"]])
    assert seen.get(study["study_uid"]) == [("w", "done")], (seen, watcher.log)
    segs, srs = ours(orthanc, study["study_uid"])
    assert len(segs) == 1 and len(srs) == 1 and worker.version in segs[0]["description"]
    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(io.BytesIO(orthanc.instance_files(segs[0]["id"])[0])))
    mr = {str(d.SOPInstanceUID): d for d in (pydicom.dcmread(p, stop_before_pixels=True)
                                               for p in (study["folder"] / "MR").glob("*.dcm"))}
    assert seg.NumberOfFrames == len(mr)                       # one SEG frame per source slice
    for frame in seg.PerFrameFunctionalGroupsSequence:         # ... at that slice's position
        src = mr[frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        assert [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient] == \
            pytest.approx([float(v) for v in src.ImagePositionPatient], abs=1e-3)
    assert seg.FrameOfReferenceUID == next(iter(mr.values())).FrameOfReferenceUID
    findings = json.loads((worker.out_root / study["study_uid"] / "findings.json").read_text())
    # the download folder is gone: the findings name the study by its address in the archive
    assert findings["study"].endswith(f"/studies/{study['study_uid']}") and "mm-pacs-" not in json.dumps(findings)
    assert int(seg.pixel_array.sum()) == findings["lesion"]["voxels"]
    report = read_report(pydicom.dcmread(io.BytesIO(orthanc.instance_files(srs[0]["id"])[0])))
    assert report["measurements"]["Volume"] == pytest.approx(findings["lesion"]["volume_ml"])
    if findings.get("probabilities"):
        for name, p in findings["probabilities"].items():
            assert report["measurements"][f"Probability of {name}"] == pytest.approx(p)
        assert report["evaluations"]["Most likely lesion class"] == findings["diagnosis"]
    else:       # withheld (e.g. no lesion inside the intracranial volume): said so, with the reason, no numbers
        assert report["evaluations"]["Most likely lesion class"] == "withheld"
        assert report["texts"]["Reason withheld"] == findings["diagnosis_withheld"]
        assert not [k for k in report["measurements"] if k.startswith("Probability")]
    assert report["texts"]["Analysis status"] == findings["status"]
    assert report["segment"] == seg.SOPInstanceUID and report["algorithm"]["version"] == worker.version
    # a second cycle: our own SEG/SR made the study "stable" again; nothing is redone
    time.sleep(2.5)
    assert [o for o in watcher.cycle() if o["outcome"] == "done"] == []
    assert [len(x) for x in ours(orthanc, study["study_uid"])] == [1, 1]


def test_download_writes_the_archived_instances_unchanged(orthanc, tmp_path):
    import numpy as np
    import pydicom

    from apps.medical.pacs.archive import Archive

    study = write_study(tmp_path, "PULL1", seed=31)
    orthanc.upload(study["folder"])
    stats = Archive(orthanc.url, environ=orthanc.env).download_study(study["study_uid"], tmp_path / "pulled")
    sent = {str(d.SOPInstanceUID): d for d in map(pydicom.dcmread, sorted(study["folder"].rglob("*.dcm")))}
    got = {str(d.SOPInstanceUID): d for d in map(pydicom.dcmread, sorted((tmp_path / "pulled").rglob("*.dcm")))}
    assert stats["instances"] == len(sent) == len(got) and set(got) == set(sent)
    assert not list((tmp_path / "pulled").rglob("*.part"))
    for uid, d in got.items():
        assert np.array_equal(d.pixel_array, sent[uid].pixel_array)
        assert d.SeriesInstanceUID == sent[uid].SeriesInstanceUID and d.ImagePositionPatient == sent[uid].ImagePositionPatient


def test_killed_watcher_redoes_its_study_exactly_once(orthanc, worker, studies, tmp_path):
    from apps.medical.pacs.archive import Archive

    a, b = studies[1], studies[2]
    for s in (a, b):
        orthanc.upload(s["folder"])
    first = make_watcher(orthanc, worker, tmp_path / "ledger.sqlite", owner="host:shard0of1")
    archive = Archive(orthanc.url, environ=orthanc.env)
    # killed after claiming a, before anything was stored; killed after storing b's results, before
    # the ledger heard of it (the worst moment)
    first.ledger.enqueue(a["study_uid"], worker.version)
    assert first.ledger.claim(a["study_uid"], worker.version)
    first.ledger.enqueue(b["study_uid"], worker.version)
    assert first.ledger.claim(b["study_uid"], worker.version)
    assert worker.process(archive, b["study_uid"])["outcome"] == "done"
    first.ledger.close()
    restarted = make_watcher(orthanc, worker, tmp_path / "ledger.sqlite", owner="host:shard0of1")
    seen = cycle_until([restarted], [a["study_uid"], b["study_uid"]])
    assert seen[a["study_uid"]] == [("host:shard0of1", "done")] and seen[b["study_uid"]] == [("host:shard0of1", "skipped")]
    for s in (a, b):
        assert [len(x) for x in ours(orthanc, s["study_uid"])] == [1, 1]
        assert restarted.ledger.state(s["study_uid"], worker.version)["state"] == "done"
    # another test's study in the shared archive may become stable and be analysed now; a and b must not be redone
    assert not {o["study"] for o in restarted.cycle()} & {a["study_uid"], b["study_uid"]}


def test_two_shards_split_the_studies(orthanc, worker, studies, tmp_path):
    from apps.medical.pacs.ledger import shard_of

    batch = [write_study(tmp_path, f"SHARD{i}", seed=10 + i) for i in range(3)]
    for s in batch:
        orthanc.upload(s["folder"])
    w0 = make_watcher(orthanc, worker, tmp_path / "l0.sqlite", owner="a", shard=(0, 2))
    w1 = make_watcher(orthanc, worker, tmp_path / "l1.sqlite", owner="b", shard=(1, 2))
    uids = [s["study_uid"] for s in batch]
    seen = cycle_until([w0, w1], uids, timeout=120)
    done = {u: [o for o in seen.get(u, []) if o[1] == "done"] for u in uids}
    assert all(len(v) == 1 for v in done.values()), seen
    assert {u for u, v in done.items() if v[0][0] == "a"} == {u for u in uids if shard_of(u, 2) == 0}
    for u in uids:
        assert [len(x) for x in ours(orthanc, u)] == [1, 1]


def test_dimse_listener_receives_a_study_and_delivers_results(orthanc, worker, tmp_path):
    from pydicom import dcmread
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage, MRImageStorage

    from apps.medical.pacs.listen import DimseSink, Listener

    study = write_study(tmp_path, "DIMSE1", seed=11)
    listener = Listener(worker, DimseSink(f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}"), tmp_path / "inbox",
                        port=0, idle=0.5)
    listener.start()
    try:
        scu = AE(ae_title="MODALITY")
        for sop_class in (MRImageStorage, CTImageStorage):
            scu.add_requested_context(sop_class)
        assoc = scu.associate("127.0.0.1", listener.port, ae_title="MMCORE")
        assert assoc.is_established
        files = sorted(study["folder"].rglob("*.dcm"))
        statuses = [assoc.send_c_store(dcmread(p)).Status for p in files]
        assoc.release()
        assert set(statuses) == {0}
        end, outs = time.time() + 60, []
        while time.time() < end and not outs:
            time.sleep(0.3)
            outs = listener.process_idle()
    finally:
        listener.shutdown()
    assert [o["outcome"] for o in outs] == ["done"], outs
    assert [len(x) for x in ours(orthanc, study["study_uid"])] == [1, 1]
    assert not (tmp_path / "inbox" / study["study_uid"]).exists()     # delivered, so the inbox copy is gone
    findings = json.loads(Path(outs[0]["findings"]).read_text())    # ... and the findings do not name it
    assert findings["study"] == f"dicom://{listener.aet}@{listener.host}:{listener.port}/studies/{study['study_uid']}"


def test_bad_archives_and_studies_give_clear_messages_and_lose_nothing(orthanc, worker, tmp_path, caplog):
    import logging

    from pydicom.data import get_testdata_file

    from apps.medical.pacs.archive import Archive
    from apps.medical.pacs.ledger import Ledger

    caplog.set_level(logging.INFO, logger="apps")
    # unreachable archive and wrong credentials: the loop logs one line per poll and keeps going;
    # run() says 1 when its last poll failed (`--once` / `--max-cycles` in a script)
    dead = make_watcher(orthanc, worker, tmp_path / "dead.sqlite", url=f"http://127.0.0.1:{free_port()}/dicom-web")
    assert dead.run(max_cycles=2) == 1
    wrong = make_watcher(orthanc, worker, tmp_path / "wrong.sqlite", environ={"MM_PACS_USER": "mmtest",
                                                                              "MM_PACS_PASSWORD": "not-the-password"})
    assert wrong.run(max_cycles=2) == 1
    text = caplog.text
    assert "archive unreachable" in text and "HTTP 401 (credentials rejected" in text
    assert "not-the-password" not in text and "pacs-test-secret" not in text
    archive = Archive(orthanc.url, environ=orthanc.env)
    out = worker.process(archive, "1.2.3.999")
    assert out["outcome"] == "refused" and "not found" in out["message"]
    # a study whose instances are not images (an RT plan) and one whose only image is a single slice
    for name in ("rtplan.dcm", "CT_small.dcm"):
        orthanc.request("POST", "/instances", open(get_testdata_file(name), "rb").read())
    from pydicom import dcmread

    rt, ct1 = (str(dcmread(get_testdata_file(n)).StudyInstanceUID) for n in ("rtplan.dcm", "CT_small.dcm"))
    out = worker.process(archive, rt)
    assert out["outcome"] == "refused" and "no image series" in out["message"]
    out = worker.process(archive, ct1)
    assert out["outcome"] == "refused" and "only 1 slice" in out["message"]
    # HTTP 500 and a transfer cut mid-stream: failed (retry later), then done once the archive is healthy
    study = write_study(tmp_path, "FAULTS", seed=21)
    orthanc.upload(study["folder"])
    proxy = FaultProxy(orthanc.root)
    try:
        via = Archive(proxy.url, environ=orthanc.env)
        ledger = Ledger(tmp_path / "faults.sqlite", "f")
        uid = study["study_uid"]
        ledger.enqueue(uid, worker.version)
        for mode, expect in ((500, "HTTP 500"), ("cut", "mid-stream")):
            proxy.mode = mode
            assert ledger.claim(uid, worker.version, force=True)
            out = worker.process(via, uid)
            assert out["outcome"] == "failed" and expect in out["message"], out
            ledger.finish(uid, worker.version, "failed", error=out["message"])
            assert ledger.state(uid, worker.version)["state"] == "failed"
            assert ledger.state(uid, worker.version)["next_try"] > time.time()       # backing off
        assert not list(worker.out_root.glob(f"{uid}/pacs_*.dcm"))
        proxy.mode = None
        assert worker.process(via, uid)["outcome"] == "done"
    finally:
        proxy.stop()
    assert [len(x) for x in ours(orthanc, study["study_uid"])] == [1, 1]
    # archives without a change log: QIDO by date, a study is stable once its instance count held for a poll
    from apps.medical.pacs.watch import QidoPoll

    poll = QidoPoll(archive, lookback_days=100_000)          # the test studies are dated 2024-01-01
    first, _ = poll.new_stable_studies(None)
    second, _ = poll.new_stable_studies(None)
    assert first == [] and study["study_uid"] in second


def test_warm_up_analyses_a_generated_study_and_stores_nothing(worker, caplog):
    """`watch`/`listen` warm the worker on a generated study at start-up: it runs the whole analysis
    and result building, writes nothing where the user's results go and never reaches an archive."""
    import logging

    before = sorted(p.name for p in worker.out_root.iterdir()) if worker.out_root.exists() else []
    with caplog.at_level(logging.INFO, logger="apps.medical.pacs.worker"):
        seconds = worker.warm_up()
    assert seconds > 0 and "warm-up study analysed" in caplog.text and "failed" not in caplog.text, caplog.text
    after = sorted(p.name for p in worker.out_root.iterdir()) if worker.out_root.exists() else []
    assert after == before
