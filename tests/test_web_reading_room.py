"""The reading room's server side, on SQLite and PostgreSQL: the worklist past 500 cases (paging,
true total, search and filters over every case, indeterminate ranked above normal), the audit
page (paging newest first, filters, CSV, one image view per case view), re-uploads, the per-file
limit, derived agreement, assignment and the soft reading lock, and case-insensitive user names."""

from __future__ import annotations

import csv
import io
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pydicom
import pytest
from reading_room_support import seed_cases, verdict_for
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError
from web_support import (  # noqa: F401
    PASSWORD,
    db_url,
    dicom_bytes,
    fresh_db_url,
    png_bytes,
    study_files,
    ultrasound_pixels,
    web,
)

from app.web.core.db import make_engine, make_session_factory, utcnow
from app.web.core.migrations import current_revision, downgrade_database, head_revision, upgrade_database
from app.web.core.models import AuditEvent, Study, StudyClaim, User
from app.web.errors import Conflict
from app.web.services.claims import LOCK_S, RENEW_AFTER_S, assign, take_lock
from app.web.services.studies import WorklistQuery, worklist_page
from app.web.services.users import create_user, find_user


def _cookie_sign_in(h, username: str) -> str:
    """Sign the harness's client in through the login form; returns the page CSRF token."""
    token = re.search(r'name="csrf-token" content="([^"]+)"', h.client.get("/login").text).group(1)
    answer = h.client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token, "next": "/"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return re.search(r'name="csrf-token" content="([^"]+)"', h.client.get("/").text).group(1)


