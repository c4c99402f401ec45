"""The HTML pages in-process: sign-in, CSRF, case page, sign-off and amendment, second read, admin."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from web_pages_support import (
    PASSWORD,
    all_routes,
    app_client,
    csrf_of,
    page_settings,
    sign_in,
    upload_study,
)


@pytest.fixture
def client(tmp_path: Path, tiny_model_dir: Path) -> Iterator[TestClient]:
    with app_client(page_settings(tmp_path / "var", tiny_model_dir)) as test_client:
        yield test_client


def test_every_page_but_login_redirects_to_sign_in(client: TestClient) -> None:
    for path in ("/", "/worklist", "/upload", "/cases/1", "/admin/users", "/admin/audit", "/reader-studies"):
        response = client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next="), path
    login = client.get("/login")
    assert login.status_code == 200
    assert 'name="csrf_token"' in login.text
    # The untrained test model is not for clinical use: the banner is on the login page too.
    assert "not for clinical use" in login.text


def test_sign_in_rejects_a_wrong_password_and_a_missing_csrf_token(client: TestClient) -> None:
    token = csrf_of(client.get("/login").text)
    wrong = client.post("/login", data={"username": "rad", "password": "nope-nope", "csrf_token": token})
    assert wrong.status_code == 401
    assert "Wrong user name or password" in wrong.text
    forged = client.post("/login", data={"username": "rad", "password": PASSWORD, "csrf_token": "forged"})
    assert forged.status_code == 400
    assert "fetalcns_session" not in forged.headers.get("set-cookie", "")


UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def test_every_unsafe_page_route_rejects_a_request_without_a_valid_csrf_token(client: TestClient) -> None:
    """Walks the app's routes, so a page route added later is covered without being listed here."""
    sign_in(client, "admin")  # signed in as an admin: a rejection is then CSRF, not a missing login
    checked = []
    for path, methods in all_routes(client.app.routes):  # type: ignore[attr-defined]
        if path.startswith("/api/"):
            continue  # the API: bearer tokens need no CSRF; cookie calls are checked in test_web_api_auth
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        for method in sorted(methods & UNSAFE):
            for form in ({}, {"csrf_token": "forged"}):
                response = client.request(method, concrete, data=form)
                if path == "/login":
                    # The sign-in form answers with itself, filled in, rather than an error page.
                    assert response.status_code == 400, (method, path, form)
                    assert "This sign-in form has expired" in response.text
                else:
                    assert response.status_code == 403, (method, path, form, response.status_code)
            checked.append((method, path))
    assert len(checked) >= 6, checked
    # Nothing rejected ran: the session is still there (POST /logout did not end it).
    assert client.get("/admin/users").status_code == 200


def test_sign_out_needs_the_csrf_token_and_ends_the_session(client: TestClient) -> None:
    csrf = sign_in(client, "rad")
    assert client.post("/logout", data={}).status_code == 403
    assert client.get("/").status_code == 200
    assert client.post("/logout", data={"csrf_token": csrf}).status_code == 303
    assert client.get("/").status_code == 303


def test_case_page_shows_verdict_images_and_model_card_then_records_sign_off_and_amendment(
    client: TestClient,
) -> None:
    csrf = sign_in(client, "rad")
    study_id = upload_study(client, csrf, n_images=2)
    page = client.get(f"/cases/{study_id}")
    assert page.status_code == 200
    html = page.text
    assert "AI verdict (patient level)" in html and "data-verdict" in html
    assert html.count('class="thumb"') == 2
    assert "/heatmap" in html  # the viewer gets heatmap URLs in concurrent mode
    assert "untrained-test-model" in html and "not for clinical use" in html
    assert 'value="final"' in html

    # A diagnosis without a CSRF token is refused.
    assert client.post(f"/cases/{study_id}/diagnosis", data={"label": "normal"}).status_code == 403

    form = {
        "csrf_token": csrf,
        "kind": "final",
        "label": "Anencephaly",
        "agrees_with_ai": "no",
        "confidence": "4",
        "notes": "frontal bone absent",
        "time_to_decision_s": "12.5",
    }
    signed = client.post(f"/cases/{study_id}/diagnosis", data=form)
    assert signed.status_code == 303
    after = client.get(signed.headers["location"]).text
    assert "Diagnosis signed off." in after
    assert "Final diagnosis: Anencephaly" in after
    assert 'value="amendment"' in after

    no_reason = client.post(
        f"/cases/{study_id}/diagnosis", data={**form, "kind": "amendment", "label": "normal"}
    )
    assert no_reason.status_code == 422
    assert "needs a reason" in no_reason.text

    amended = client.post(
        f"/cases/{study_id}/diagnosis",
        data={**form, "kind": "amendment", "label": "normal", "amendment_reason": "second look: artefact"},
    )
    assert amended.status_code == 303
    history = client.get(f"/cases/{study_id}").text
    # Both reads are listed, newest first; the amendment does not overwrite the sign-off.
    kinds = re.findall(r'data-diagnosis-kind="(\w+)"', history)
    assert kinds == ["amendment", "final"]
    assert "Reason: second look: artefact" in history

    worklist = client.get("/").text
    assert f'"id": {study_id}' in worklist or f'"id":{study_id}' in worklist


