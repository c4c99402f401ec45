"""Sign-off integrity: at most one current final per case, also when radiologists sign at once."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select
from web_support import db_url, study_files, web  # noqa: F401

from app.web.core.models import Diagnosis

pytestmark = pytest.mark.slow


def _analysed_case(h) -> int:
    study_id = h.upload(study_files(2)).json()["study_id"]
    assert h.wait_for(study_id)["status"] == "done"
    return study_id


def _finals(h, study_id: int) -> int:
    with h.runtime.session_factory() as db:
        return db.scalar(
            select(func.count()).where(Diagnosis.study_id == study_id, Diagnosis.kind == "final")
        )


def _sign_at_once(h, study_id: int, signers: list[str]) -> list:
    """Every signer posts a final diagnosis at the same instant; their answers, in order."""
    headers = {name: h.auth(name) for name in set(signers)}
    barrier = threading.Barrier(len(signers))
    answers: list = [None] * len(signers)

    def sign(index: int) -> None:
        body = {"label": "normal", "confidence": 4, "kind": "final"}
        barrier.wait()
        answers[index] = h.client.post(
            f"/api/v1/studies/{study_id}/diagnosis", json=body, headers=headers[signers[index]]
        )

    threads = [threading.Thread(target=sign, args=(i,)) for i in range(len(signers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_simultaneous_sign_offs_store_one_final_and_tell_the_others_who_signed(web) -> None:  # noqa: F811
    h = web()
    for _round in range(3):
        study_id = _analysed_case(h)
        answers = _sign_at_once(h, study_id, ["rad", "rad2", "admin"] * 2)
        codes = sorted(a.status_code for a in answers)
        # Exactly one final. A later request that saw the final first is stored as an amendment
        # only with a reason, which none of these gives: so every other answer is a 409 or a 422.
        assert codes.count(201) == 1, [(a.status_code, a.text) for a in answers]
        assert set(codes) <= {201, 409, 422}, codes
        assert _finals(h, study_id) == 1
        conflicts = [a.json()["detail"] for a in answers if a.status_code == 409]
        winner = next(a.json() for a in answers if a.status_code == 201)
        for detail in conflicts:
            assert winner["signed_by"] in detail and "amendment" in detail


def test_a_read_made_on_an_older_version_is_refused(web) -> None:  # noqa: F811
    h = web()
    study_id = _analysed_case(h)
    case = h.client.get(f"/api/v1/studies/{study_id}", headers=h.auth("rad")).json()
    assert case["current_diagnosis_id"] is None
    first = {"label": "normal", "confidence": 4, "based_on": 0}
    signed = h.client.post(f"/api/v1/studies/{study_id}/diagnosis", json=first, headers=h.auth("rad"))
    assert signed.status_code == 201
    # rad2 opened the case before the sign-off and now wants to sign from that stale view.
    stale = {"label": "Anencephaly", "confidence": 3, "kind": "amendment", "reason": "r", "based_on": 0}
    answer = h.client.post(f"/api/v1/studies/{study_id}/diagnosis", json=stale, headers=h.auth("rad2"))
    assert answer.status_code == 409 and "rad signed this case" in answer.json()["detail"]
    # From the current version the amendment goes through and becomes the new version.
    version = h.client.get(f"/api/v1/studies/{study_id}", headers=h.auth("rad2")).json()[
        "current_diagnosis_id"
    ]
    assert version == signed.json()["id"]
    fresh = {**stale, "based_on": version}
    amended = h.client.post(f"/api/v1/studies/{study_id}/diagnosis", json=fresh, headers=h.auth("rad2"))
    assert amended.status_code == 201 and amended.json()["kind"] == "amendment"
    case = h.client.get(f"/api/v1/studies/{study_id}", headers=h.auth("rad")).json()
    assert case["current_diagnosis_id"] == amended.json()["id"]
    assert _finals(h, study_id) == 1
