"""The Comprehensive SR of a study's results (highdicom): the AI verdict with its model, the
per-image findings referencing the source instances, and the radiologist's signed diagnosis
with its amendments, in the original study.

Concepts without a standard code use the private scheme ``99FETALCNS`` (declared in the
Coding Scheme Identification Sequence), so a reader can tell our terms from DCM/LOINC ones.
"""

from __future__ import annotations

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from app.web.dicom.case_record import CaseRecord

SCHEME = "99FETALCNS"
MANUFACTURER = "fetalcns"

REPORT = Code("18748-4", "LN", "Diagnostic imaging report")
FINDING = Code("121071", "DCM", "Finding")
ALGORITHM_NAME = Code("111001", "DCM", "Algorithm Name")
ALGORITHM_VERSION = Code("111003", "DCM", "Algorithm Version")
SOURCE = Code("121112", "DCM", "Source of Measurement")
AI_ANALYSIS = Code("ai-analysis", SCHEME, "AI analysis")
MODEL_SHA = Code("model-sha256", SCHEME, "Model SHA-256")
P_ABNORMAL = Code("p-abnormal", SCHEME, "Probability of an anomaly")
VERDICT_REASON = Code("verdict-reason", SCHEME, "Verdict reason")
IMAGES_USED = Code("images-used", SCHEME, "Images used in the verdict")
IMAGES_LEFT_OUT = Code("images-left-out", SCHEME, "Images left out of the verdict")
IMAGE_FINDING = Code("image-finding", SCHEME, "Image finding")
LEFT_OUT = Code("left-out", SCHEME, "Left out of the verdict")
DIAGNOSIS = Code("radiologist-diagnosis", SCHEME, "Radiologist diagnosis")
SIGNED_READ = {
    "final": Code("final-diagnosis", SCHEME, "Final diagnosis"),
    "amendment": Code("amendment", SCHEME, "Amendment"),
}
RATIO = Code("1", "UCUM", "no units")
COUNT = Code("{images}", "UCUM", "images")
CONTAINS = hd.sr.RelationshipTypeValues.CONTAINS


def label_code(label: str) -> Code:
    """A class name (the model card's) as a code of our scheme; SH values hold 16 characters."""
    return Code(label[:16], SCHEME, label)


def probability_code(label: str) -> Code:
    return Code(f"p-{label}"[:16], SCHEME, f"Probability of {label}")


def _container(name: Code, children: list[Dataset], relationship: object = CONTAINS) -> Dataset:
    item = hd.sr.ContainerContentItem(name=name, relationship_type=relationship)
    item.ContentSequence = hd.sr.ContentSequence(children)
    return item


def _ai_items(record: CaseRecord) -> list[Dataset]:
    analysis, verdict = record.analysis, record.verdict
    items: list[Dataset] = [
        hd.sr.TextContentItem(ALGORITHM_NAME, analysis.model_name or "unknown", CONTAINS),
        hd.sr.TextContentItem(ALGORITHM_VERSION, analysis.model_version or "unknown", CONTAINS),
        hd.sr.TextContentItem(MODEL_SHA, analysis.model_sha256 or "unknown", CONTAINS),
        hd.sr.CodeContentItem(FINDING, label_code(verdict.label), CONTAINS),
    ]
    if verdict.p_abnormal is not None:
        items.append(
            hd.sr.NumContentItem(P_ABNORMAL, float(verdict.p_abnormal), RATIO, relationship_type=CONTAINS)
        )
    for label, p in sorted((verdict.probabilities or {}).items()):
        items.append(
            hd.sr.NumContentItem(probability_code(label), float(p), RATIO, relationship_type=CONTAINS)
        )
    if verdict.reason:
        items.append(hd.sr.TextContentItem(VERDICT_REASON, verdict.reason, CONTAINS))
    items.append(hd.sr.NumContentItem(IMAGES_USED, verdict.n_used, COUNT, relationship_type=CONTAINS))
    items.append(hd.sr.NumContentItem(IMAGES_LEFT_OUT, verdict.n_excluded, COUNT, relationship_type=CONTAINS))
    for result in record.images:
        if result.source is None:
            continue  # no DICOM original to point at (an image from a ZIP or a PNG)
        if result.prediction is None and result.image.frame is not None:
            continue  # a cine frame kept for playback only: the card did not ask for it to be analysed
        finding: list[Dataset] = []
        prediction = result.prediction
        if prediction is not None and prediction.label:
            finding.append(hd.sr.CodeContentItem(FINDING, label_code(prediction.label), CONTAINS))
            p = (prediction.probabilities or {}).get(prediction.label)
            if p is not None:
                finding.append(
                    hd.sr.NumContentItem(
                        probability_code(prediction.label), float(p), RATIO, relationship_type=CONTAINS
                    )
                )
        if result.exclusion:
            finding.append(hd.sr.TextContentItem(LEFT_OUT, result.exclusion, CONTAINS))
        finding.append(
            hd.sr.ImageContentItem(
                SOURCE,
                str(result.source.SOPClassUID),
                str(result.source.SOPInstanceUID),
                referenced_frame_numbers=result.frame_number,
                relationship_type=CONTAINS,
            )
        )
        items.append(_container(IMAGE_FINDING, finding))
    return items


def _diagnosis_items(record: CaseRecord) -> list[Dataset]:
    items = []
    for read in record.reads:
        text = f"{read.label}; signed by {read.signed_by} at {read.signed_at.isoformat(timespec='seconds')}"
        if read.amendment_reason:
            text += f"; reason for the amendment: {read.amendment_reason}"
        if read.notes:
            text += f"; notes: {read.notes}"
        items.append(
            _container(
                SIGNED_READ[read.kind],
                [
                    hd.sr.CodeContentItem(FINDING, label_code(read.label), CONTAINS),
                    hd.sr.TextContentItem(codes.DCM.Impression, text, CONTAINS),
                ],
            )
        )
    return items


def build_sr(record: CaseRecord, series_uid: str, sop_uid: str, device_uid: str) -> hd.sr.ComprehensiveSR:
    analysis = record.analysis
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid,
            name=analysis.model_name or "fetalcns model",
            manufacturer_name=MANUFACTURER,
            model_name=f"{analysis.model_name} {analysis.model_version}"[:64],
        ),
    )
    children: list[Dataset] = list(observer)
    children.append(_container(AI_ANALYSIS, _ai_items(record)))
    if record.reads:
        children.append(_container(DIAGNOSIS, _diagnosis_items(record)))
    root = hd.sr.ContainerContentItem(name=REPORT, template_id=None)
    root.ContentSequence = hd.sr.ContentSequence(children)
    sr = hd.sr.ComprehensiveSR(
        evidence=record.evidence,
        content=root,
        series_instance_uid=series_uid,
        series_number=9001,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=bool(record.reads),
    )
    sr.SeriesDescription = "AI analysis and diagnosis (fetalcns)"
    scheme = Dataset()
    scheme.CodingSchemeDesignator = SCHEME
    scheme.CodingSchemeName = "fetalcns terms"
    scheme.CodingSchemeResponsibleOrganization = "fetalcns project"
    sr.CodingSchemeIdentificationSequence = [scheme]
    return sr
