"""static/js/dicom-peek.js (the upload page's DICOM header reader) against pydicom, in Chromium.

The upload form shows, and locks, the patient name, ID and study date that the
browser reads from a single study's headers; pydicom is the independent reference.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pydicom
import pytest
from ingest_support import dicom_bytes, make_us_dataset, phantom, vendor_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from web_browser_support import CHROMIUM, REPO_ROOT, chromium_page

pytestmark = pytest.mark.browser

if not CHROMIUM.is_file():
    pytest.skip(
        f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)", allow_module_level=True
    )

VENDOR_FILES = (
    "CT_small.dcm",  # explicit VR little endian
    "MR_small_implicit.dcm",  # implicit VR little endian
    "rtplan.dcm",  # implicit VR, sequences
    "test-SR.dcm",  # structured report, nested sequences
    "examples_rgb_color.dcm",  # ultrasound
    "examples_palette.dcm",
    "JPEG2000.dcm",  # encapsulated pixel data after the header
    "waveform_ecg.dcm",
)
# Encodings the reader does not handle: it must say "don't know" (null), never guess.
UNREADABLE_FILES = ("MR_small_bigendian.dcm", "image_dfl.dcm")


def _reference(data: bytes, path: Path) -> dict[str, str | None]:
    path.write_bytes(data)
    ds = pydicom.dcmread(path, stop_before_pixels=True)

    def value(keyword: str) -> str | None:
        raw = ds.get(keyword)
        text = str(raw).strip() if raw is not None else ""
        return text or None

    return {
        "patientName": value("PatientName"),
        "patientId": value("PatientID"),
        "studyDate": value("StudyDate"),
        "studyUid": value("StudyInstanceUID"),
    }


def _with_undefined_length_sequences() -> bytes:
    """Undefined-length sequence and items, one nested, before the patient module (the hard case)."""
    ds = make_us_dataset(phantom(), patient_id="SEQ-7", patient_name="Seq^Uence", StudyDate="20250102")
    inner = Dataset()
    inner.ReferencedSOPInstanceUID = "1.2.3.4"
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
    item.PurposeOfReferenceCodeSequence = Sequence([inner])
    ds.ReferencedImageSequence = Sequence([item])
    ds.ReferencedImageSequence.is_undefined_length = True
    ds.ReferencedImageSequence[0].is_undefined_length_sequence_item = True
    ds.ReferencedImageSequence[0].PurposeOfReferenceCodeSequence.is_undefined_length = True
    return dicom_bytes(ds)


def _cases() -> dict[str, bytes]:
    cases = {name: vendor_file(name).read_bytes() for name in VENDOR_FILES}
    cases["utf8-name"] = dicom_bytes(
        make_us_dataset(phantom(), patient_name="Müller^Zoë", SpecificCharacterSet="ISO_IR 192")
    )
    cases["latin1-name"] = dicom_bytes(
        make_us_dataset(phantom(), patient_name="Müller^Zoë", SpecificCharacterSet="ISO_IR 100")
    )
    cases["undefined-length-sequences"] = _with_undefined_length_sequences()
    return cases


def _parse_all(page, blobs: dict[str, bytes]) -> dict[str, dict[str, str | None] | None]:
    encoded = {name: base64.b64encode(data).decode("ascii") for name, data in blobs.items()}
    return page.evaluate(
        """(files) => {
            const out = {};
            for (const [name, b64] of Object.entries(files)) {
                const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                out[name] = window.Fetal.parseDicomHeader(bytes.buffer);
            }
            return out;
        }""",
        encoded,
    )


def test_dicom_peek_reads_what_pydicom_reads(tmp_path: Path) -> None:
    cases = _cases()
    unreadable = {name: vendor_file(name).read_bytes() for name in UNREADABLE_FILES}
    not_dicom = {"png": b"\x89PNG\r\n\x1a\n" + b"\0" * 200, "short": b"DICM"}
    with chromium_page() as page:
        page.set_content("<!doctype html><title>peek</title>")
        page.add_script_tag(path=str(REPO_ROOT / "static" / "js" / "dicom-peek.js"))
        parsed = _parse_all(page, {**cases, **unreadable, **not_dicom})
    for name, data in cases.items():
        expected = _reference(data, tmp_path / f"{name}.dcm")
        got = {key: (parsed[name] or {}).get(key) for key in expected}
        assert got == expected, name
    assert parsed["utf8-name"]["patientName"] == "Müller^Zoë"
    assert parsed["latin1-name"]["patientName"] == "Müller^Zoë"
    for name in (*UNREADABLE_FILES, *not_dicom):
        assert parsed[name] is None, name
