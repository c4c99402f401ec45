"""The case page and the study API read a case in a fixed number of SQL statements, however many
images and diagnoses (by however many readers) it has: no query per image, per diagnosis or per
signer (docs/deployment.md, "Latency"). Counted on the real database with SQLAlchemy's cursor
events, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event
from web_support import PASSWORD, db_url, study_files, web  # noqa: F401

# Today eight: the user with its session or token (one join); the study with its patient; its
# analyses with their verdicts; its diagnoses with their signers; its images with the latest
# analysis's results (one join); an open reader-study read; the latest PACS push; the audit row.
# Room for one more, not for one per image.
MOST_STATEMENTS = 9
# The case page adds its own, also fixed: the soft reading lock (a look for one's own fresh lock;
# missing it, the claim read and locked, created first when the case has none, then written, with
# its audit row and the study read again after that commit) and the active users of the
# assignment form.
MOST_PAGE_STATEMENTS = MOST_STATEMENTS + 9


@contextmanager
def counting(engine) -> Iterator[list[str]]:  # type: ignore[no-untyped-def]
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _done_study(h, n_images: int, seed: int) -> int:  # type: ignore[no-untyped-def]
    study_id = h.upload(study_files(n_images, seed=seed, patient_id=f"PID-{seed}")).json()["study_id"]
    assert h.wait_for(study_id)["status"] == "done"
    return int(study_id)


def _diagnose(h, study_id: int) -> None:  # type: ignore[no-untyped-def]
    """A preliminary read by rad and a final one by rad2: two diagnoses, two signers."""
    url = f"/api/v1/studies/{study_id}/diagnosis"
    first = h.client.post(url, json={"label": "normal", "kind": "preliminary"}, headers=h.auth("rad"))
    assert first.status_code == 201, first.text
    final = h.client.post(url, json={"label": "normal", "confidence": 3}, headers=h.auth("rad2"))
    assert final.status_code == 201, final.text


def _sign_in(h) -> None:  # type: ignore[no-untyped-def]
    login = h.client.get("/login").text
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', login).group(1)  # type: ignore[union-attr]
    answer = h.client.post(
        "/login",
        data={"username": "rad", "password": PASSWORD, "csrf_token": csrf, "next": "/"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text


def test_case_reads_take_a_fixed_number_of_statements(web) -> None:  # noqa: F811
    h = web()
    small = _done_study(h, 1, seed=0)
    large = _done_study(h, 6, seed=10)
    _diagnose(h, large)
    # Nothing else may talk to the database while counting.
    h.runtime.worker.stop()
    _sign_in(h)
    api = h.auth("rad")
    h.client.get(f"/api/v1/studies/{small}", headers=api)  # the token's last use is now written

    counts: dict[tuple[str, int], int] = {}
    for study_id in (small, large):
        for kind, path, headers in (
            ("api", f"/api/v1/studies/{study_id}", api),
            ("page", f"/cases/{study_id}", {}),
        ):
            with counting(h.runtime.db_engine) as statements:
                answer = h.client.get(path, headers=headers)
            assert answer.status_code == 200, answer.text
            counts[(kind, study_id)] = len(statements)
            most = MOST_PAGE_STATEMENTS if kind == "page" else MOST_STATEMENTS
            assert len(statements) <= most, (path, statements)

    body = h.client.get(f"/api/v1/studies/{large}", headers=api).json()
    assert len(body["images"]) == 6 and len(body["diagnoses"]) == 2
    assert {d["signed_by"] for d in body["diagnoses"]} == {"rad", "rad2"}
    # The six-image case with two signed diagnoses costs what the one-image case costs.
    assert counts[("api", small)] == counts[("api", large)], counts
    assert counts[("page", small)] == counts[("page", large)], counts

    # Re-opening a case whose lock one renewed moments ago reads the claim and writes nothing.
    with counting(h.runtime.db_engine) as statements:
        assert h.client.get(f"/cases/{large}").status_code == 200
    claim_writes = [s for s in statements if re.match(r"\s*(UPDATE|INSERT INTO) study_claims", s)]
    assert not claim_writes and len(statements) < counts[("page", large)] - 2, statements
