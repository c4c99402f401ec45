"""Orthanc (Debian's package) as the hospital PACS, on loopback ports: it sends a study to our
C-STORE listener, we analyse it and push the SR, SC heatmaps and PDF back, and Orthanc's REST
API shows them under the same Study Instance UID."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from dicom_net_support import free_port, us_study
from web_support import db_url, web  # noqa: F401

pytestmark = pytest.mark.slow


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports of the tests' range (free_port returns the first free one)."""
    import socket

    held, ports = [], []
    for _ in range(n):
        port = free_port()
        sock = socket.socket()
        sock.bind(("127.0.0.1", port))  # keep it taken until all are chosen
        held.append(sock)
        ports.append(port)
    for sock in held:
        sock.close()
    return ports


DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


@pytest.fixture
def orthanc(tmp_path: Path, request: pytest.FixtureRequest):
    """Orthanc on loopback ports; with ``request.param`` true (indirect), its DICOMweb plugin too."""
    binary = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    if not Path(binary).exists():
        pytest.skip("Orthanc is not installed (apt-get install orthanc; see `make system-deps`)")
    http_port, dicom_port, our_port, web_port = _free_ports(4)
    config = {
        "Name": "fetalcns-test-pacs",
        "StorageDirectory": str(tmp_path / "orthanc-db"),
        "IndexDirectory": str(tmp_path / "orthanc-db"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpServerEnabled": True,
        "Plugins": [],
        "DicomModalities": {"fetalcns": ["FETALCNS", "127.0.0.1", our_port]},
    }
    if getattr(request, "param", False):
        if not DICOMWEB_PLUGIN.exists():
            pytest.skip("Orthanc's DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)")
        config["Plugins"] = [str(DICOMWEB_PLUGIN)]
        config["DicomWeb"] = {"Enable": True}
    config_path = tmp_path / "orthanc.json"
    config_path.write_text(json.dumps(config))
    process = subprocess.Popen(
        [binary, str(config_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    rest = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            version = httpx.get(f"{rest}/system", timeout=2).json()["Version"]
            break
        except (httpx.HTTPError, KeyError):
            assert process.poll() is None and time.monotonic() < deadline, "Orthanc did not start"
            time.sleep(0.2)
    yield {
        "rest": rest,
        "dicom_port": dicom_port,
        "our_port": our_port,
        "web_port": web_port,
        "version": version,
    }
    process.terminate()
    process.wait(timeout=30)


def test_orthanc_sends_a_study_and_gets_the_results_back(web, tmp_path: Path, orthanc) -> None:  # noqa: F811
    rest = orthanc["rest"]
    h = web(
        dicom_listener=True,
        dicom_port=orthanc["our_port"],
        dicom_allow="ORTHANC@127.0.0.1",
        pacs_host="127.0.0.1",
        pacs_port=orthanc["dicom_port"],
        pacs_ae_title="ORTHANC",
        push_poll_s=0.2,
        push_retry_base_s=0.5,
    )
    study_uid, paths = us_study(tmp_path, 3, patient_id="PID-ORTHANC")
    for path in paths:
        assert httpx.post(f"{rest}/instances", content=path.read_bytes()).status_code == 200
    (orthanc_study,) = httpx.get(f"{rest}/studies").json()
    started = time.perf_counter()
    sent = httpx.post(f"{rest}/modalities/fetalcns/store", content=orthanc_study, timeout=120)
    assert sent.status_code == 200, sent.text
    sent_s = time.perf_counter() - started
    study_id = h.client.get("/api/v1/studies", headers=h.auth()).json()[0]["id"]
    assert h.wait_for(study_id)["status"] == "done"
    deadline = time.monotonic() + 120
    while True:
        series = httpx.get(f"{rest}/studies/{orthanc_study}/series").json()
        modalities = sorted(s["MainDicomTags"].get("Modality", "") for s in series)
        if modalities == ["DOC", "OT", "SR", "US"]:
            break
        assert time.monotonic() < deadline, modalities
        time.sleep(0.2)
    round_trip_s = time.perf_counter() - started
    # Same study in Orthanc: the results joined the original Study Instance UID.
    (only,) = httpx.get(f"{rest}/studies").json()
    assert httpx.get(f"{rest}/studies/{only}").json()["MainDicomTags"]["StudyInstanceUID"] == study_uid
    instances = {s["MainDicomTags"]["Modality"]: len(s["Instances"]) for s in series}
    assert instances == {"US": 3, "SR": 1, "OT": 3, "DOC": 1}
    print(
        f"Orthanc {orthanc['version']}: C-STORE of 3 instances to us {sent_s:.2f} s; "
        f"until SR+SC+PDF were in Orthanc {round_trip_s:.2f} s"
    )


@pytest.mark.parametrize("orthanc", [True], indirect=True)
def test_orthanc_dicomweb_client_stores_in_us_and_reads_back(web, tmp_path: Path, orthanc) -> None:  # noqa: F811
    """Orthanc's DICOMweb plugin as an independent DICOMweb client: STOW-RS into us, then
    QIDO-RS and WADO-RS of what it stored, against the app served by uvicorn."""
    import threading

    import uvicorn

    rest = orthanc["rest"]
    h = web(worker_enabled=False)
    server = uvicorn.Server(
        uvicorn.Config(h.app, host="127.0.0.1", port=orthanc["web_port"], lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        registered = httpx.put(
            f"{rest}/dicom-web/servers/fetalcns",
            json={
                "Url": f"http://127.0.0.1:{orthanc['web_port']}/dicomweb/",
                "HttpHeaders": {"Authorization": h.auth()["Authorization"]},
            },
        )
        assert registered.status_code == 200, registered.text
        study_uid, paths = us_study(tmp_path, 2, patient_id="PID-ORTHANC-WEB")
        for path in paths:
            assert httpx.post(f"{rest}/instances", content=path.read_bytes()).status_code == 200
        (orthanc_study,) = httpx.get(f"{rest}/studies").json()
        stow = httpx.post(
            f"{rest}/dicom-web/servers/fetalcns/stow", json={"Resources": [orthanc_study]}, timeout=120
        )
        assert stow.status_code == 200, stow.text
        (case,) = h.client.get("/api/v1/studies", headers=h.auth()).json()
        assert case["n_images"] == 2 and case["patient"]["patient_id"] == "PID-ORTHANC-WEB"
        # QIDO through Orthanc's client.
        found = httpx.post(
            f"{rest}/dicom-web/servers/fetalcns/qido",
            json={"Uri": "/studies", "Arguments": {"PatientID": "PID-ORTHANC-WEB"}},
            timeout=60,
        )
        assert found.status_code == 200, found.text
        # Orthanc answers its own rendering of our DICOM JSON (a single Value, with Name, Group...).
        (study,) = found.json()
        assert study["0020000D"]["Name"] == "StudyInstanceUID" and study["0020000D"]["Value"] == study_uid
        # WADO: Orthanc retrieves the study from us into a fresh copy of itself (it is already
        # there, so the count of instances must stay 2 and the retrieval must succeed).
        got = httpx.post(
            f"{rest}/dicom-web/servers/fetalcns/retrieve",
            json={"Resources": [{"Study": study_uid}]},
            timeout=120,
        )
        assert got.status_code == 200, got.text
        assert len(httpx.get(f"{rest}/instances").json()) == 2
        audit = h.client.get(f"/api/v1/studies/{case['id']}/audit", headers=h.auth("admin")).json()
        (retrieval,) = [e for e in audit if e["action"] == "dicomweb.retrieve"]
        assert retrieval["detail"]["n_instances"] == 2
    finally:
        server.should_exit = True
        thread.join(timeout=10)
