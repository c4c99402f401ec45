"""DICOMweb under /dicomweb: STOW-RS, QIDO-RS and WADO-RS over real HTTP (the app's test
client), then the same through dicomweb-client against the app served by uvicorn."""

from __future__ import annotations

import io
import secrets
import threading
import time
from pathlib import Path

import pydicom
import pytest
from dicom_net_support import free_port, us_study
from ingest_support import vendor_file
from sqlalchemy import select
from web_support import db_url, web  # noqa: F401

from app.web.core.models import AuditEvent, Image
from app.web.dicom.multipart import read_parts

pytestmark = pytest.mark.slow


def _multipart(files: list[bytes]) -> tuple[str, bytes]:
    boundary = "b" + secrets.token_hex(8)
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + f + b"\r\n" for f in files
    )
    body += f"--{boundary}--\r\n".encode()
    return f'multipart/related; type="application/dicom"; boundary={boundary}', body


def _stow(h, files: list[bytes], user: str = "rad"):
    content_type, body = _multipart(files)
    return h.client.post(
        "/dicomweb/studies", content=body, headers={**h.auth(user), "Content-Type": content_type}
    )


def _truncated(path: Path) -> bytes:
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _events(h, action: str) -> list[AuditEvent]:
    with h.runtime.session_factory() as db:
        return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_stow_stores_reports_failures_and_analyses(web, tmp_path: Path) -> None:  # noqa: F811
    h = web()
    study_uid, paths = us_study(tmp_path, 2)
    bad = _truncated(paths[0])
    response = _stow(h, [p.read_bytes() for p in paths] + [bad])
    assert response.status_code == 202, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")
    answer = response.json()
    referenced = answer["00081199"]["Value"]
    assert sorted(r["00081155"]["Value"][0] for r in referenced) == sorted(
        pydicom.dcmread(p).SOPInstanceUID for p in paths
    )
    assert all(r["00081190"]["Value"][0].startswith("http") for r in referenced)
    (failed,) = answer["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xC000]
    assert answer["00081190"]["Value"][0].endswith(f"/dicomweb/studies/{study_uid}")
    study_id = h.client.get("/api/v1/studies", headers=h.auth()).json()[0]["id"]
    assert h.wait_for(study_id)["status"] == "done"
    (queued,) = _events(h, "study.analysis_queued")
    assert queued.username == "rad" and queued.detail["via"] == "dicomweb"
    assert {e.username for e in _events(h, "study.upload")} == {"rad"}


def test_stow_refusals(web, tmp_path: Path) -> None:  # noqa: F811
    h = web()
    _, (path,) = us_study(tmp_path, 1)
    all_bad = _stow(h, [_truncated(path)])
    assert all_bad.status_code == 409 and all_bad.json()["00081198"]["Value"][0]["00081197"]["Value"] == [
        0xC000
    ]
    content_type, body = _multipart([path.read_bytes()])
    no_token = h.client.post("/dicomweb/studies", content=body, headers={"Content-Type": content_type})
    assert no_token.status_code == 401
    wrong_type = h.client.post(
        "/dicomweb/studies", content=body, headers={**h.auth(), "Content-Type": "application/octet-stream"}
    )
    assert wrong_type.status_code == 415
    broken = h.client.post(
        "/dicomweb/studies", content=b"no parts", headers={**h.auth(), "Content-Type": content_type}
    )
    assert broken.status_code == 400
    assert h.counts()["images"] == 0


def test_qido_searches_studies_series_and_instances(web, tmp_path: Path) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    study_a, paths_a = us_study(tmp_path / "a", 2, patient_id="PID-A")
    study_b, paths_b = us_study(tmp_path / "b", 1, patient_id="PID-B", seed=5)
    assert _stow(h, [p.read_bytes() for p in paths_a + paths_b]).status_code == 200
    auth = h.auth()

    def qido(url: str, **params: str) -> list[dict]:
        response = h.client.get(url, params=params, headers=auth)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/dicom+json")
        return response.json()

    everything = qido("/dicomweb/studies")
    assert {s["0020000D"]["Value"][0] for s in everything} == {study_a, study_b}
    (a,) = qido("/dicomweb/studies", PatientID="PID-A")
    assert (
        a["0020000D"]["Value"] == [study_a]
        and a["00201208"]["Value"] == [2]
        and a["00080061"]["Value"] == ["US"]
    )
    assert a["00100010"]["Value"] == [{"Alphabetic": "Testpatient^Erika"}]
    assert len(qido("/dicomweb/studies", **{"00100020": "PID-*"})) == 2
    assert len(qido("/dicomweb/studies", PatientName="testpatient*")) == 2
    assert len(qido("/dicomweb/studies", StudyDate="20250301-20250331")) == 2
    assert qido("/dicomweb/studies", StudyDate="20240101-20241231") == []
    assert len(qido("/dicomweb/studies", limit="1")) == 1 and len(qido("/dicomweb/studies", offset="1")) == 1
    (series,) = qido(f"/dicomweb/studies/{study_a}/series")
    assert series["00080060"]["Value"] == ["US"] and series["00201209"]["Value"] == [2]
    series_uid = series["0020000E"]["Value"][0]
    instances = qido(f"/dicomweb/studies/{study_a}/series/{series_uid}/instances")
    assert sorted(i["00080018"]["Value"][0] for i in instances) == sorted(
        pydicom.dcmread(p).SOPInstanceUID for p in paths_a
    )
    assert all(i["00080016"]["Value"] == ["1.2.840.10008.5.1.4.1.1.6.1"] for i in instances)
    assert len(qido("/dicomweb/instances", StudyInstanceUID=study_b)) == 1
    assert len(qido("/dicomweb/series")) == 2
    bad = h.client.get("/dicomweb/studies", params={"NoSuchAttribute": "x"}, headers=auth)
    assert bad.status_code == 400
    assert h.client.get("/dicomweb/studies").status_code == 401
    searches = _events(h, "dicomweb.search")
    assert searches and all(e.username == "rad" for e in searches)
    # Values searched for (patient IDs) never reach the audit trail; the attribute names do.
    assert all("PID-A" not in str(e.detail) for e in searches)
    assert any(e.detail["matched_on"] == ["PatientID"] for e in searches)


def test_wado_returns_originals_and_transcodes_on_request(web, tmp_path: Path) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    jpeg = vendor_file("SC_rgb_jpeg_dcmtk.dcm")
    assert _stow(h, [jpeg.read_bytes()]).status_code == 200
    original = pydicom.dcmread(jpeg)
    study, series, sop = original.StudyInstanceUID, original.SeriesInstanceUID, original.SOPInstanceUID
    # The JPEG (lossy) input is recorded as such on its image, for the viewer.
    (case,) = h.client.get("/api/v1/studies", headers=h.auth()).json()
    (image,) = h.client.get(f"/api/v1/studies/{case['id']}", headers=h.auth()).json()["images"]
    assert "JPEG Baseline" in image["lossy_compression"]
    url = f"/dicomweb/studies/{study}/series/{series}/instances/{sop}"
    as_stored = h.client.get(
        url, headers={**h.auth(), "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
    )
    assert as_stored.status_code == 200, as_stored.text
    (part,) = read_parts(as_stored.headers["content-type"], as_stored.content)
    assert part.body == jpeg.read_bytes()
    # Patient data: never cached, like every other answer of the app.
    assert "no-store" in as_stored.headers["cache-control"]
    assert as_stored.headers["x-content-type-options"] == "nosniff"
    # No transfer syntax named: Explicit VR Little Endian, decoded with ingestion's decoders.
    default = h.client.get(url, headers={**h.auth(), "Accept": 'multipart/related; type="application/dicom"'})
    (part,) = read_parts(default.headers["content-type"], default.content)
    decoded = pydicom.dcmread(io.BytesIO(part.body))
    assert decoded.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert decoded.pixel_array.shape == original.pixel_array.shape
    refused = h.client.get(
        url,
        headers={
            **h.auth(),
            "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.5',
        },
    )
    assert refused.status_code == 406
    whole = h.client.get(f"/dicomweb/studies/{study}", headers=h.auth())
    assert len(read_parts(whole.headers["content-type"], whole.content)) == 1
    metadata = h.client.get(f"/dicomweb/studies/{study}/metadata", headers=h.auth()).json()
    assert metadata[0]["00080018"]["Value"] == [sop] and "7FE00010" not in metadata[0]
    assert h.client.get(f"/dicomweb/studies/{study}/series/1.2.3", headers=h.auth()).status_code == 404
    retrievals = _events(h, "dicomweb.retrieve")
    assert len(retrievals) == 4 and all(e.study_id is not None for e in retrievals)


def test_dicomweb_client_round_trip(web, tmp_path: Path) -> None:  # noqa: F811
    dicomweb_client = pytest.importorskip("dicomweb_client")
    import uvicorn

    h = web(worker_enabled=False)
    port = free_port()
    # The app's lifespan already runs under the test client: uvicorn serves the same app without it.
    server = uvicorn.Server(
        uvicorn.Config(h.app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        client = dicomweb_client.DICOMwebClient(
            f"http://127.0.0.1:{port}/dicomweb", headers={"Authorization": h.auth()["Authorization"]}
        )
        study_uid, paths = us_study(tmp_path, 2, patient_id="PID-DWC")
        datasets = [pydicom.dcmread(p) for p in paths]
        started = time.perf_counter()
        stored = client.store_instances(datasets)
        assert len(stored.ReferencedSOPSequence) == 2 and "FailedSOPSequence" not in stored
        (study,) = client.search_for_studies(search_filters={"PatientID": "PID-DWC"})
        assert pydicom.Dataset.from_json(study).StudyInstanceUID == study_uid
        series = client.search_for_series(study_uid)
        instances = client.search_for_instances(study_uid)
        assert len(series) == 1 and len(instances) == 2
        retrieved = client.retrieve_study(study_uid, media_types=(("application/dicom", "*"),))
        round_trip_s = time.perf_counter() - started
        assert sorted(d.SOPInstanceUID for d in retrieved) == sorted(d.SOPInstanceUID for d in datasets)
        assert all(
            d.PixelData == o.PixelData
            for d, o in zip(
                sorted(retrieved, key=lambda d: d.SOPInstanceUID),
                sorted(datasets, key=lambda d: d.SOPInstanceUID),
                strict=True,
            )
        )
        one = client.retrieve_instance(study_uid, datasets[0].SeriesInstanceUID, datasets[0].SOPInstanceUID)
        assert one.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        print(f"dicomweb-client STOW+QIDO+WADO of 2 instances: {round_trip_s:.2f} s")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    with h.runtime.session_factory() as db:
        assert len(list(db.scalars(select(Image)))) == 2