def test_an_incomplete_diagnosis_form_is_answered_with_a_readable_message(client: TestClient) -> None:
    csrf = sign_in(client, "rad")
    study_id = upload_study(client, csrf, n_images=1)
    response = client.post(f"/cases/{study_id}/diagnosis", data={"csrf_token": csrf, "kind": "final"})
    assert response.status_code == 422
    assert "Choose a diagnosis." in response.text


def test_unknown_case_is_a_readable_404(client: TestClient) -> None:
    sign_in(client, "rad")
    response = client.get("/cases/999")
    assert response.status_code == 404
    assert "There is no case #999" in response.text


def test_second_read_hides_the_ai_until_the_preliminary_read(tmp_path: Path, tiny_model_dir: Path) -> None:
    with app_client(page_settings(tmp_path / "var", tiny_model_dir, "second-read")) as client:
        csrf = sign_in(client, "rad")
        study_id = upload_study(client, csrf, n_images=2)
        before = client.get(f"/cases/{study_id}").text
        assert "data-ai-hidden" in before and "data-verdict" not in before
        assert "/heatmap" not in before
        assert 'value="preliminary"' in before
        status = client.get(f"/cases/{study_id}/status").json()
        assert status["status"] == "done"

        prelim = client.post(
            f"/cases/{study_id}/diagnosis",
            data={"csrf_token": csrf, "kind": "preliminary", "label": "normal", "confidence": "3"},
        )
        assert prelim.status_code == 303
        after = client.get(prelim.headers["location"]).text
        assert "data-verdict" in after and "/heatmap" in after
        assert 'value="final"' in after
        assert "Preliminary read: Normal" in after


def test_admin_pages_create_and_deactivate_users_and_show_the_audit_log(client: TestClient) -> None:
    csrf = sign_in(client, "rad")
    assert client.get("/admin/users").status_code == 403
    client.post("/logout", data={"csrf_token": csrf})

    csrf = sign_in(client, "admin")
    created = client.post(
        "/admin/users",
        data={"csrf_token": csrf, "username": "newrad", "password": "long enough pw", "role": "radiologist"},
    )
    assert created.status_code == 303
    users_page = client.get(created.headers["location"]).text
    assert "User created." in users_page and 'data-username="newrad"' in users_page

    too_short = client.post("/admin/users", data={"csrf_token": csrf, "username": "x2", "password": "short"})
    assert too_short.status_code == 422
    assert "at least 8 characters" in too_short.text

    row = re.search(r'<tr data-username="newrad">.*?</tr>', users_page, re.S)
    assert row, "newrad is not listed"
    user_id = re.search(r'action="/admin/users/(\d+)/deactivate"', row.group(0))
    assert user_id, "no deactivate button for newrad"
    done = client.post(f"/admin/users/{user_id.group(1)}/deactivate", data={"csrf_token": csrf})
    assert done.status_code == 303
    assert "Deactivated" in client.get("/admin/users").text

    audit = client.get("/admin/audit").text
    assert 'data-action="user.create"' in audit and 'data-action="auth.login"' in audit


def test_patient_details_are_escaped_in_every_page(client: TestClient) -> None:
    csrf = sign_in(client, "rad")
    study_id = upload_study(client, csrf, n_images=1, patient_name="<script>alert(1)</script>^Eve")
    case_html = client.get(f"/cases/{study_id}").text
    worklist_html = client.get("/").text
    for html in (case_html, worklist_html):
        assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;, Eve" in case_html
    # The worklist carries the name inside JSON, where < is escaped as \u003c.
    assert "\\u003cscript\\u003ealert(1)" in worklist_html
