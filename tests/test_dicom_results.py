"""Results out as DICOM in the original study: Comprehensive SR, Secondary Capture heatmaps and
the Encapsulated PDF report, through DICOMweb; read back by dcmtk (dsrdump), dicom3tools
(dciodvfy) and highdicom."""

from __future__ import annotations

import base64
import contextlib
import io
import re
import subprocess
import zlib
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_net_support import need_tool, us_study
from test_dicomweb import _stow
from web_support import db_url, web  # noqa: F401

from app.web.dicom.multipart import read_parts
from app.web.dicom.sr import SCHEME

pytestmark = pytest.mark.slow
DICOM_ANY = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}


def _analysed_study(h, tmp_path: Path, n: int = 3) -> tuple[str, int, list[Path]]:
    study_uid, paths = us_study(tmp_path, n)
    assert _stow(h, [p.read_bytes() for p in paths]).status_code == 200
    study_id = h.client.get("/api/v1/studies", headers=h.auth()).json()[0]["id"]
    assert h.wait_for(study_id)["status"] == "done"
    return study_uid, study_id, paths


def _series(h, study_uid: str, user: str = "rad") -> dict[str, dict]:
    found = h.client.get(f"/dicomweb/studies/{study_uid}/series", headers=h.auth(user)).json()
    return {s["00080060"]["Value"][0]: s for s in found}


def _retrieve(h, study_uid: str, series: dict) -> list[pydicom.Dataset]:
    series_uid = series["0020000E"]["Value"][0]
    response = h.client.get(
        f"/dicomweb/studies/{study_uid}/series/{series_uid}", headers={**h.auth(), **DICOM_ANY}
    )
    assert response.status_code == 200, response.text
    return [
        pydicom.dcmread(io.BytesIO(p.body))
        for p in read_parts(response.headers["content-type"], response.content)
    ]


