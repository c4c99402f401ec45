"""Values no field may hold get a 422 with a reason, never a 500, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

import pytest
from web_support import PASSWORD, db_url, study_files, web  # noqa: F401

from app.web.core.input_guard import MAX_ROW_ID, body_problem, checked_date, control_character

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", None),
        ("tab\tline\ncr\r", None),
        ("a\x00b", "NUL (0x00)"),
        ("\x1b[31m", "a control character (0x1b)"),
        ("del\x7f", "a control character (0x7f)"),
    ],
)
def test_control_characters(text: str, expected: str | None) -> None:
    assert control_character(text) == expected


def test_bodies_are_checked_field_by_field_keys_included() -> None:
    form = "application/x-www-form-urlencoded"
    assert body_problem(form, b"username=rad&password=x%00y").startswith("the field 'password' contains NUL")
    assert body_problem(form, b"a=1&b=2") is None
    json_type = "application/json"
    assert "notes" in body_problem(json_type, b'{"label": "normal", "notes": "x\\u0000"}')
    assert "bad" in body_problem(json_type, b'{"bad\\u0001key": 1}')
    assert body_problem(json_type, b'{"list": ["ok", "fine\\n"]}') is None
    assert body_problem(json_type, b"not json") is None


def test_dates_are_iso_and_plausible() -> None:
    assert checked_date("2025-03-14") == date(2025, 3, 14)
    for bad in ("0.0", "0", "14/03/2025", "0001-01-01", "2525-01-01", 1700000000):
        with pytest.raises(ValueError):
            checked_date(bad)


def test_hostile_values_get_a_422_and_change_nothing(web) -> None:  # noqa: F811
    h = web()
    auth = h.auth()
    before = h.counts()
    upload = h.upload(study_files(1), patient_name="Doe\x00Jane", patient_id="PID-1")
    assert upload.status_code == 422 and "NUL" in upload.json()["detail"]
    old = h.upload(study_files(1), study_date="0001-01-01")
    assert old.status_code == 422 and "1900" in old.json()["detail"]
    assert h.counts() == before  # nothing half-written

    token = h.client.post("/api/v1/auth/token", data={"username": "rad\x00", "password": PASSWORD})
    assert token.status_code == 422
    login_page = h.client.post("/login", data={"username": "rad", "password": "x\x00y", "csrf_token": "t"})
    assert login_page.status_code == 422

    for study_id in (2**31, 2**63, 2**70, 0, -1):
        answer = h.client.get(f"/api/v1/studies/{study_id}", headers=auth)
        assert answer.status_code == 422, (study_id, answer.text)
    assert h.client.get(f"/api/v1/studies/{MAX_ROW_ID}", headers=auth).status_code == 404
    assert h.client.get(f"/api/v1/images/{2**40}/thumbnail", headers=auth).status_code == 422

    for query in ("date_to=0.0", "date_from=0001-01-01", "label=nor%00mal", "review=%1b"):
        answer = h.client.get(f"/api/v1/studies?{query}", headers=auth)
        assert answer.status_code == 422, (query, answer.text)
    assert h.client.get("/api/v1/studies?date_from=2025-03-14", headers=auth).status_code == 200

    study_id = h.upload(study_files(2)).json()["study_id"]
    h.wait_for(study_id)
    bad_note = {"label": "normal", "confidence": 3, "notes": "see \x00 here"}
    answer = h.client.post(f"/api/v1/studies/{study_id}/diagnosis", json=bad_note, headers=auth)
    assert answer.status_code == 422 and "notes" in answer.json()["detail"]
    fine = {"label": "normal", "confidence": 3, "notes": "line one\n\tline two"}
    assert h.client.post(f"/api/v1/studies/{study_id}/diagnosis", json=fine, headers=auth).status_code == 201
    # The connection and the app are fine afterwards.
    assert h.client.get("/health").status_code == 200
