"""Issue 16 item 4, intake that never loses a study: each case at intake level (fast, no model).

The same cases through ``analyze_study``/``analyze_path``/the CLI with the shipped model are in
``test_intake_e2e.py``."""
from __future__ import annotations

import numpy as np
import pytest
from medical_helpers import affine_for, blob_volume, deidentify, flatten_into, set_raw

from apps.medical.dicom_io import new_study, write_series
from apps.medical.intake import IntakeError, dicom_studies, list_studies, read_study


def _study(folder, patient="P1", mr_desc="T1 MPRAGE", ct=True, n=12):
    vol, _ = blob_volume((24, 28, n))
    study = new_study(patient)
    write_series(vol, affine_for((2.0, 2.0, 3.0)), folder / f"mr_{patient}", modality="MR", study=study, series_number=2,
                 description=mr_desc)
    if ct:
        write_series(vol - 1000, affine_for((1.0, 1.0, 3.0)), folder / f"ct_{patient}", modality="CT", study=study,
                     series_number=3, description="Head CT")
    return study


# a) de-identified DICOM: the SEG is written for any de-identification profile (unit: outputs.write_dicom_seg)
@pytest.mark.parametrize("profile", ["removed", "emptied"])
def test_a_seg_from_deidentified_series_reads_back_with_source_geometry(tmp_path, profile):
    import highdicom as hd
    import pydicom

    from apps.medical.outputs import write_dicom_seg
    from apps.medical.transforms import load_volume

    _study(tmp_path / "s", ct=False)
    if profile == "removed":
        deidentify(tmp_path / "s")
    else:
        deidentify(tmp_path / "s", remove=(), empty=("PatientBirthDate", "PatientSex", "PatientName", "StudyID",
                                                       "AccessionNumber", "ReferringPhysicianName"))
    files = sorted((tmp_path / "s" / "mr_P1").glob("*.dcm"))
    assert "PatientBirthDate" not in pydicom.dcmread(files[0]) or pydicom.dcmread(files[0]).PatientBirthDate == ""
    img = load_volume(files, "mr")
    mask = np.zeros(img.shape[1:], bool)
    mask[8:14, 9:15, 3:7] = True
    info = write_dicom_seg(tmp_path / "seg.dcm", mask, np.asarray(img.affine), files)
    assert info["frames"] == len(files)
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    src = {d.SOPInstanceUID: d for d in (pydicom.dcmread(f, stop_before_pixels=True) for f in files)}
    assert seg.FrameOfReferenceUID == next(iter(src.values())).FrameOfReferenceUID
    assert seg.get("PatientBirthDate", "") == ""
    per_slice = {}
    for i, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        ref = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        pos = np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, float)
        np.testing.assert_allclose(pos, np.asarray(src[ref].ImagePositionPatient, float), atol=1e-3)
        per_slice[int(src[ref].InstanceNumber)] = seg.pixel_array[i].sum()
    assert set(per_slice) == set(range(1, len(files) + 1))
    assert sum(per_slice.values()) == mask.sum()
    assert [k for k, v in sorted(per_slice.items()) if v] == [4, 5, 6, 7]   # slices 3..6 (0-based) hold the lesion


# b) empty folder: one study, refused (the CLI's exit code is in test_intake_e2e.py)
def test_b_empty_folder_is_one_refused_study(tmp_path):
    (tmp_path / "empty").mkdir()
    assert list_studies(tmp_path / "empty") == [tmp_path / "empty"]
    with pytest.raises(IntakeError, match="no image series"):
        read_study(tmp_path / "empty")


