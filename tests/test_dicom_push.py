"""The C-STORE push of results to a PACS, against dcmtk's storescp as the PACS: retries while
it is down, the case page's status, a new push when the diagnosis is signed, and giving up."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pydicom
import pytest
from dicom_net_support import free_port, need_tool, us_study
from sqlalchemy import select
from test_dicomweb import _stow
from web_support import db_url, web  # noqa: F401

from app.web.core.models import AuditEvent, DicomPush

pytestmark = pytest.mark.slow


def _pushing_web(web, port: int, **overrides):  # noqa: F811
    settings = {
        "pacs_host": "127.0.0.1",
        "pacs_port": port,
        "pacs_ae_title": "STORESCP",
        "push_poll_s": 0.2,
        "push_retry_base_s": 0.5,
        "push_max_attempts": 5,
    }
    settings.update(overrides)
    return web(**settings)


def _analysed(h, tmp_path: Path) -> tuple[str, int]:
    study_uid, paths = us_study(tmp_path / "in", 2)
    assert _stow(h, [p.read_bytes() for p in paths]).status_code == 200
    study_id = h.client.get("/api/v1/studies", headers=h.auth()).json()[0]["id"]
    assert h.wait_for(study_id)["status"] == "done"
    return study_uid, study_id


def _push(h, study_id: int, condition, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        push = h.client.get(f"/api/v1/studies/{study_id}", headers=h.auth()).json()["pacs_push"]
        if push is not None and condition(push):
            return push
        assert time.monotonic() < deadline, push
        time.sleep(0.1)


def test_results_reach_the_pacs_after_it_comes_up_and_again_after_sign_off(web, tmp_path: Path) -> None:  # noqa: F811
    port = free_port()
    h = _pushing_web(web, port)
    study_uid, study_id = _analysed(h, tmp_path)
    # The PACS is down: the push waits and retries, and the case page says so.
    waiting = _push(h, study_id, lambda p: p["attempts"] >= 1)
    assert waiting["status"] == "pending" and "not reachable" in waiting["last_error"]
    page = h.client.get(f"/cases/{study_id}", headers=h.auth())
    received = tmp_path / "pacs"
    received.mkdir()
    pacs = subprocess.Popen(
        [need_tool("storescp"), "-aet", "STORESCP", "-od", str(received), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        started = time.perf_counter()
        sent = _push(h, study_id, lambda p: p["status"] == "sent")
        elapsed = time.perf_counter() - started
        files = [pydicom.dcmread(f) for f in received.iterdir()]
        assert sent["n_instances"] == len(files) == 4  # SR, two SC heatmaps, the PDF
        assert {f.StudyInstanceUID for f in files} == {study_uid}
        assert sorted(f.Modality for f in files) == ["DOC", "OT", "OT", "SR"]
        print(f"push of {len(files)} result objects to storescp: {elapsed:.2f} s after it came up")
        # Signing the diagnosis changes the SR and the PDF: they are pushed again.
        label = h.client.get(f"/api/v1/studies/{study_id}", headers=h.auth()).json()["verdict"]["label"]
        signed = h.client.post(
            f"/api/v1/studies/{study_id}/diagnosis", json={"label": label, "kind": "final"}, headers=h.auth()
        )
        assert signed.status_code == 201, signed.text
        _push(h, study_id, lambda p: p["status"] == "sent" and p["attempts"] == 1)
        deadline = time.monotonic() + 30
        # A new SR and PDF (new UIDs: new content); the unchanged SCs keep theirs (same files).
        while len(list(received.iterdir())) < 6:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        srs = [pydicom.dcmread(f) for f in received.iterdir() if pydicom.dcmread(f).Modality == "SR"]
        assert sorted(sr.CompletionFlag for sr in srs) == ["COMPLETE", "PARTIAL"]
    finally:
        pacs.terminate()
        pacs.wait(timeout=30)
    with h.runtime.session_factory() as db:
        pushes = list(db.scalars(select(DicomPush).order_by(DicomPush.id)))
        events = list(db.scalars(select(AuditEvent).where(AuditEvent.action == "study.results_pushed")))
    assert [p.status for p in pushes] == ["sent", "sent"] and pushes[0].attempts >= 2
    assert len(events) == 2
    page = h.client.get(f"/cases/{study_id}")
    assert page.status_code in (200, 303)


def test_a_push_that_keeps_failing_is_marked_failed(web, tmp_path: Path) -> None:  # noqa: F811
    h = _pushing_web(web, free_port(), push_max_attempts=2, push_retry_base_s=0.2)
    _, study_id = _analysed(h, tmp_path)
    failed = _push(h, study_id, lambda p: p["status"] == "failed")
    assert failed["attempts"] == 2 and "not reachable" in failed["last_error"]
    with h.runtime.session_factory() as db:
        (event,) = db.scalars(select(AuditEvent).where(AuditEvent.action == "study.results_push_failed"))
    assert event.study_id == study_id and event.detail["attempts"] == 2
