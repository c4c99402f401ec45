"""Schemathesis against a live server: generated requests for every operation of the app's
own OpenAPI document, each answer checked against it.

Used by tests/test_web_schemathesis.py (a short seeded run) and
benchmarks/schemathesis_api.py (a long run that prints counts as JSON).

Checks on every answer: no 5xx (``not_a_server_error``), a documented status code, the
documented content type, headers and body schema. Requests are made both from the
schema (positive) and against it (negative: wrong types, out-of-range values, missing
fields), signed in as an administrator with a bearer token so that every route is reached.
"""

from __future__ import annotations

import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

# The answers' conformance to the document, and no server error.
CHECK_NAMES = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)


@dataclass
class FuzzReport:
    cases: int = 0
    failures: int = 0
    server_errors: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_check: Counter[str] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)  # the first few failures, for the reader
    seconds: float = 0.0

    def add(self, other: FuzzReport) -> None:
        """Count ``other`` (another round) in this report too."""
        self.cases += other.cases
        self.failures += other.failures
        self.server_errors += other.server_errors
        self.by_status.update(other.by_status)
        self.by_check.update(other.by_check)
        self.by_operation.update(other.by_operation)
        self.examples = (self.examples + other.examples)[:10]
        self.seconds += other.seconds

    def as_json(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "failures": self.failures,
            "server_errors": self.server_errors,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "failures_by_check": dict(self.by_check),
            "failures_by_operation": dict(self.by_operation),
            "examples": self.examples,
            "seconds": round(self.seconds, 1),
        }


@dataclass(frozen=True)
class SignedIn:
    username: str
    token: str
    token_id: int | None  # to keep the fuzzer from revoking it


def sign_in(base_url: str, username: str, password: str) -> SignedIn:
    response = httpx.post(
        f"{base_url}/api/v1/auth/token", data={"username": username, "password": password}, timeout=30
    )
    response.raise_for_status()
    body = response.json()
    return SignedIn(username, str(body["access_token"]), body.get("token_id"))


Protected = dict[str, dict[int, int]]


def seed_data(base_url: str, me: SignedIn, study_files: list[tuple[str, bytes]]) -> Protected:
    """An analysed study (so that ids 1, 2 ... reach real rows), a spare user and a spare token.

    Returns ``protected`` for run_schemathesis: path parameter → {id the fuzzer must not touch:
    id to use instead}. A fuzzer that deactivates, demotes or re-passwords the signed-in
    administrator, or revokes its token, would turn the rest of the run into 401s.
    """
    headers = {"Authorization": f"Bearer {me.token}"}
    files = [("files", (name, data, "application/dicom")) for name, data in study_files]
    response = httpx.post(f"{base_url}/api/v1/studies", files=files, headers=headers, timeout=120)
    assert response.status_code == 202, response.text
    study_id = response.json()["study_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = httpx.get(f"{base_url}/api/v1/studies/{study_id}", headers=headers, timeout=30).json()[
            "status"
        ]
        if status in ("done", "failed"):
            break
        time.sleep(0.5)
    spare = httpx.post(
        f"{base_url}/api/v1/users",
        json={"username": "fuzz-spare", "password": "a long spare password 1"},
        headers=headers,
        timeout=30,
    )
    assert spare.status_code == 201, spare.text
    users = httpx.get(f"{base_url}/api/v1/users", headers=headers, timeout=30).json()
    own = next(u["id"] for u in users if u["username"] == me.username)
    protected: Protected = {"user_id": {own: int(spare.json()["id"])}}
    spare_token = httpx.post(
        f"{base_url}/api/v1/tokens", json={"name": "fuzz-spare"}, headers=headers, timeout=30
    )
    if me.token_id is not None and spare_token.status_code == 201:
        protected["token_id"] = {int(me.token_id): int(spare_token.json()["id"])}
    return protected