# c) several flat DICOM studies in one folder: listed, read one by one, never mixed
def test_c_flat_folder_with_two_patients_is_split_never_mixed(tmp_path):
    s1, s2 = _study(tmp_path, "P1"), _study(tmp_path, "P2", mr_desc="T1 SPGR")
    flat = flatten_into(tmp_path / "flat", *(tmp_path / f"{m}_{p}" for m in ("mr", "ct") for p in ("P1", "P2")))
    keys = dicom_studies(flat)
    assert keys == sorted([f"P1|{s1['StudyInstanceUID']}", f"P2|{s2['StudyInstanceUID']}"])
    with pytest.raises(IntakeError, match="holds 2 DICOM studies"):
        read_study(flat)
    for key, study in zip(keys, sorted([s1, s2], key=lambda s: s["PatientID"])):
        s = read_study(flat, select=key)
        assert s.study_uid == study["StudyInstanceUID"] and s.modalities == ["mr", "ct"]
        import pydicom

        for files in s.sources.values():
            assert {pydicom.dcmread(f, stop_before_pixels=True).PatientID for f in files} == {study["PatientID"]}
        assert any("folder holds 2 studies" in m for m in s.messages)


# d) an "AX T2 FLAIR" is never silently taken as the T1
def test_d_flair_loses_to_t1_even_with_more_slices(tmp_path):
    study = _study(tmp_path / "s", ct=False)
    vol, _ = blob_volume((24, 28, 20))
    write_series(vol, affine_for((2.0, 2.0, 3.0)), tmp_path / "s" / "flair", modality="MR", study=study, series_number=1,
                 description="AX T2 FLAIR")
    s = read_study(tmp_path / "s")
    assert s.series["mr"]["description"] == "T1 MPRAGE"
    assert not any(m.startswith("WARNING") for m in s.messages)


def test_d_only_flair_is_used_with_a_warning(tmp_path):
    _study(tmp_path / "s", mr_desc="AX T2 FLAIR")
    s = read_study(tmp_path / "s")
    assert s.series["mr"]["description"] == "AX T2 FLAIR"
    warn = [m for m in s.messages if m.startswith("WARNING")]
    assert len(warn) == 1 and "AX T2 FLAIR" in warn[0] and "not named T1-weighted" in warn[0]


def test_d_unnamed_mr_beats_named_t2(tmp_path):
    study = _study(tmp_path / "s", mr_desc="AX T2 FLAIR", ct=False)
    vol, _ = blob_volume((24, 28, 10))
    write_series(vol, affine_for((2.0, 2.0, 3.0)), tmp_path / "s" / "x", modality="MR", study=study, series_number=7,
                 description="head 3D")
    s = read_study(tmp_path / "s")
    assert s.series["mr"]["description"] == "head 3D" and any("'head 3D'" in m for m in s.messages if m.startswith("WARNING"))


# e) truncated files: named with the cause; a cut CT slice rejects only the CT series
def test_e_truncated_header_is_named(tmp_path):
    _study(tmp_path / "s")
    f = sorted((tmp_path / "s" / "ct_P1").glob("*.dcm"))[4]
    f.write_bytes(f.read_bytes()[:300])
    s = read_study(tmp_path / "s")
    note = " ".join(s.messages)
    assert f.name in note and ("truncated" in note or "not readable" in note)
    assert "ct" not in s.sources and s.modalities == ["mr"]      # 11 evenly spaced slices minus one: rejected


def test_e_cut_pixel_data_rejects_only_that_series(tmp_path):
    _study(tmp_path / "s")
    f = sorted((tmp_path / "s" / "ct_P1").glob("*.dcm"))[6]
    f.write_bytes(f.read_bytes()[:-200])
    s = read_study(tmp_path / "s")
    assert s.modalities == ["mr"]
    rej = [m for m in s.messages if m.startswith("rejected")]
    assert len(rej) == 1 and "'Head CT'" in rej[0] and f.name in rej[0] and "pixel data cut" in rej[0]


def test_e_loader_failure_drops_only_that_modality(tmp_path):
    """A series that passes intake but fails to load (here: forced) is dropped with its name; the other stays."""
    from apps.medical.transforms import LoadSeriesd

    _study(tmp_path / "s")
    s = read_study(tmp_path / "s")
    bad = list(s.sources["ct"])
    bad[3].write_bytes(bad[3].read_bytes()[:-100])          # cut after intake ran
    d = LoadSeriesd(("mr", "ct"))(dict(s.sources))
    assert "mr" in d and "ct" not in d
    assert any("CT series" in m and "cannot be read" in m and "analysed without it" in m for m in d["messages"])
    with pytest.raises(IntakeError, match="CT series"):
        LoadSeriesd(("mr", "ct"))({"mr": None, "ct": bad})


