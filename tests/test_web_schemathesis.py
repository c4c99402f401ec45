"""Schemathesis against the live app (uvicorn, SQLite and PostgreSQL): a short seeded run
over every operation, positive and negative, with zero server errors and zero answers that
the OpenAPI document does not describe. benchmarks/schemathesis_api.py is the long run.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from schemathesis_support import SignedIn, run_schemathesis, seed_data, sign_in
from web_browser_support import PASSWORD, live_server
from web_support import BACKENDS, new_database, study_files

pytestmark = pytest.mark.slow
pytest.importorskip("schemathesis")

SEED = 20261203
EXAMPLES = 12  # per operation and mode: ~270 requests, well under a minute


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Any:
    url = None if request.param == "sqlite" else new_database("postgres", tmp_path_factory, request.config)
    with live_server(tmp_path_factory.mktemp("st"), tiny_model_dir, database_url=url) as live:
        yield live


@pytest.fixture(scope="module")
def me(server: Any) -> SignedIn:
    """Signed in once: after the fuzzer's wrong passwords this address is throttled (429)."""
    return sign_in(server.url, "admin", PASSWORD)


def test_generated_requests_get_no_5xx_and_only_documented_answers(server: Any, me: SignedIn) -> None:
    protected = seed_data(server.url, me, study_files(2))
    report = run_schemathesis(server.url, me.token, max_examples=EXAMPLES, seed=SEED, protected=protected)
    summary = report.as_json()
    assert report.cases >= 200, summary
    assert report.server_errors == 0, summary
    assert report.failures == 0, summary
    # The run reached real rows, not only 404s and 422s.
    assert summary["by_status"].get("200", 0) > 0, summary
    log = server.log_path.read_text(errors="replace")
    assert "unexpected error" not in log and "Traceback" not in log, server.log_tail()


def test_the_checks_catch_answers_the_document_does_not_describe(server: Any, me: SignedIn) -> None:
    """The same harness against a document broken on purpose: a 404 left out, and a worklist
    row's id said to be a string. Both must be reported."""

    def break_document(document: dict[str, Any]) -> dict[str, Any]:
        document = copy.deepcopy(document)
        del document["paths"]["/api/v1/studies/{study_id}"]["get"]["responses"]["404"]
        document["components"]["schemas"]["StudySummaryOut"]["properties"]["id"] = {"type": "string"}
        return document

    report = run_schemathesis(
        server.url,
        me.token,
        max_examples=EXAMPLES,
        seed=SEED,
        modes=("positive",),
        only={"GET /api/v1/studies/{study_id}", "GET /api/v1/studies"},
        edit_document=break_document,
    )
    assert set(report.by_operation) == {"GET /api/v1/studies/{study_id}", "GET /api/v1/studies"}, (
        report.as_json()
    )
    assert "Undocumented status code" in report.by_check, report.as_json()
    assert "Response violates schema" in report.by_check, report.as_json()