def _checks() -> list[Any]:
    from schemathesis.checks import load_all_checks
    from schemathesis.openapi import checks as openapi_checks

    load_all_checks()
    import schemathesis.checks as core_checks

    found = []
    for name in CHECK_NAMES:
        check = getattr(openapi_checks, name, None) or getattr(core_checks, name, None)
        if check is None:
            from schemathesis.specs.openapi import checks as spec_checks

            check = getattr(spec_checks, name)
        found.append(check)
    return found


@dataclass
class _Run:
    """What every generated case of one run shares."""

    base_url: str
    headers: dict[str, str]
    session: Any
    checks: list[Any]
    protected: Protected
    report: FuzzReport
    deadline: float | None

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def send(self, case: Any, label: str) -> None:
        """Send one case and check its answer; count what went wrong."""
        if self.out_of_time():
            return
        for name, swaps in self.protected.items():
            value = (case.path_parameters or {}).get(name)
            if isinstance(value, int) and value in swaps:
                case.path_parameters[name] = swaps[value]
        self.report.cases += 1
        try:
            response = case.call(
                base_url=self.base_url, session=self.session, headers=self.headers, timeout=60
            )
        except Exception as exc:  # a reset connection is a failure like a 500
            _record(self.report, label, "connection", f"{label}: {type(exc).__name__}: {exc}")
            return
        self.report.by_status[response.status_code] += 1
        if response.status_code >= 500:
            self.report.server_errors += 1
        try:
            case.validate_response(response, checks=self.checks, headers=self.headers)
        except BaseExceptionGroup as group:  # schemathesis' FailureGroup: one per failed check
            for failure in group.exceptions:
                title = getattr(failure, "title", type(failure).__name__)
                _record(self.report, label, str(title), f"{label}: {_short(group)}")
        except Exception as exc:
            _record(self.report, label, type(exc).__name__, f"{label}: {_short(exc)}")


def run_schemathesis(
    base_url: str,
    token: str,
    *,
    max_examples: int,
    seed: int,
    protected: Protected | None = None,
    time_budget_s: float | None = None,
    modes: tuple[str, ...] = ("positive", "negative"),
    only: set[str] | None = None,
    edit_document: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> FuzzReport:
    """Run every operation ``max_examples`` times per generation mode; count the failures.

    ``protected``: path parameter → {id the fuzzer must not change: id to use instead}
    (see seed_data). ``only``: operation labels ("GET /api/v1/users") to run;
    ``edit_document``: changes the document before the run (the tests break it on purpose to
    see the checks fail).
    """
    import requests
    import schemathesis
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    document = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    if edit_document is not None:
        document = edit_document(document)
    schema = schemathesis.openapi.from_dict(document)
    started = time.monotonic()
    run = _Run(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}"},
        session=requests.Session(),
        checks=_checks(),
        protected=protected or {},
        report=FuzzReport(),
        deadline=None if time_budget_s is None else started + time_budget_s,
    )
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        if only is not None and label not in only:
            continue
        for mode_name in modes:
            if run.out_of_time():
                break
            test = _hypothesis_test(
                run, operation, GenerationMode(mode_name), f"{label} [{mode_name}]", max_examples, seed
            )
            try:
                test()
            except Unsatisfiable:  # nothing to make invalid: an operation without parameters
                continue
            except Exception:  # hypothesis itself failed
                _record(run.report, label, "generation", f"{label}: {traceback.format_exc(limit=2)[-400:]}")
    run.report.seconds = time.monotonic() - started
    return run.report


def _hypothesis_test(
    run: _Run, operation: Any, mode: Any, label: str, max_examples: int, seed: int
) -> Callable[[], None]:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    @hypothesis_seed(seed)
    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def test(case: Any) -> None:
        run.send(case, label)

    return test  # type: ignore[no-any-return]


def _record(report: FuzzReport, label: str, check: str, example: str) -> None:
    report.failures += 1
    report.by_check[check] += 1
    report.by_operation[label.split(" [")[0]] += 1
    if len(report.examples) < 10:
        report.examples.append(example[:1500])


def _short(exc: BaseException) -> str:
    return str(exc).strip()
