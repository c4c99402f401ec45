"""Parallel uploads against a real uvicorn server, on SQLite and PostgreSQL (issue 12).

A busy department uploads at once: every upload must be accepted (202, no 500 from a
starved connection pool or a lost insert race), every analysis must finish, and the same
new patient uploaded by several people at the same instant must end up as one patient (and,
for the same Study Instance UID, one study).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from web_browser_support import LiveServer, server_env, uvicorn_server
from web_support import PASSWORD, db_url, multipart, reset_database, row_counts, study_files  # noqa: F401

from app.web.core.db import make_engine
from app.web.core.models import Patient, Study

pytestmark = pytest.mark.slow

N_UPLOADS, N_IMAGES = 30, 20
N_SAME_PATIENT = 6


@pytest.fixture
def server(db_url: str, tiny_model_dir: Path, tmp_path: Path) -> Iterator[LiveServer]:  # noqa: F811
    reset_database(db_url)
    env = server_env(tmp_path / "server", tiny_model_dir, database_url=db_url)
    env["FETALCNS_WORKER_POLL_S"] = "0.2"
    with uvicorn_server(env, tmp_path / "server") as live:
        yield live


def _token(base_url: str) -> dict[str, str]:
    answer = httpx.post(f"{base_url}/api/v1/auth/token", data={"username": "rad", "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _parallel_uploads(
    base_url: str, auth: dict[str, str], uploads: list[list[tuple[str, bytes]]]
) -> list[httpx.Response]:
    """Send every upload at the same time, each on its own connection."""

    def send(files: list[tuple[str, bytes]]) -> httpx.Response:
        return httpx.post(f"{base_url}/api/v1/studies", files=multipart(files), headers=auth, timeout=300)

    with ThreadPoolExecutor(max_workers=len(uploads)) as pool:
        return list(pool.map(send, uploads))


def _statuses(answers: list[httpx.Response]) -> str:
    return ", ".join(f"{a.status_code}: {a.text[:160]}" for a in answers if a.status_code != 202) or "all 202"


def _wait_all(base_url: str, auth: dict[str, str], study_ids: set[int], timeout_s: float) -> dict[int, Any]:
    deadline = time.monotonic() + timeout_s
    final: dict[int, Any] = {}
    with httpx.Client(base_url=base_url, headers=auth, timeout=60) as client:
        while len(final) < len(study_ids) and time.monotonic() < deadline:
            for study_id in study_ids - final.keys():
                body = client.get(f"/api/v1/studies/{study_id}").json()
                if body["status"] in ("done", "failed"):
                    final[study_id] = body
            time.sleep(0.5)
    return final


def test_thirty_parallel_uploads_of_twenty_images_all_succeed(server: LiveServer, db_url: str) -> None:  # noqa: F811
    auth = _token(server.url)
    uploads = [study_files(N_IMAGES, patient_id=f"PAR-{i}", seed=100 * i) for i in range(N_UPLOADS)]
    started = time.monotonic()
    answers = _parallel_uploads(server.url, auth, uploads)
    accepted = sum(a.status_code == 202 for a in answers)
    print(f"{N_UPLOADS} parallel uploads: {accepted} accepted in {time.monotonic() - started:.1f} s")
    assert accepted == N_UPLOADS, _statuses(answers)

    study_ids = {int(a.json()["study_id"]) for a in answers}
    assert len(study_ids) == N_UPLOADS
    final = _wait_all(server.url, auth, study_ids, timeout_s=600)
    done = [s for s in final.values() if s["status"] == "done"]
    assert len(done) == N_UPLOADS, [(i, s["status"], s.get("error")) for i, s in final.items()]
    assert all(len(s["images"]) == N_IMAGES for s in done)

    engine = make_engine(db_url)
    try:
        counts = row_counts(engine)
    finally:
        engine.dispose()
    assert counts["patients"] == N_UPLOADS and counts["studies"] == N_UPLOADS
    assert counts["images"] == N_UPLOADS * N_IMAGES and counts["analyses"] == N_UPLOADS
    assert "Traceback" not in server.log_tail(400)


def test_the_same_new_patient_uploaded_at_once_is_one_patient(server: LiveServer, db_url: str) -> None:  # noqa: F811
    auth = _token(server.url)
    same_study = study_files(3, patient_id="NEW-PATIENT-1", seed=7)
    answers = _parallel_uploads(server.url, auth, [same_study] * N_SAME_PATIENT)
    assert all(a.status_code == 202 for a in answers), _statuses(answers)
    # One Study Instance UID: one study, whoever uploaded it first; the others are told its id.
    assert len({a.json()["study_id"] for a in answers}) == 1

    other_studies = [study_files(2, patient_id="NEW-PATIENT-2", seed=20 + i) for i in range(N_SAME_PATIENT)]
    answers = _parallel_uploads(server.url, auth, other_studies)
    assert all(a.status_code == 202 for a in answers), _statuses(answers)
    assert len({a.json()["study_id"] for a in answers}) == N_SAME_PATIENT

    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            patients = connection.execute(select(func.count()).select_from(Patient)).scalar_one()
            studies_of = dict(
                connection.execute(
                    select(Patient.patient_id, func.count(Study.id)).join(Study).group_by(Patient.patient_id)
                ).all()
            )
        counts = row_counts(engine)
    finally:
        engine.dispose()
    assert patients == 2
    assert studies_of == {"NEW-PATIENT-1": 1, "NEW-PATIENT-2": N_SAME_PATIENT}
    assert counts["images"] == 3 + 2 * N_SAME_PATIENT
    assert "Traceback" not in server.log_tail(400)
