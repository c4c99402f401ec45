"""One DICOM file → display-RGB images plus the study facts needed to group them."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, pixel_array
from pydicom.uid import UID

from app.ingest.budget import check_decode_budget
from app.ingest.display import (
    first_value,
    grey_to_rgb,
    lut_output_to_uint8,
    reduce_bit_depth,
    sample_frame_indices,
    stretch_to_uint8,
    window_to_uint8,
)
from app.ingest.errors import RejectedFile, collected_warnings, reraise_if_fatal
from app.ingest.gestational_age import parse_gestational_age, plausible, weeks_from_lmp
from app.ingest.regions import calibration, tissue_box
from app.ingest.types import ImageSink, IngestedImage, IngestOptions

NOT_READABLE = "not a DICOM file or a supported image (accepted: DICOM, PNG, JPEG, BMP, TIFF, ZIP)"
DICM_OFFSET = 128
DICM_MAGIC = b"DICM"

# SOP classes that may carry pixels but are not pictures of the patient.
_NON_IMAGE_SOP_PREFIXES: tuple[tuple[str, str], ...] = (
    ("1.2.840.10008.5.1.4.1.1.88.", "a structured report (SR): measurements and text, no images"),
    ("1.2.840.10008.5.1.4.1.1.66.", "a segmentation or registration object, not an image"),
    ("1.2.840.10008.5.1.4.1.1.481.", "a radiotherapy object, not an image"),
    ("1.2.840.10008.5.1.4.1.1.9.", "a waveform (e.g. ECG), not an image"),
    ("1.2.840.10008.5.1.4.1.1.11.", "a presentation state, not an image"),
    ("1.2.840.10008.5.1.4.1.1.104.", "an encapsulated document (PDF/CDA), not an image"),
)
# Transfer syntaxes that hold video streams: pydicom cannot decode them to frames.
_VIDEO_SYNTAX_PREFIXES = ("1.2.840.10008.1.2.4.10", "1.2.840.10008.1.2.4.11")

# LOINC codes for gestational age: estimated, by LMP, by ultrasound (composite), generic.
_GA_LOINC_CODES = frozenset({"11884-4", "11885-1", "11888-5", "18185-9"})
# Text attributes where exports put the gestational age.
_GA_TEXT_KEYWORDS = (
    "ImageComments",
    "PatientComments",
    "AdditionalPatientHistory",
    "StudyDescription",
    "SeriesDescription",
    "ClinicalTrialTimePointDescription",
)


@dataclass
class DicomStudyFacts:
    """What groups a file into a study. patient_id/name are identifying: never log them."""

    patient_id: str | None
    patient_name: str | None
    # Who issued the PatientID (IssuerOfPatientID), else the institution (InstitutionName).
    issuer: str | None
    institution: str | None
    study_uid: str | None
    study_date: str | None
    gestational_age_weeks: float | None


def has_dicom_magic(head: bytes) -> bool:
    return head[DICM_OFFSET : DICM_OFFSET + 4] == DICM_MAGIC


def looks_like_headerless_dicom(head: bytes) -> bool:
    """Old files lack the 128-byte preamble and start straight with a group 0002/0008 element."""
    if len(head) < 8:
        return False
    return head[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")


def _infer_transfer_syntax(ds: Dataset) -> None:
    """Files without file meta still have a known encoding: record it so pixels can be decoded."""
    if getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None) is not None:
        return
    if ds.is_little_endian is None:
        return
    if ds.is_implicit_VR:
        syntax = pydicom.uid.ImplicitVRLittleEndian
    elif ds.is_little_endian:
        syntax = pydicom.uid.ExplicitVRLittleEndian
    else:
        syntax = pydicom.uid.ExplicitVRBigEndian
    if not hasattr(ds, "file_meta"):
        ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    return str(value).strip() or None


def _coded_gestational_age(ds: Dataset) -> float | None:
    """GA from AcquisitionContextSequence (0040,0555): a NUMERIC item coded as gestational age.

    This is where app.synth writes it (LOINC 11884-4, units UCUM "wk"), as do some scanners.
    """
    for item in ds.get("AcquisitionContextSequence") or []:
        concept = (item.get("ConceptNameCodeSequence") or [None])[0]
        if concept is None:
            continue
        code = str(concept.get("CodeValue", ""))
        meaning = str(concept.get("CodeMeaning", "")).lower()
        if code not in _GA_LOINC_CODES and "gestational age" not in meaning:
            continue
        try:
            value = float(item.get("NumericValue"))
        except (TypeError, ValueError):
            continue
        units = (item.get("MeasurementUnitsCodeSequence") or [None])[0]
        unit = str(units.get("CodeValue", "wk")).lower() if units is not None else "wk"
        weeks = value / 7.0 if unit == "d" else value
        return plausible(weeks)
    return None


def read_gestational_age(ds: Dataset) -> float | None:
    """GA in weeks: a coded acquisition-context value, free-text fields, or LMP and study date."""
    coded = _coded_gestational_age(ds)
    if coded is not None:
        return coded
    for keyword in _GA_TEXT_KEYWORDS:
        weeks = parse_gestational_age(_text(ds, keyword))
        if weeks is not None:
            return weeks
    # Some archives store GA in PatientAge with a 'W' suffix ("022W").
    age = _text(ds, "PatientAge")
    if age and age.upper().endswith("W") and age[:-1].isdigit():
        weeks = plausible(float(age[:-1]))
        if weeks is not None:
            return weeks
    return weeks_from_lmp(_text(ds, "LastMenstrualDate"), _text(ds, "StudyDate"))


def study_facts(ds: Dataset) -> DicomStudyFacts:
    return DicomStudyFacts(
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        issuer=_text(ds, "IssuerOfPatientID"),
        institution=_text(ds, "InstitutionName"),
        study_uid=_text(ds, "StudyInstanceUID"),
        study_date=_text(ds, "StudyDate"),
        gestational_age_weeks=read_gestational_age(ds),
    )


def _check_is_image(ds: Dataset) -> None:
    sop_class = str(ds.get("SOPClassUID", "") or getattr(ds.get("file_meta"), "MediaStorageSOPClassUID", ""))
    for prefix, what in _NON_IMAGE_SOP_PREFIXES:
        if sop_class.startswith(prefix):
            raise RejectedFile(f"this DICOM file is {what}")
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        raise RejectedFile("this DICOM file holds floating-point data (a parametric map), not an image")
    if "PixelData" not in ds:
        raise RejectedFile("this DICOM file contains no image (no pixel data)")
    if ds.get("PixelData") in (None, b""):
        raise RejectedFile("this DICOM file's image data is empty (zero-length pixel data)")
    for keyword in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation"):
        if ds.get(keyword) in (None, ""):
            raise RejectedFile(f"this DICOM file lacks the image attribute {keyword} and cannot be displayed")


# Every compressed syntax is decoded by pylibjpeg (libjpeg, openjpeg, rle: runtime dependencies),
# never by whichever plugin happens to be installed first: Pillow's and gdcm's JPEG decoders round
# differently (±1 grey level), and pyjpegls arrives with highdicom. The same file then decodes to
# the same pixels everywhere. Uncompressed and deflated data need no plugin.
PINNED_PLUGIN = "pylibjpeg"


def decoder_plugin(syntax: UID) -> str:
    """The pixel decoder plugin used for ``syntax`` ("" for uncompressed data)."""
    return PINNED_PLUGIN if syntax.is_compressed else ""


def _pinned_decoder_available(syntax: UID) -> bool:
    try:
        decoder = pydicom.pixels.get_decoder(syntax)
    except NotImplementedError:
        return False
    return decoder is not None and PINNED_PLUGIN in decoder.available_plugins


def decodable_transfer_syntaxes() -> list[UID]:
    """Every transfer syntax whose pixels this process can decode (the uncompressed ones, and
    the compressed ones with an installed decoder), in pydicom's order; video streams excluded.

    The DICOM listener accepts exactly these, so a sender is never told "accepted" for an
    encoding that ingestion would then reject.
    """
    syntaxes: list[UID] = []
    for syntax in pydicom.uid.AllTransferSyntaxes:
        syntax = UID(syntax)
        if str(syntax).startswith(_VIDEO_SYNTAX_PREFIXES) or syntax.is_private:
            continue
        if syntax.is_compressed and not _pinned_decoder_available(syntax):
            continue
        syntaxes.append(syntax)
    return syntaxes


def _check_decodable(ds: Dataset) -> str:
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None:
        raise RejectedFile("this DICOM file does not say how its image is encoded (no transfer syntax)")
    syntax = UID(str(syntax))
    if str(syntax).startswith(_VIDEO_SYNTAX_PREFIXES):
        raise RejectedFile(
            f"this DICOM file holds a video stream ({syntax.name}); export it as images instead"
        )
    if syntax.is_compressed and not _pinned_decoder_available(syntax):
        raise RejectedFile(f"this DICOM file is compressed with an unsupported method ({syntax.name})")
    return syntax.name


def _frame_to_display(frame: np.ndarray, ds: Dataset) -> np.ndarray:
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    bits_stored = int(ds.get("BitsStored") or ds.BitsAllocated)
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(frame, ds)
        if rgb.dtype == np.uint8 or int(rgb.max()) <= 255:
            # pydicom already reduced an 8-bit-valued table (it does so for some big endian files).
            return rgb.astype(np.uint8)
        # 16-bit entries: the high byte is the colour, as dcmtk renders them.
        return (rgb >> 8).astype(np.uint8)
    if frame.ndim == 3:
        # RGB, YBR_FULL(_422) converted by pydicom, YBR_ICT/RCT converted by the JPEG 2000 decoder.
        if int(ds.get("PixelRepresentation", 0)) == 1:
            frame = frame.astype(np.int64) + (1 << (bits_stored - 1))
        return np.ascontiguousarray(reduce_bit_depth(frame, bits_stored)[:, :, :3])
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise RejectedFile(f"this DICOM file uses an unsupported colour model ({photometric})")
    return grey_to_rgb(_grey_to_display(frame, ds, photometric, bits_stored))


def _grey_to_display(frame: np.ndarray, ds: Dataset, photometric: str, bits_stored: int) -> np.ndarray:
    values = apply_modality_lut(frame, ds)
    if "VOILUTSequence" in ds:
        voi = apply_voi(values, ds, index=0)
        lut_max = float(np.max(ds.VOILUTSequence[0].LUTData)) if ds.VOILUTSequence[0].get("LUTData") else 0
        grey = lut_output_to_uint8(voi, lut_max or float(voi.max()))
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        grey = window_to_uint8(
            values,
            first_value(ds.WindowCenter),
            first_value(ds.WindowWidth),
            str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR"),
        )
    elif bits_stored <= 8 and values.min() >= 0 and values.max() <= 255:
        grey = np.round(values).astype(np.uint8)  # 8-bit ultrasound greyscale is already display values
    else:
        grey = stretch_to_uint8(values)
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return grey


def _check_decode_budget(
    ds: Dataset, n_decoded: int, n_frames: int, rows: int, columns: int, options: IngestOptions
) -> None:
    """Refuse, from the header alone, a file whose decoded frames would exceed the budget."""
    samples = max(1, int(ds.get("SamplesPerPixel") or 1))
    bytes_per_sample = max(1, -(-int(ds.BitsAllocated) // 8))
    # Cine loops are sampled: only the frames that will be decoded count.
    frames = "NumberOfFrames" if n_decoded == n_frames else "frames decoded"
    note = f" ({n_decoded} of the file's {n_frames} frames are decoded)" if n_decoded < n_frames else ""
    check_decode_budget(
        [
            (frames, n_decoded),
            ("Rows", rows),
            ("Columns", columns),
            ("SamplesPerPixel", samples),
            ("bytes per sample", bytes_per_sample),
        ],
        options.max_decoded_bytes,
        note,
    )


# Transfer syntaxes whose compression always loses information; JPEG 2000 (.91) and HTJ2K (.203)
# may be either, so they count as lossy unless the file says LossyImageCompression "00".
_LOSSY_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81"})
_MAYBE_LOSSY_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.203"})


def lossy_compression(ds: Dataset) -> str | None:
    """Words saying how the pixels were lossily compressed (now, by the transfer syntax, or
    before, by LossyImageCompression (0028,2110) "01" with its ratio and method), or None.

    A JPEG 2000 at 10:1 moves a probability by about 0.1, so the reader is told.
    """
    syntax = UID(str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or ""))
    flag = str(ds.get("LossyImageCompression", "") or "").strip()
    lossy = (
        flag == "01"
        or str(syntax) in _LOSSY_SYNTAXES
        or (str(syntax) in _MAYBE_LOSSY_SYNTAXES and flag != "00")
    )
    if not lossy:
        return None
    parts = []
    if str(syntax) in _LOSSY_SYNTAXES | _MAYBE_LOSSY_SYNTAXES:
        parts.append(syntax.name)
    ratios = ds.get("LossyImageCompressionRatio")
    if ratios not in (None, ""):
        values = ratios if isinstance(ratios, list | tuple | MultiValue) else [ratios]
        parts.append("ratio " + " then ".join(f"{float(r):g}:1" for r in values))
    methods = ds.get("LossyImageCompressionMethod")
    if methods not in (None, ""):
        values = methods if isinstance(methods, list | tuple | MultiValue) else [methods]
        parts.append("method " + " then ".join(str(m) for m in values))
    if flag == "01" and not parts:
        parts.append("LossyImageCompression (0028,2110) is 01")
    return "lossy compression: " + ", ".join(parts) if parts else "lossy compression"


def _metadata(ds: Dataset, syntax_name: str, n_frames: int) -> dict[str, Any]:
    sop_class = UID(str(ds.get("SOPClassUID", "")))
    return {
        "format": "DICOM",
        "modality": _text(ds, "Modality"),
        "manufacturer": _text(ds, "Manufacturer"),
        "sop_class": sop_class.name if str(sop_class) else None,
        "sop_instance_uid": _text(ds, "SOPInstanceUID"),
        "series_uid": _text(ds, "SeriesInstanceUID"),
        "transfer_syntax": syntax_name,
        "photometric_interpretation": str(ds.PhotometricInterpretation),
        "bits_stored": int(ds.get("BitsStored") or ds.BitsAllocated),
        "n_frames": n_frames,
        "rows": int(ds.Rows),
        "columns": int(ds.Columns),
        "lossy_compression": lossy_compression(ds),
        "frame_time_ms": _frame_time_ms(ds),
        "plane": _plane_name(ds),
        "series_number": _int_or_none(ds.get("SeriesNumber")),
        "instance_number": _int_or_none(ds.get("InstanceNumber")),
        "acquisition_time": _text(ds, "AcquisitionDateTime") or _text(ds, "ContentTime"),
    }


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _frame_time_ms(ds: Dataset) -> float | None:
    """Milliseconds between cine frames: FrameTime, else 1000 / CineRate; None when not said."""
    for keyword, convert in (("FrameTime", lambda v: v), ("CineRate", lambda v: 1000.0 / v)):
        try:
            value = float(ds.get(keyword) or 0)
        except (TypeError, ValueError):
            continue
        if value > 0:
            ms = float(convert(value))
            if 1.0 <= ms <= 5000.0:
                return ms
    return None


def _plane_name(ds: Dataset) -> str | None:
    """The view the scanner names (ViewCodeSequence's CodeMeaning, else ViewName); None if unnamed."""
    try:
        views = ds.get("ViewCodeSequence") or []
        if views and str(getattr(views[0], "CodeMeaning", "")).strip():
            return str(views[0].CodeMeaning).strip()[:64]
        name = str(ds.get("ViewName") or "").strip()
        return name[:64] or None
    except Exception:  # a damaged sequence must not cost the image
        return None


def read_dicom(
    data: bytes, source: str, sha256: str, options: IngestOptions, emit: ImageSink | None = None
) -> tuple[DicomStudyFacts, list[IngestedImage]]:
    """Decode a DICOM file's frames (cine loops sampled) into display images.

    Frames are decoded one at a time, and each is handed to ``emit`` as soon as it is ready;
    what ``emit`` returns is collected (by default the image itself). With a sink that stores
    the pixels and drops them, one frame is in memory at a time, not the whole cine.
    Raises RejectedFile with a readable reason for anything unusable; frames already emitted
    before a later one failed are then not returned (the sink must treat them as unused).
    """
    with collected_warnings() as notes:
        try:
            facts, images = _read_dicom(data, source, sha256, options, emit or _keep)
        except RejectedFile:
            raise
        except BaseException as exc:  # a damaged element can fail on first access, anywhere
            reraise_if_fatal(exc)
            raise RejectedFile("the DICOM file is damaged and cannot be read") from exc
    if notes:
        for image in images:
            image.metadata["warnings"] = notes
    return facts, images


def _keep(image: IngestedImage) -> IngestedImage:
    return image


def _read_dicom(
    data: bytes, source: str, sha256: str, options: IngestOptions, emit: ImageSink
) -> tuple[DicomStudyFacts, list[IngestedImage]]:
    headerless = not has_dicom_magic(data[: DICM_OFFSET + 4])
    if headerless and not looks_like_headerless_dicom(data[:8]):
        raise RejectedFile(NOT_READABLE)
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=headerless)
    except InvalidDicomError as exc:
        raise RejectedFile(NOT_READABLE) from exc
    except Exception as exc:  # pydicom raises many types on damaged files
        raise RejectedFile("the DICOM file is damaged or truncated and cannot be read") from exc
    if headerless and "SOPClassUID" not in ds and "PixelData" not in ds:
        raise RejectedFile(NOT_READABLE)
    _infer_transfer_syntax(ds)
    _check_is_image(ds)
    syntax_name = _check_decodable(ds)
    rows, columns = int(ds.Rows), int(ds.Columns)
    if rows <= 0 or columns <= 0:
        raise RejectedFile("this DICOM file declares an empty image (0 rows or columns)")
    if rows * columns > options.max_pixels_per_frame:
        raise RejectedFile(
            f"the image is too large: Columns × Rows = {columns} × {rows} pixels per frame, "
            f"above the limit of {options.max_pixels_per_frame:,} pixels"
        )
    try:
        n_frames = max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        n_frames = 1
    plugin = decoder_plugin(UID(str(ds.file_meta.TransferSyntaxUID)))
    if options.cine_frames == "first":
        indices = list(range(min(n_frames, options.max_frames_per_cine)))
    else:
        indices = sample_frame_indices(n_frames, options.max_frames_per_cine)
    _check_decode_budget(ds, len(indices), n_frames, rows, columns, options)
    regions = ds.get("SequenceOfUltrasoundRegions") or []
    box = tissue_box(regions, rows, columns)
    base_metadata = _metadata(ds, syntax_name, n_frames)
    base_metadata["frames_stored"] = len(indices)
    base_metadata["calibration"] = calibration(regions, rows, columns)
    base_metadata["decoder"] = plugin or "native"
    base_metadata["scan_box_source"] = "ultrasound_regions" if box is not None else "detected"
    images = []
    for index in indices:
        try:
            frame = pixel_array(ds, index=index, raw=False, decoding_plugin=plugin)
            pixels = _frame_to_display(frame, ds)
        except RejectedFile:
            raise
        except BaseException as exc:
            reraise_if_fatal(exc)
            raise RejectedFile("the image data is corrupt or truncated and cannot be decoded") from exc
        if pixels.shape[:2] != (rows, columns):
            raise RejectedFile("the decoded image does not match the size the file declares (corrupt file)")
        image = IngestedImage(
            source=source,
            frame=index if n_frames > 1 else None,
            pixels=pixels,
            scan_box=box,
            sha256=sha256,
            metadata=dict(base_metadata),
        )
        # Let go of this frame before the next is decoded: the sink may have stored it.
        del frame, pixels
        images.append(emit(image))
        del image
    return study_facts(ds), images