def _errors_of_dciodvfy(path: Path) -> list[str]:
    result = subprocess.run([need_tool("dciodvfy"), str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]


def _items(content: pydicom.Sequence) -> list[pydicom.Dataset]:
    out = []
    for item in content:
        out.append(item)
        out.extend(_items(item.get("ContentSequence", [])))
    return out


def test_sr_sc_and_pdf_appear_as_series_and_validate(web, tmp_path: Path) -> None:  # noqa: F811
    h = web()
    study_uid, study_id, paths = _analysed_study(h, tmp_path)
    study = h.client.get(f"/api/v1/studies/{study_id}", headers=h.auth()).json()
    verdict = study["verdict"]["label"]
    classes = list(h.runtime.class_names)
    other = next(c for c in classes if c != verdict)
    signed = h.client.post(
        f"/api/v1/studies/{study_id}/diagnosis", json={"label": verdict, "kind": "final"}, headers=h.auth()
    )
    assert signed.status_code in (200, 201), signed.text
    amended = h.client.post(
        f"/api/v1/studies/{study_id}/diagnosis",
        json={"label": other, "kind": "amendment", "reason": "second look at the posterior fossa"},
        headers=h.auth("rad2"),
    )
    assert amended.status_code in (200, 201), amended.text

    series = _series(h, study_uid)
    assert set(series) == {"US", "SR", "OT", "DOC"}
    assert series["OT"]["00201209"]["Value"] == [3]

    # SR: verdict, model, per-image findings referencing the originals, diagnosis and amendment.
    (sr,) = _retrieve(h, study_uid, series["SR"])
    assert sr.StudyInstanceUID == study_uid and sr.Modality == "SR"
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33" and sr.CompletionFlag == "COMPLETE"
    sr_path = tmp_path / "sr.dcm"
    sr.save_as(sr_path, enforce_file_format=True)
    dump = subprocess.run([need_tool("dsrdump"), str(sr_path)], capture_output=True, text=True, timeout=60)
    assert dump.returncode == 0 and "E:" not in dump.stderr, dump.stderr
    assert "Algorithm Name" in dump.stdout and "Final diagnosis" in dump.stdout and "Amendment" in dump.stdout
    assert _errors_of_dciodvfy(sr_path) == []
    document = hd.sr.srread(sr_path)
    items = _items(document.ContentSequence)
    ai = next(i for i in items if i.ConceptNameCodeSequence[0].CodeValue == "ai-analysis")
    finding = next(
        i
        for i in ai.ContentSequence
        if i.ValueType == "CODE" and i.ConceptNameCodeSequence[0].CodeValue == "121071"
    )
    assert finding.ConceptCodeSequence[0].CodeMeaning == verdict
    assert finding.ConceptCodeSequence[0].CodingSchemeDesignator == SCHEME
    texts = {i.ConceptNameCodeSequence[0].CodeMeaning: i.TextValue for i in items if i.ValueType == "TEXT"}
    assert texts["Algorithm Name"] == study["analysis"]["model_name"]
    assert texts["Model SHA-256"] == study["analysis"]["model_sha256"]
    referenced = {
        i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in items if i.ValueType == "IMAGE"
    }
    assert referenced == {pydicom.dcmread(p).SOPInstanceUID for p in paths}
    impressions = [
        i.TextValue
        for i in items
        if i.ValueType == "TEXT" and i.ConceptNameCodeSequence[0].CodeValue == "121073"
    ]
    assert (
        len(impressions) == 2 and "signed by rad2" in impressions[1] and "posterior fossa" in impressions[1]
    )

    # SC: heatmap overlays marked as AI output, in the pixels and in the header.
    scs = _retrieve(h, study_uid, series["OT"])
    sources = {pydicom.dcmread(p).SOPInstanceUID for p in paths}
    for index, sc in enumerate(scs):
        assert sc.StudyInstanceUID == study_uid and sc.BurnedInAnnotation == "YES"
        assert "DERIVED" in sc.ImageType and "AI" in sc.SeriesDescription
        assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID in sources
        assert sc.PatientID == "PID-DICOM-1"
        pixels = sc.pixel_array
        band = pixels[: max(14, sc.Rows // 20)]
        assert band.max() == 255 and np.median(band) == 0  # the white-on-black "AI OUTPUT" banner
        path = tmp_path / f"sc{index}.dcm"
        sc.save_as(path, enforce_file_format=True)
        assert _errors_of_dciodvfy(path) == []

    # PDF: encapsulated, with the verdict, the diagnosis and the card's warning.
    (pdf,) = _retrieve(h, study_uid, series["DOC"])
    assert pdf.MIMETypeOfEncapsulatedDocument == "application/pdf"
    document_bytes = bytes(pdf.EncapsulatedDocument)[: int(pdf.EncapsulatedDocumentLength)]
    assert document_bytes.startswith(b"%PDF")
    text = _pdf_text(document_bytes)
    assert verdict in text and other in text and "rad2" in text
    # The tiny test model's card says it is not for clinical use: every page's footer says so.
    banner = h.runtime.model_card.banner
    assert banner and banner.startswith("not for clinical use")
    assert "NOT FOR CLINICAL USE" in text and "not for clinical use" in text  # heading and footer
    pdf_path = tmp_path / "pdf.dcm"
    pdf.save_as(pdf_path, enforce_file_format=True)
    assert _errors_of_dciodvfy(pdf_path) == []
    # The same report from the API, audited.
    download = h.client.get(f"/api/v1/studies/{study_id}/report.pdf", headers=h.auth())
    assert download.status_code == 200 and download.headers["content-type"] == "application/pdf"
    assert download.content.startswith(b"%PDF") and verdict in _pdf_text(download.content)
    audit = h.client.get(f"/api/v1/studies/{study_id}/audit", headers=h.auth("admin")).json()
    assert [e["username"] for e in audit if e["action"] == "study.report_pdf"] == ["rad"]


def _pdf_text(data: bytes) -> str:
    """The text shown by a reportlab PDF: its (Flate-compressed or plain) content streams' strings."""
    chunks = []
    for match in re.finditer(rb"stream\r?\n(.*?)endstream", data, re.S):
        raw = match.group(1).strip()
        if raw.endswith(b"~>"):  # reportlab's default: ASCII85 over Flate
            raw = base64.a85decode(raw[:-2].replace(b"\n", b"").replace(b"\r", b""))
        with contextlib.suppress(zlib.error):  # an uncompressed stream stays as it is
            raw = zlib.decompress(raw)
        chunks += re.findall(rb"\((.*?)\) Tj", raw)
    return " ".join(c.decode("latin-1") for c in chunks)


def test_second_read_withholds_results_until_the_reader_has_read(web, tmp_path: Path) -> None:  # noqa: F811
    h = web(assistance_mode="second-read")
    study_uid, study_id, _ = _analysed_study(h, tmp_path, n=2)
    assert set(_series(h, study_uid)) == {"US"}
    assert h.client.get(f"/api/v1/studies/{study_id}/report.pdf", headers=h.auth()).status_code == 409
    read = h.client.post(
        f"/api/v1/studies/{study_id}/diagnosis",
        json={"label": "normal", "kind": "preliminary"},
        headers=h.auth(),
    )
    assert read.status_code in (200, 201), read.text
    assert set(_series(h, study_uid)) == {"US", "SR", "OT", "DOC"}
    assert h.client.get(f"/api/v1/studies/{study_id}/report.pdf", headers=h.auth()).status_code == 200
    assert set(_series(h, study_uid, "rad2")) == {"US"}  # rad2 has not read it yet


def test_deidentified_export_follows_the_basic_profile(web, tmp_path: Path) -> None:  # noqa: F811
    h = web()
    study_uid, study_id, paths = _analysed_study(h, tmp_path, n=2)
    originals = [pydicom.dcmread(p) for p in paths]
    response = h.client.get(
        f"/dicomweb/studies/{study_uid}?deidentify=basic", headers={**h.auth(), **DICOM_ANY}
    )
    assert response.status_code == 200, response.text
    parts = read_parts(response.headers["content-type"], response.content)
    exported = [pydicom.dcmread(io.BytesIO(p.body)) for p in parts]
    # Originals and heatmap SCs; the SR's free text and the PDF cannot be cleaned: left out.
    assert sorted(d.Modality for d in exported) == ["OT", "OT", "US", "US"]
    for part in parts:
        for secret in (b"PID-DICOM-1", b"Testpatient", b"20250314", study_uid.encode()):
            assert secret not in part.body
    for ds in exported:
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert ds.PatientID.startswith("ANON-") and ds.PatientID == exported[0].PatientID
        assert ds.StudyDate == "" and "AcquisitionContextSequence" not in ds
        assert ds.SOPClassUID.startswith("1.2.840.10008.")  # DICOM-defined UIDs are kept
    # UIDs replaced consistently: one new study, and the SCs still point at their (new) sources.
    assert len({d.StudyInstanceUID for d in exported}) == 1 and exported[0].StudyInstanceUID != study_uid
    new_sources = {d.SOPInstanceUID for d in exported if d.Modality == "US"}
    assert {
        d.SourceImageSequence[0].ReferencedSOPInstanceUID for d in exported if d.Modality == "OT"
    } == new_sources
    assert not new_sources & {o.SOPInstanceUID for o in originals}
    audit = h.client.get(f"/api/v1/studies/{study_id}/audit", headers=h.auth("admin")).json()
    assert any(e["action"] == "dicomweb.retrieve" and e["detail"]["deidentified"] for e in audit)
    bad = h.client.get(f"/dicomweb/studies/{study_uid}?deidentify=full", headers={**h.auth(), **DICOM_ANY})
    assert bad.status_code == 400