def test_the_worklist_pages_past_500_cases_with_a_true_total(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    ids = seed_cases(h.runtime.db_engine, 530)
    _cookie_sign_in(h, "rad")

    first = h.client.get("/worklist/data").json()
    assert first["total"] == 530 and first["pages"] == 11 and len(first["items"]) == 50
    last = h.client.get("/worklist/data?page=11").json()
    assert len(last["items"]) == 30 and last["page"] == 11
    seen = {
        item["id"] for p in range(1, 12) for item in h.client.get(f"/worklist/data?page={p}").json()["items"]
    }
    assert seen == set(ids)  # every case on exactly one page

    # The newest case (the 530th) is found by search and by the "Not reviewed" filter.
    newest = h.client.get("/worklist/data?q=BULK-00530").json()
    assert newest["total"] == 1 and newest["items"][0]["id"] == ids[-1]
    by_case = h.client.get(f"/worklist/data?q=%23{ids[-1]}").json()
    assert [i["id"] for i in by_case["items"]] == [ids[-1]]
    unreviewed = h.client.get("/worklist/data?reviewed=no&sort=date&dir=desc").json()
    assert unreviewed["total"] == 530 and unreviewed["items"][0]["id"] == ids[-1]

    # "Most suspicious first": anomalies, then no verdict, then normal; never indeterminate below normal.
    order = []
    for p in range(1, 12):
        order += [i["verdict"]["label"] for i in h.client.get(f"/worklist/data?page={p}").json()["items"]]
    kinds = ["normal" if v == "normal" else "none" if v == "indeterminate" else "anomaly" for v in order]
    assert kinds == sorted(kinds, key=["anomaly", "none", "normal"].index)
    indeterminate = h.client.get("/worklist/data?verdict=indeterminate").json()
    assert indeterminate["total"] == sum(1 for n in range(1, 531) if verdict_for(n)[0] == "indeterminate")
    anomalies = h.client.get("/worklist/data?verdict=abnormal&min_p=90").json()
    expected = sum(
        1
        for n in range(1, 531)
        if verdict_for(n)[0] not in ("normal", "indeterminate") and verdict_for(n)[1] >= 0.9
    )
    assert anomalies["total"] == expected
    dated = h.client.get("/worklist/data?date_from=2024-01-02&date_to=2024-01-11").json()
    assert dated["total"] == 10

    # The page itself renders the same page and puts the filters back into the form.
    html = h.client.get("/?verdict=indeterminate&q=BULK").text
    assert '<option value="indeterminate" selected>' in html and 'value="BULK"' in html
    assert "Page 1 of" in html

    # The JSON API pages the same way past 500.
    api = h.client.get("/api/v1/studies?limit=50&offset=500", headers=h.auth()).json()
    assert len(api) == 30


def test_readers_opening_a_new_case_at_the_same_instant_all_get_it(web) -> None:  # noqa: F811
    """The first opening creates the case's claim row: concurrent first openings by several
    readers must all answer, one of them holding the lock (a plain INSERT failed the others on
    the unique constraint, a 500 on the case page)."""
    h = web(worker_enabled=False)
    ids = seed_cases(h.runtime.db_engine, 3)
    readers = ["rad", "rad2", "admin"] * 2
    for study_id in ids:
        start = threading.Barrier(len(readers))

        def open_case(
            username: str, study_id: int = study_id, start: threading.Barrier = start
        ) -> str | None:
            with h.runtime.session_factory() as db:
                user = find_user(db, username)
                assert user is not None
                start.wait()
                return take_lock(db, study_id, user).locked_by

        with ThreadPoolExecutor(len(readers)) as pool:
            holders = list(pool.map(open_case, readers))
        assert len(set(holders)) == 1 and holders[0] in readers, holders
        with h.runtime.session_factory() as db:
            assert db.scalar(select(func.count()).where(StudyClaim.study_id == study_id)) == 1
            locks = select(func.count()).where(
                AuditEvent.action == "study.lock", AuditEvent.study_id == study_id
            )
            assert db.scalar(locks) == 1


def test_worklist_service_filters_assignment_and_reading_lock(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    ids = seed_cases(h.runtime.db_engine, 12)
    with h.runtime.session_factory() as db:
        rad = find_user(db, "rad")
        rad2 = find_user(db, "RAD2")  # names ignore case
        assert rad is not None and rad2 is not None
        assign(db, ids[0], rad2, rad.id)
        view = take_lock(db, ids[0], rad)
        assert view.locked_by == "rad"
        # Another reader sees who reads it and does not take it by opening it.
        assert take_lock(db, ids[0], rad2).locked_by == "rad"
        page = worklist_page(db, rad2, "concurrent", WorklistQuery(assigned=str(rad.id)), limit=50)
        assert [s.id for s in page.items] == [ids[0]]
        assert page.items[0].assigned_to == "rad" and page.items[0].reading_by == "rad"
        mine = worklist_page(db, rad, "concurrent", WorklistQuery(assigned="me"), limit=50)
        assert mine.total == 1
        assert worklist_page(db, rad, "concurrent", WorklistQuery(assigned="none"), limit=50).total == 11
        # Taking over is explicit, and audited.
        assert take_lock(db, ids[0], rad2, take_over=True).locked_by == "rad2"
        actions = list(db.scalars(select(AuditEvent.action).where(AuditEvent.study_id == ids[0])))
        assert actions.count("study.lock") == 2 and actions.count("study.assign") == 1
        # A renewal is no new audit row.
        take_lock(db, ids[0], rad2)
        assert db.scalar(select(func.count()).where(AuditEvent.action == "study.lock")) == 2
        # Re-opening within RENEW_AFTER_S of the last renewal writes nothing; a later one renews.
        expiry = select(StudyClaim.lock_expires_at).where(StudyClaim.study_id == ids[0])
        renewed = db.scalar(expiry)
        take_lock(db, ids[0], rad2)
        assert db.scalar(expiry) == renewed
        older = utcnow() + timedelta(seconds=LOCK_S - RENEW_AFTER_S - 1)
        db.execute(text("UPDATE study_claims SET lock_expires_at = :t"), {"t": older})
        db.commit()
        assert take_lock(db, ids[0], rad2).locked_by == "rad2"
        assert db.scalar(expiry) > older + timedelta(seconds=RENEW_AFTER_S)
        # An expired lock shows nobody.
        db.execute(
            text("UPDATE study_claims SET lock_expires_at = :t"), {"t": utcnow() - timedelta(seconds=1)}
        )
        db.commit()
        page = worklist_page(db, rad, "concurrent", WorklistQuery(assigned=str(rad.id)), limit=50)
        assert page.items[0].reading_by is None
        # Second-read mode: no verdict filter, no suspicion order.
        blind = worklist_page(db, rad, "second-read", WorklistQuery(verdict="indeterminate"), limit=50)
        assert blind.total == 12 and all(s.verdict is None for s in blind.items)


def test_the_case_page_takes_the_lock_and_assigns(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    (sid,) = seed_cases(h.runtime.db_engine, 1)
    csrf = _cookie_sign_in(h, "rad")
    page = h.client.get(f"/cases/{sid}").text
    assert "data-lock-mine" in page
    renew = h.client.post(f"/cases/{sid}/lock", headers={"X-CSRF-Token": csrf}).json()
    assert renew["mine"] and renew["locked_by"] == "rad"
    with h.runtime.session_factory() as db:
        rad2 = find_user(db, "rad2")
    answer = h.client.post(
        f"/cases/{sid}/assign", data={"assignee": str(rad2.id), "csrf_token": csrf}, follow_redirects=False
    )
    assert answer.status_code == 303
    assert "Assignment saved." in h.client.get(answer.headers["location"]).text
    bad = h.client.post(f"/cases/{sid}/assign", data={"assignee": "999999", "csrf_token": csrf})
    assert bad.status_code == 422 and "Choose an active user" in bad.text


def test_audit_page_pages_newest_first_filters_and_exports_csv(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    ids = seed_cases(h.runtime.db_engine, 3)
    start = utcnow() - timedelta(days=3)
    with h.runtime.db_engine.begin() as connection:
        connection.execute(
            insert(AuditEvent),
            [
                {
                    "at": start + timedelta(minutes=i),
                    "username": "=cmd()" if i == 0 else "rad" if i % 2 else "rad2",
                    "action": "study.view" if i % 3 else "diagnosis.record",
                    "study_id": ids[i % 3],
                    "detail": {"n": i},
                }
                for i in range(2600)
            ],
        )
    _cookie_sign_in(h, "admin")
    page = h.client.get("/admin/audit").text
    assert "of 26" in page  # 2,600 seeded (+ the sign-in), all counted
    newest = re.findall(r'<td class="num">([^<]+)</td>', page)
    assert newest == sorted(newest, reverse=True)
    assert "Older events" in page
    filtered = h.client.get(f"/admin/audit?user=RAD&action=study.view&case={ids[1]}").text
    expected = sum(1 for i in range(2600) if i % 2 and i % 3 and i % 3 == 1)
    assert f"of {expected}," in filtered
    day = (start + timedelta(minutes=5)).date()
    one_day = h.client.get(f"/admin/audit?date_from={day}&date_to={day}&action=diagnosis.record").text
    assert "No events match." not in one_day

    export = h.client.get(f"/admin/audit.csv?user=rad&case={ids[1]}&action=study.view")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(export.text)))
    assert rows[0] == ["id", "at", "username", "action", "case", "detail"]
    assert len(rows) - 1 == expected
    assert [int(r[0]) for r in rows[1:]] == sorted((int(r[0]) for r in rows[1:]), reverse=True)
    everything = list(csv.reader(io.StringIO(h.client.get("/admin/audit.csv").text)))
    assert len(everything) - 1 >= 2600  # streamed in batches, nothing cut off
    formula = [r for r in everything if "cmd()" in r[2]]
    assert formula and formula[0][2] == "'=cmd()"  # a failed sign-in's name is no spreadsheet formula
    with h.runtime.session_factory() as db:
        assert db.scalar(select(func.count()).where(AuditEvent.action == "audit.export")) == 2
    # Radiologists have no audit page.
    h.client.post("/logout", data={"csrf_token": re.search(r'csrf-token" content="([^"]+)"', page).group(1)})
    _cookie_sign_in(h, "rad")
    assert h.client.get("/admin/audit.csv", follow_redirects=False).status_code in (303, 403)


def test_a_reupload_of_stored_files_points_at_its_case(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    files = study_files(2, seed=11)
    first = h.upload(files)
    assert first.status_code == 202 and first.json()["studies"][0]["duplicate"] is False
    again = h.upload(files, gestational_age_weeks="31")
    assert again.status_code == 202
    body = again.json()
    assert body["study_id"] == first.json()["study_id"] and body["studies"][0]["duplicate"] is True
    # The same instances (SOPInstanceUIDs) in other bytes, e.g. re-exported: still no new case.
    reexported = []
    for name, data in files:
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.ImageComments = "re-exported by the PACS"
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        reexported.append((name, out.getvalue()))
    assert reexported[0][1] != files[0][1]
    third = h.upload(reexported).json()
    assert third["study_id"] == first.json()["study_id"] and third["studies"][0]["duplicate"] is True
    # PNG exports under a typed patient ID: the same files again make no second case either.
    pngs = [(f"p{i}.png", png_bytes(ultrasound_pixels(40 + i))) for i in range(2)]
    one = h.upload(pngs, patient_id="PNG-1", gestational_age_weeks="20")
    two = h.upload(pngs, patient_id="PNG-1", gestational_age_weeks="22")
    assert two.json()["study_id"] == one.json()["study_id"] and two.json()["studies"][0]["duplicate"]
    # One new file with the stored ones: the new file is added to the stored case.
    more = h.upload([*pngs, ("p9.png", png_bytes(ultrasound_pixels(49)))], patient_id="PNG-1")
    assert more.json()["studies"][0]["duplicate"] is False
    with h.runtime.session_factory() as db:
        assert db.scalar(select(func.count(Study.id))) == 2
        events = list(db.scalars(select(AuditEvent).where(AuditEvent.action == "study.upload")))
        assert sum(1 for e in events if e.detail.get("duplicate")) == 3


def test_only_the_file_over_the_limit_is_refused(web) -> None:  # noqa: F811
    h = web(worker_enabled=False, max_file_bytes=400_000, max_request_bytes=3_000_000)
    big = dicom_bytes(ultrasound_pixels(1, 600, 800))  # ~480 kB > 400 kB per file
    answer = h.upload([*study_files(2, seed=21), ("big.dcm", big)])
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["studies"][0]["n_images"] == 2
    assert [r["filename"] for r in body["rejected"]] == ["big.dcm"]
    assert "larger than the limit" in body["rejected"][0]["reason"]
    assert not any(h.settings.upload_tmp_dir.iterdir())


def test_agreement_follows_from_the_chosen_class(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    ids = seed_cases(h.runtime.db_engine, 2)
    verdict = verdict_for(1)[0]
    other = "normal" if verdict != "normal" else "Anencephaly"
    contradicting = h.client.post(
        f"/api/v1/studies/{ids[0]}/diagnosis", json={"label": other, "agrees_with_ai": True}, headers=h.auth()
    )
    assert contradicting.status_code == 422 and "agree" in contradicting.json()["detail"]
    derived = h.client.post(f"/api/v1/studies/{ids[0]}/diagnosis", json={"label": other}, headers=h.auth())
    assert derived.status_code == 201 and derived.json()["agrees_with_ai"] is False
    # The page derives it: a posted "yes" beside another class is not stored.
    csrf = _cookie_sign_in(h, "rad2")
    second = verdict_for(2)[0]
    form = {"csrf_token": csrf, "kind": "final", "label": second, "agrees_with_ai": "no", "confidence": "3"}
    assert h.client.post(f"/cases/{ids[1]}/diagnosis", data=form, follow_redirects=False).status_code == 303
    case = h.client.get(f"/api/v1/studies/{ids[1]}", headers=h.auth("rad2")).json()
    assert case["diagnoses"][-1]["agrees_with_ai"] is True


def test_a_rejected_read_comes_back_filled_in(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    (sid,) = seed_cases(h.runtime.db_engine, 1)
    csrf = _cookie_sign_in(h, "rad")
    form = {
        "csrf_token": csrf,
        "kind": "final",
        "label": "Holoprosencephaly",
        "confidence": "",
        "notes": "fused thalami",
    }
    answer = h.client.post(f"/cases/{sid}/diagnosis", data=form)
    assert answer.status_code == 422
    assert 'value="Holoprosencephaly" required checked' in answer.text
    assert "fused thalami</textarea>" in answer.text
    # A read posted after the session ended returns to the case after the new sign-in.
    h.client.post("/logout", data={"csrf_token": csrf})
    lost = h.client.post(f"/cases/{sid}/diagnosis", data={**form, "confidence": "4"}, follow_redirects=False)
    assert lost.status_code in (303, 403)
    back = h.client.get(f"/cases/{sid}/diagnosis", follow_redirects=False)
    assert back.headers["location"].startswith("/login?next=/cases/")
    _cookie_sign_in(h, "rad")
    landed = h.client.get(f"/cases/{sid}/diagnosis")
    assert landed.status_code == 200 and "filled in again below" in landed.text


def test_user_names_are_unique_whatever_their_case(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    with h.runtime.session_factory() as db, pytest.raises(Conflict, match="taken"):
        create_user(db, "RAD", "a long enough password")
    # Sign-in takes the name in any case.
    answer = h.client.post("/api/v1/auth/token", data={"username": "Rad", "password": PASSWORD})
    assert answer.status_code == 200
    # The database refuses a pair too, whatever writes it.
    with pytest.raises(IntegrityError), h.runtime.db_engine.begin() as connection:
        connection.execute(
            insert(User),
            [{"username": "ADMIN", "password_hash": "x", "role": "radiologist", "active": True}],
        )


def test_migration_0010_stops_on_names_that_differ_only_in_case(fresh_db_url: str) -> None:  # noqa: F811
    downgrade_database(fresh_db_url, "0009")
    engine = make_engine(fresh_db_url)
    try:
        with engine.begin() as connection:
            for name in ("bob", "Bob", "carol"):
                connection.execute(
                    text(
                        "INSERT INTO users (username, password_hash, role, active, created_at) "
                        "VALUES (:n, 'x', 'radiologist', :a, :t)"
                    ),
                    {"n": name, "a": True, "t": utcnow()},
                )
        with pytest.raises(Exception, match=r"differ only in case: 'bob' \(id \d+\), 'Bob' \(id \d+\)"):
            upgrade_database(fresh_db_url)
        assert current_revision(fresh_db_url) == "0009"  # nothing changed
        with make_session_factory(engine)() as db:
            from app.web.services.users import rename_user

            bob = db.scalar(select(User).where(User.username == "Bob"))
            rename_user(db, bob.id, "bob.senior", None)
        upgrade_database(fresh_db_url)
        assert current_revision(fresh_db_url) == head_revision(fresh_db_url)
    finally:
        engine.dispose()


def test_dates_are_whole_days(web) -> None:  # noqa: F811
    """A date filter of one day covers the whole UTC day (end inclusive)."""
    h = web(worker_enabled=False)
    _cookie_sign_in(h, "admin")
    today = utcnow().date()  # the filter's days are UTC days
    page = h.client.get(f"/admin/audit?date_from={today}&date_to={today}&action=auth.login").text
    assert "of 1," in page