# f) geometry MONAI cannot parse: the loaded affine is checked against the headers
def _long_iop(files):
    for f in files:      # 21-character DS values: pydicom reads them, MONAI's JSON metadata drops the tag
        set_raw(f, 0x00200037, "-1.00000000000000000\\0.0000000000000000001\\0\\0\\-1\\0")


def test_f_identity_affine_fallback_refuses_that_series(tmp_path):
    from apps.medical.transforms import LoadSeriesd

    _study(tmp_path / "s")
    s = read_study(tmp_path / "s")              # intake reads the strings fine
    _long_iop(s.sources["ct"])
    with pytest.warns(UserWarning, match="defaults to the identity"):
        d = LoadSeriesd(("mr", "ct"))(dict(s.sources))
    assert "ct" not in d and "mr" in d
    msg = next(m for m in d["messages"] if m.startswith("rejected"))
    assert "series 3 'Head CT'" in msg and "does not match the headers" in msg
    _long_iop(s.sources["mr"])
    with pytest.raises(IntakeError, match="series 2 'T1 MPRAGE'.*does not match the headers"):
        LoadSeriesd(("mr", "ct"))(dict(s.sources))


def test_f_good_geometry_passes_the_check(tmp_path):
    from apps.medical.transforms import LoadSeriesd

    _study(tmp_path / "s")
    d = LoadSeriesd(("mr", "ct"))(dict(read_study(tmp_path / "s").sources))
    assert "mr" in d and "ct" in d and not d.get("messages")


def test_f_non_finite_position_is_rejected_by_intake(tmp_path):
    _study(tmp_path / "s")
    for f in sorted((tmp_path / "s" / "ct_P1").glob("*.dcm")):
        set_raw(f, 0x00200032, "nan\\0\\0")
    s = read_study(tmp_path / "s")
    assert s.modalities == ["mr"] and any("'Head CT'" in m and "no usable geometry" in m for m in s.messages)


def test_a_seg_after_the_dicom_basic_profile_of_dicom_anonymizer(tmp_path):
    """A standard de-identification profile (PS3.15 basic, the PyPI package ``dicom-anonymizer``;
    skipped where it is not installed): intake, loading and the SEG still work, the SEG's frames lie
    on the source slices, and the removed SeriesDescription makes intake warn that no T1 is named."""
    anonymizer = pytest.importorskip("dicomanonymizer")
    import highdicom as hd
    import pydicom

    from apps.medical.outputs import write_dicom_seg
    from apps.medical.transforms import LoadSeriesd

    _study(tmp_path / "raw")
    for f in sorted((tmp_path / "raw").rglob("*.dcm")):
        out = tmp_path / "anon" / f.parent.name / f.name
        out.parent.mkdir(parents=True, exist_ok=True)
        anonymizer.anonymize_dicom_file(str(f), str(out))
    s = read_study(tmp_path / "anon")
    assert s.modalities == ["mr", "ct"] and any(m.startswith("WARNING") for m in s.messages)
    d = LoadSeriesd(("mr", "ct"))(dict(s.sources))
    mask = np.zeros(d["mr"].shape[1:], bool)
    mask[8:14, 9:15, 3:7] = True
    write_dicom_seg(tmp_path / "seg.dcm", mask, np.asarray(d["mr"].affine), s.sources["mr"])
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    src = {x.SOPInstanceUID: x for x in (pydicom.dcmread(f, stop_before_pixels=True) for f in s.sources["mr"])}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        ref = src[frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        np.testing.assert_allclose(np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, float),
                                   np.asarray(ref.ImagePositionPatient, float), atol=1e-3)
    assert int(seg.pixel_array.sum()) == int(mask.sum())
