"""Secondary Capture images of the heatmap overlays (highdicom), one per analysed image, in
the original study. They are AI output, and say so: in the pixels (a burned-in banner, so a
viewer that ignores the header still shows it), and in the header (ImageType DERIVED,
BurnedInAnnotation YES, the series description, the derivation description, the source image).
"""

from __future__ import annotations

import cv2
import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from app.web.dicom.case_record import CaseRecord, ImageResult

MANUFACTURER = "fetalcns"
SERIES_NUMBER = 9002


def banner_text(record: CaseRecord) -> str:
    analysis = record.analysis
    return f"AI OUTPUT - heatmap - {analysis.model_name} {analysis.model_version} - not a diagnosis"


def burn_banner(rgb: np.ndarray, text: str) -> np.ndarray:
    """A black band with white text along the top; the image below it is unchanged."""
    out = rgb.copy()
    height = out.shape[0]
    band = max(14, height // 20)
    scale = band / 30.0
    out[:band] = 0
    cv2.putText(
        out,
        text,
        (4, band - max(3, band // 5)),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    return out


def build_sc(
    record: CaseRecord, result: ImageResult, overlay: np.ndarray, series_uid: str, sop_uid: str, number: int
) -> hd.sc.SCImage:
    """The SC of one image's overlay; ``result.source`` (the original's header) gives patient
    and study attributes."""
    assert result.source is not None
    pixels = burn_banner(overlay, banner_text(record))
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=result.source,
        pixel_array=pixels,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        # highdicom wants an orientation for a patient image; an ultrasound plane has none it
        # can state, so the Type 2 PatientOrientation is emptied below.
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        patient_orientation=("A", "F"),
        series_instance_uid=series_uid,
        series_number=SERIES_NUMBER,
        sop_instance_uid=sop_uid,
        instance_number=number,
        manufacturer=MANUFACTURER,
    )
    # highdicom copies the source's modality (US); a derived capture is "other".
    sc.Modality = "OT"
    sc.PatientOrientation = ""
    # Type 2C (dciodvfy asks for it whenever ImageLaterality is absent): the source's, else empty.
    sc.Laterality = str(result.source.get("Laterality", "") or "")
    sc.ImageType = ["DERIVED", "SECONDARY", "AI_HEATMAP"]
    sc.BurnedInAnnotation = "YES"
    sc.SeriesDescription = "AI heatmap overlays (fetalcns) - not a diagnosis"
    sc.DerivationDescription = (
        f"Grad-CAM heatmap of model {record.analysis.model_name} {record.analysis.model_version} "
        f"(sha256 {record.analysis.model_sha256}) blended over the source image"
    )[:1024]
    source = Dataset()
    source.ReferencedSOPClassUID = result.source.SOPClassUID
    source.ReferencedSOPInstanceUID = result.source.SOPInstanceUID
    if result.frame_number is not None:
        source.ReferencedFrameNumber = result.frame_number
    sc.SourceImageSequence = [source]
    return sc
