"""The OpenAPI document tells the truth: every operation described, every error it can answer
documented with the body the app really sends, closed sets as enums.

tests/test_web_schemathesis.py then checks generated requests' answers against the document.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest
from fastapi.routing import APIRoute
from web_pages_support import PASSWORD, all_routes, app_client, page_settings, sign_in, upload_study

from app.modelcard import AGGREGATIONS
from app.web.api.contract import ERROR_DESCRIPTIONS, ErrorOut
from app.web.app import create_app
from app.web.core.models import ANALYSIS_STATUSES, DIAGNOSIS_KINDS, ROLES
from app.web.deps import require_api_admin
from app.web.schemas import AnalysisStatus, DiagnosisKind, Role, SortKey
from app.web.services.studies import SORT_KEYS
from app.web.settings import Settings

ERROR_REF = "#/components/schemas/ErrorOut"
UNSAFE = {"post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return create_app(Settings(data_dir=tmp_path_factory.mktemp("var"), secret_key="x"), load_model=False)


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in spec["paths"].items() for method, op in ops.items()]


def _admin_operations(app: Any) -> set[tuple[str, str]]:
    """(path, method) of the routes that need an administrator, read from their dependencies."""

    def needs_admin(dependant: Any) -> bool:
        return any(d.call is require_api_admin or needs_admin(d) for d in dependant.dependencies)

    found = set()
    for route in _api_routes(app.routes):
        if needs_admin(route.dependant):
            found |= {(route.path_format, m.lower()) for m in route.methods}
    return found


def _api_routes(routes: list[Any]) -> list[APIRoute]:
    out: list[APIRoute] = []
    for route in routes:
        if hasattr(route, "original_router"):
            out += _api_routes(route.original_router.routes)
        elif isinstance(route, APIRoute) and route.include_in_schema:
            out.append(route)
    return out


def test_every_operation_is_described(app: Any) -> None:
    spec = app.openapi()
    operations = _operations(spec)
    assert len(operations) >= 13
    for path, method, op in operations:
        assert op.get("summary", "").strip(), (method, path, "summary")
        assert len(op.get("description", "").strip()) >= 20, (method, path, "description")
        success = [code for code in op["responses"] if code.startswith("2")]
        # One success, or 200 with a 204 "nothing left" (a reader study's next read when done).
        assert len(success) == 1 or success == ["200", "204"], (method, path, success)
        # FastAPI's default "Successful Response" says nothing.
        assert op["responses"][success[0]]["description"] != "Successful Response", (method, path)


def test_every_error_an_operation_can_answer_is_documented_with_the_real_shape(app: Any) -> None:
    spec = app.openapi()
    # FastAPI's own 422 shape (a list of errors) is never sent: the app answers {"detail": "..."}.
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert spec["components"]["schemas"]["ErrorOut"]["required"] == ["detail"]
    admin = {(p, m) for p, m in _admin_operations(app)}
    assert admin, "no administrator route found: the dependency walk is broken"
    for path, method, op in _operations(spec):
        responses = op["responses"]
        where = (method.upper(), path)
        for code, response in responses.items():
            if int(code) >= 400 and not (path == "/health" and code == "503"):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR_REF}, (*where, code)
                assert response["description"] == ERROR_DESCRIPTIONS[int(code)], (*where, code)
        expected = {"422"}  # the input guard reads every request's address
        if op.get("security"):
            expected.add("401")
        if "{" in path:
            expected.add("404")
        if method in UNSAFE:
            expected.add("413")
            if op.get("security"):
                expected.add("403")  # a change by session cookie without the CSRF token
        if (path, method) in admin:
            expected.add("403")
        assert expected <= set(responses), (*where, sorted(expected - set(responses)))
        for code in responses:
            assert int(code) < 500 or code == "503", (*where, code)  # a 500 is a bug, not a contract
    token = spec["paths"]["/api/v1/auth/token"]["post"]["responses"]
    assert {"401", "429"} <= set(token) and "Retry-After" in token["429"]["headers"]
    assert "503" in spec["paths"]["/health"]["get"]["responses"]
    assert "409" in spec["paths"]["/api/v1/studies/{study_id}/diagnosis"]["post"]["responses"]


def _enum(spec: dict[str, Any], model: str, field: str) -> list[str]:
    prop = spec["components"]["schemas"][model]["properties"][field]
    options = prop.get("anyOf", [prop])
    return next(o["enum"] for o in options if "enum" in o)


def test_closed_sets_are_enums_that_match_the_database(app: Any) -> None:
    spec = app.openapi()
    assert get_args(AnalysisStatus) == ANALYSIS_STATUSES
    assert get_args(DiagnosisKind) == DIAGNOSIS_KINDS
    assert set(get_args(Role)) == set(ROLES)
    assert get_args(SortKey) == SORT_KEYS
    assert _enum(spec, "StudySummaryOut", "status") == list(ANALYSIS_STATUSES)
    assert _enum(spec, "AnalysisOut", "status") == list(ANALYSIS_STATUSES)
    assert _enum(spec, "DiagnosisOut", "kind") == list(DIAGNOSIS_KINDS)
    assert _enum(spec, "DiagnosisIn", "kind") == list(DIAGNOSIS_KINDS)
    assert set(_enum(spec, "UserOut", "role")) == set(ROLES)
    assert set(_enum(spec, "UserCreateIn", "role")) == set(ROLES)
    assert _enum(spec, "VerdictOut", "aggregation") == list(AGGREGATIONS)
    assert _enum(spec, "HealthOut", "status") == ["ok", "degraded"]
    params = {p["name"]: p for p in spec["paths"]["/api/v1/studies"]["get"]["parameters"]}
    for name, values in (("status", ANALYSIS_STATUSES), ("sort", SORT_KEYS), ("review", None)):
        schema = params[name]["schema"]
        options = schema.get("anyOf", [schema])
        enum = next(o["enum"] for o in options if "enum" in o)
        assert values is None or enum == list(values), name


def test_real_errors_have_the_documented_shape_and_status(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Provokes each documented error status once and checks its body against ErrorOut."""
    settings = page_settings(tmp_path / "var", tiny_model_dir).model_copy(
        update={"login_max_failures_per_account": 1, "max_request_bytes": 1024 * 1024}
    )
    with app_client(settings) as client:
        spec = client.app.openapi()  # type: ignore[attr-defined]
        csrf = sign_in(client, "rad")
        study_id = upload_study(client, csrf)
        client.cookies.clear()
        rad = {"Authorization": "Bearer " + _token(client, "rad")}
        diagnosis = f"/api/v1/studies/{study_id}/diagnosis"
        cases = [
            ("get", "/api/v1/studies", {}, None, 401),
            ("get", "/api/v1/users", rad, None, 403),
            ("get", "/api/v1/studies/999999", rad, None, 404),
            ("post", diagnosis, rad, {"label": "normal", "kind": "amendment", "reason": "r"}, 409),
            ("post", diagnosis, rad, {"label": "normal", "notes": "x" * 1_500_000}, 413),
            ("get", "/api/v1/studies?sort=name", rad, None, 422),
            ("get", "/api/v1/studies/99999999999", rad, None, 422),
            ("post", "/api/v1/studies", rad, None, 422),
        ]
        seen = set()
        for method, url, headers, body, status in cases:
            response = client.request(method, url, headers=headers, json=body)
            assert response.status_code == status, (method, url, response.status_code, response.text)
            _assert_documented(spec, method, url, response)
            seen.add(status)
        # The throttle: one wrong password locks the account for a while.
        assert (
            client.post("/api/v1/auth/token", data={"username": "rad", "password": "nope"}).status_code == 401
        )
        locked = client.post("/api/v1/auth/token", data={"username": "rad", "password": "nope"})
        assert locked.status_code == 429 and int(locked.headers["Retry-After"]) >= 1
        _assert_documented(spec, "post", "/api/v1/auth/token", locked)
        assert seen | {429} == {401, 403, 404, 409, 413, 422, 429}


def _token(client: Any, username: str) -> str:
    response = client.post("/api/v1/auth/token", data={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _assert_documented(spec: dict[str, Any], method: str, url: str, response: Any) -> None:
    ErrorOut.model_validate(response.json(), strict=True)
    assert set(response.json()) == {"detail"} and response.json()["detail"]
    path = url.split("?")[0]
    for template, ops in spec["paths"].items():
        parts, concrete = template.split("/"), path.split("/")
        if len(parts) != len(concrete):
            continue
        if all(a == b or a.startswith("{") for a, b in zip(parts, concrete, strict=True)):
            status = response.status_code
            assert str(status) in ops[method]["responses"], (method, template, status)
            return
    raise AssertionError(f"no documented operation for {method} {url}")


def test_walks_every_api_route(app: Any) -> None:
    """Every JSON route is in the document (the pages and /docs are not)."""
    documented = {(p, m) for p, m, _ in _operations(app.openapi())}
    for path, methods in all_routes(app.routes):
        if path.startswith("/api/") or path == "/health":
            assert {(path, m.lower()) for m in methods} <= documented, path
