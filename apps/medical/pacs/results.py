"""What goes back to the archive: the DICOM SEG (with stable UIDs and the model version) and a
TID 1500 measurement report (highdicom ``Comprehensive3DSR``) built from ``findings.json``.

Identity. Both objects carry the model version in their SeriesDescription (``... [model V]``), and
their Series/SOP Instance UIDs are derived from (study UID, model version, run): re-storing after a
crash replaces the same instances instead of adding copies, and a study that already holds both
for version V is skipped. ``--force`` adds a run nonce, so a forced re-run makes new objects.

The SR (TID 1500 -> one TID 1411 volumetric group referencing segment 1 of the SEG, or a TID 1501
group when no SEG exists): lesion volume (mL, UCUM ``ml``), finding site (brain + laterality),
location text, the calibrated class probabilities (``99MMCORE`` codes, unit ``1``) and the most
likely class, or, when the analysis withheld them, a "withheld" evaluation with the reason; the
algorithm (model) name and version; evidence = the source series' instances and the SEG.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

SCHEME = "99MMCORE"
ALGORITHM = "mmcore medical FusionSegDiagNet"


def model_version(bundle: Path) -> str:
    """``<metadata version>+<first 10 hex of sha256(weights)>``: changes whenever the weights change."""
    bundle = Path(bundle)
    meta = bundle / "configs" / "metadata.json"
    version = json.loads(meta.read_text()).get("version", "0") if meta.exists() else "0"
    digest = hashlib.sha256()
    with open(bundle / "models" / "model.safetensors", "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return f"{version}+{digest.hexdigest()[:10]}"


def series_tag(version: str) -> str:
    """The suffix our SEG and SR SeriesDescription end with; how :meth:`Archive.results_of` finds them."""
    return f"[model {version}]"


def result_uids(study_uid: str, version: str, nonce: str = "") -> dict[str, str]:
    """Deterministic UIDs for the SEG and SR series/instances of one study and model version:
    ``2.25.<128-bit integer>`` (the UUID-derived form of PS3.5 B.2) from sha256 of the inputs.
    (pydicom's ``generate_uid(prefix=None)`` ignores its entropy sources and is random.)"""
    def uid(kind: str) -> str:
        digest = hashlib.sha256("\x1f".join((study_uid, version, nonce, kind)).encode()).digest()
        return "2.25." + str(int.from_bytes(digest[:16], "big"))

    return {k: uid(k) for k in ("seg_series", "seg_sop", "sr_series", "sr_sop")}


def finalize_seg(path: Path, version: str, uids: dict[str, str]):
    """Read the SEG written by analyze and give it the stable UIDs and the versioned description."""
    import pydicom

    ds = pydicom.dcmread(path)
    ds.SeriesInstanceUID, ds.SOPInstanceUID = uids["seg_series"], uids["seg_sop"]
    ds.file_meta.MediaStorageSOPInstanceUID = uids["seg_sop"]
    ds.SeriesDescription = f"mmcore lesion SEG {series_tag(version)}"
    ds.SoftwareVersions = version
    return ds


def _code(value: str, meaning: str):
    from highdicom.sr import CodedConcept

    return CodedConcept(value=value, scheme_designator=SCHEME, meaning=meaning[:64])


def withheld_reason(findings: dict) -> str | None:
    """Why the probabilities are not reported, or None when they are (read defensively: new statuses may appear)."""
    status = str(findings.get("status", ""))
    probs = findings.get("probabilities")
    if status == "withheld" or findings.get("withheld") or not probs:
        for key in ("diagnosis_withheld", "withheld_reason", "reason", "withheld", "error"):
            value = findings.get(key)
            if value and not isinstance(value, bool):
                return value if isinstance(value, str) else json.dumps(value)[:200]
        return f"analysis status '{status or 'unknown'}'"
    return None


def build_sr(findings: dict, seg, sources: list, version: str, uids: dict[str, str]):
    """The TID 1500 report for one analysed study (``seg``: the finalized SEG dataset or None;
    ``sources``: header datasets of the analysed series' instances)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.sr.AlgorithmIdentification(name=ALGORITHM, version=version)
    lesion = findings.get("lesion") or {}
    measurements, evaluations, texts = [], [], []
    if "volume_ml" in lesion:
        measurements.append(hd.sr.Measurement(name=codes.SCT.Volume, value=float(lesion["volume_ml"]),
                                              unit=hd.sr.CodedConcept("ml", "UCUM", "milliliter"), algorithm_id=algorithm))
    reason = withheld_reason(findings)
    if reason is None:
        probs = findings["probabilities"]
        for i, (name, p) in enumerate(probs.items()):
            measurements.append(hd.sr.Measurement(name=_code(f"MMP{i}", f"Probability of {name}"), value=float(p),
                                                  unit=hd.sr.CodedConcept("1", "UCUM", "no units"), algorithm_id=algorithm))
        best = findings.get("diagnosis") or max(probs, key=probs.get)
        evaluations.append(hd.sr.QualitativeEvaluation(_code("MMDX", "Most likely lesion class"),
                                                       _code(f"MMC{list(probs).index(best)}", best)))
    else:
        evaluations.append(hd.sr.QualitativeEvaluation(_code("MMDX", "Most likely lesion class"), _code("MMWH", "withheld")))
        texts.append(("Reason withheld", reason))
    texts.append(("Analysis status", str(findings.get("status", "unknown"))))
    if findings.get("result"):
        texts.append(("Result", str(findings["result"])))
    ood = findings.get("out_of_domain")
    if isinstance(ood, dict) and ood.get("flagged"):
        texts.append(("Out-of-domain check", str(ood.get("reason") or "flagged")))
    if lesion.get("location"):
        texts.append(("Lesion location", lesion["location"]))
    elif not lesion.get("voxels"):
        texts.append(("Lesion location", "no lesion found"))
    if lesion.get("centroid_ras_mm"):
        texts.append(("Lesion centroid (scanner RAS, mm)", " ".join(f"{v:.1f}" for v in lesion["centroid_ras_mm"])))
    if findings.get("flag"):
        texts.append(("Flag", str(findings["flag"])))
    sites = []
    if lesion.get("centroid_ras_mm"):
        side = codes.SCT.Right if lesion["centroid_ras_mm"][0] > 0 else codes.SCT.Left
        sites.append(hd.sr.FindingSite(anatomic_location=codes.SCT.Brain, laterality=side))
    tracking = hd.sr.TrackingIdentifier(uid=uids["sr_sop"] + ".1", identifier="lesion 1")
    common = dict(tracking_identifier=tracking, finding_type=codes.SCT.Lesion, algorithm_id=algorithm,
                  finding_sites=sites or None, measurements=measurements, qualitative_evaluations=evaluations)
    if seg is not None:
        group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            referenced_segment=hd.sr.ReferencedSegment(
                sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=1,
                source_series=hd.sr.SourceSeriesForSegmentation(seg.ReferencedSeriesSequence[0].SeriesInstanceUID)),
            **common)
    else:
        group = hd.sr.MeasurementsAndQualitativeEvaluations(**common)
    container = group[0]
    for name, value in texts:    # TID 1501 allows TEXT qualitative evaluations
        container.ContentSequence.append(hd.sr.TextContentItem(
            name=_code("MMTXT" + hashlib.sha1(name.encode()).hexdigest()[:6], name), value=str(value)[:1024],
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(uid=uids["sr_series"], name=ALGORITHM,
                                                                                  model_name=version))
    report = hd.sr.MeasurementReport(observation_context=hd.sr.ObservationContext(observer_device_context=observer),
                                     procedure_reported=_code("MMPROC", "MR/CT head lesion analysis"),
                                     imaging_measurements=[group])
    evidence = list(sources) + ([seg] if seg is not None else [])
    return hd.sr.Comprehensive3DSR(
        evidence=evidence, content=report[0], series_instance_uid=uids["sr_series"], series_number=101,
        sop_instance_uid=uids["sr_sop"], instance_number=1, manufacturer="mmcore", is_complete=True,
        series_description=f"mmcore lesion SR {series_tag(version)}")


def read_report(sr) -> dict:
    """What an SR built by :func:`build_sr` says, read back with highdicom (for tests and tools)."""
    import highdicom as hd

    sr = hd.sr.Comprehensive3DSR.from_dataset(sr, copy=True)    # parses the content tree into templates
    groups = sr.content.get_volumetric_roi_measurement_groups() or sr.content.get_image_measurement_groups()
    out: dict = {"measurements": {}, "evaluations": {}, "texts": {}, "segment": None}
    for g in groups:
        for m in g.get_measurements():
            out["measurements"][m.name.meaning] = float(m.value)
        for e in g.get_qualitative_evaluations():
            out["evaluations"][e.name.meaning] = e.value.meaning
        for item in g[0].ContentSequence:
            if item.ValueType == "TEXT":
                out["texts"][item.ConceptNameCodeSequence[0].CodeMeaning] = item.TextValue
        ref = getattr(g, "referenced_segment", None)
        if ref is not None:
            out["segment"] = str(ref.referenced_sop_instance_uid)
        for item in g[0].ContentSequence:      # TID 4019 algorithm identification (name, version)
            for sub in getattr(item, "ContentSequence", []):
                meaning = sub.ConceptNameCodeSequence[0].CodeMeaning
                if meaning in ("Algorithm Name", "Algorithm Version") and sub.ValueType == "TEXT":
                    out.setdefault("algorithm", {})[meaning.split()[-1].lower()] = sub.TextValue
        out["finding_sites"] = [(site.value.meaning, getattr(site, "laterality", None) and site.laterality.meaning)
                                for site in g.finding_sites]
    return out
