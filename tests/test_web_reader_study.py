"""The reader study through the real app and database: building it, reading it, and blinding.

Readers are scripted through the JSON API exactly as a site would script them.
"""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select
from web_support import db_url, study_files, web  # noqa: F401

from app.web.core.db import utcnow
from app.web.core.models import AuditEvent, ReaderStudyRead, User
from app.web.services.reader_reads import answer_read, next_read, ping

pytestmark = pytest.mark.slow

MODES = ["unassisted", "concurrent", "second-read"]
AI_KEYS = ("verdict", "label", "probabilities", "heatmap_url")


def _cases(h, n: int) -> list[int]:
    ids = [h.upload(study_files(2, patient_id=f"RS-{i}", seed=10 * i)).json()["study_id"] for i in range(n)]
    for study_id in ids:
        assert h.wait_for(study_id)["status"] == "done"
    return ids


def _ai_fields_present(case: dict) -> bool:
    if case.get("verdict") is not None:
        return True
    return any(image.get(key) is not None for image in case["images"] for key in AI_KEYS[1:])


def _create(h, study_ids: list[int], **extra) -> int:
    body = {
        "name": "pilot",
        "study_ids": study_ids,
        "readers": ["rad", "rad2"],
        "modes": MODES,
        "design": "crossover",
        "washout_days": 0,
        "reference": {str(s): "normal" for s in study_ids},
        "seed": 3,
        **extra,
    }
    response = h.client.post("/api/v1/reader-studies", json=body, headers=h.auth("admin"))
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_readers_work_through_all_modes_blinded_until_the_mode_allows(web) -> None:  # noqa: F811
    h = web()
    study_ids = _cases(h, 3)
    body = {"name": "x", "study_ids": study_ids, "readers": ["rad"], "modes": MODES, "reference": {}}
    assert h.client.post("/api/v1/reader-studies", json=body, headers=h.auth("rad")).status_code == 403
    rs = _create(h, study_ids)
    base = f"/api/v1/reader-studies/{rs}"
    # An administrator who is not a reader gets no reads.
    assert h.client.get(f"{base}/next", headers=h.auth("admin")).status_code == 403

    seen: list[tuple[int, str]] = []
    rad2_read = h.client.get(f"{base}/next", headers=h.auth("rad2")).json()["read_id"]
    while True:
        response = h.client.get(f"{base}/next", headers=h.auth("rad"))
        if response.status_code == 204:
            break
        assert response.status_code == 200, response.text
        read = response.json()
        text = json.dumps(read)
        assert "reference" not in text and "rad2" not in text
        seen.append((read["study_id"], read["mode"]))
        mode, case = read["mode"], read["study"]
        assert _ai_fields_present(case) == (mode == "concurrent"), (mode, case)
        # The same read again (a reload) is the same read, still blinded.
        again = h.client.get(f"{base}/next", headers=h.auth("rad")).json()
        assert again["read_id"] == read["read_id"] and _ai_fields_present(again["study"]) == (
            mode == "concurrent"
        )
        # Outside the reading page the case stays closed to its reader until every read of it is
        # answered: the case API refuses it, the worklist lists it without AI or diagnosis, and the
        # heatmap route follows the read's mode.
        blinded = mode != "concurrent"
        case_api = h.client.get(f"/api/v1/studies/{read['study_id']}", headers=h.auth("rad"))
        assert case_api.status_code == 403 and "reader study" in case_api.json()["detail"]
        assert h.client.get(f"/api/v1/studies/{read['study_id']}", headers=h.auth("admin")).status_code == 200
        listed = {row["id"]: row for row in h.client.get("/api/v1/studies", headers=h.auth("rad")).json()}
        row = listed[read["study_id"]]
        assert row["ai_withheld"] and row["in_reader_study"] and row["verdict"] is None
        heatmap = h.client.get(f"/api/v1/images/{case['images'][0]['id']}/heatmap", headers=h.auth("rad"))
        assert heatmap.status_code == (403 if blinded else 200)
        url = f"{base}/reads/{read['read_id']}"
        # Another reader cannot answer (or learn of) this read.
        assert (
            h.client.post(url, json={"label": "normal", "confidence": 3}, headers=h.auth("rad2")).status_code
            == 404
        )
        assert (
            h.client.post(url, json={"label": "nonsense", "confidence": 3}, headers=h.auth("rad")).status_code
            == 422
        )
        assert (
            h.client.post(url, json={"label": "normal", "confidence": 6}, headers=h.auth("rad")).status_code
            == 422
        )
        first = h.client.post(url, json={"label": "normal", "confidence": 2}, headers=h.auth("rad"))
        assert first.status_code == 201, first.text
        if mode == "second-read":
            assert first.json()["final"] is False
            assert first.json()["study"]["verdict"] is not None
            resumed = h.client.get(f"{base}/next", headers=h.auth("rad")).json()
            assert resumed["read_id"] == read["read_id"] and resumed["awaiting_final"] is True
            assert _ai_fields_present(resumed["study"])
            final = h.client.post(url, json={"label": "Anencephaly", "confidence": 4}, headers=h.auth("rad"))
            assert final.status_code == 201 and final.json()["final"] is True
        else:
            assert first.json() == {"read_id": read["read_id"], "final": True, "study": None}
        assert (
            h.client.post(url, json={"label": "normal", "confidence": 2}, headers=h.auth("rad")).status_code
            == 409
        )

    # Each case once per mode, and rad2's open read was untouched by rad's work.
    assert sorted(seen) == sorted((s, m) for s in study_ids for m in MODES)
    with h.runtime.session_factory() as db:
        rows = list(db.scalars(select(ReaderStudyRead).where(ReaderStudyRead.user_id == _uid(db, "rad"))))
        second = [r for r in rows if r.mode == "second-read"]
        assert all(r.first_label == "normal" and r.label == "Anencephaly" for r in second)
        assert all(r.read_time_s is not None and r.read_time_s >= 0 for r in rows)
        assert db.get(ReaderStudyRead, rad2_read).answered_at is None
        actions = [
            e.action for e in db.scalars(select(AuditEvent).where(AuditEvent.action.like("reader_study.%")))
        ]
        assert actions.count("reader_study.answer") == 9 and actions.count("reader_study.first_answer") == 3
        assert actions.count("reader_study.create") == 1
        details = json.dumps([e.detail for e in db.scalars(select(AuditEvent))])
        assert "RS-0" not in details and "Testpatient" not in details


def _uid(db, name: str) -> int:
    return db.scalar(select(User.id).where(User.username == name))


def test_washout_holds_back_a_cases_next_session_and_idle_gaps_are_excluded(web) -> None:  # noqa: F811
    h = web()
    study_ids = _cases(h, 2)
    rs = _create(h, study_ids, modes=["unassisted", "concurrent"], washout_days=14, idle_threshold_s=30)
    classes = list(h.runtime.class_names)
    t0 = utcnow()
    with h.runtime.session_factory() as db:
        rad = db.scalar(select(User).where(User.username == "rad"))
        # Session 0: both cases. The first read has a 100 s gap (70 s idle) and activity pings.
        first = next_read(db, rs, rad, classes, now=t0)
        assert first is not None and first.session == 0
        ping(db, rs, first.read_id, rad, now=t0 + timedelta(seconds=10))
        ping(db, rs, first.read_id, rad, now=t0 + timedelta(seconds=110))
        answer_read(db, rs, first.read_id, rad, "normal", 3, classes, now=t0 + timedelta(seconds=115))
        row = db.get(ReaderStudyRead, first.read_id)
        assert row.idle_s == pytest.approx(70) and row.read_time_s == pytest.approx(45)
        second = next_read(db, rs, rad, classes, now=t0 + timedelta(seconds=120))
        assert second is not None and second.session == 0
        answer_read(db, rs, second.read_id, rad, "normal", 3, classes, now=t0 + timedelta(seconds=125))
        # Session 1 waits 14 days after each case's session-0 read.
        with pytest.raises(Exception) as held:
            next_read(db, rs, rad, classes, now=t0 + timedelta(days=13))
        assert getattr(held.value, "status_code", None) == 409 and "washout" in str(held.value)
        later = next_read(db, rs, rad, classes, now=t0 + timedelta(days=14, seconds=116))
        assert later is not None and later.session == 1 and later.study_id == first.study_id
    # The other reader is not held back by this reader's washout.
    assert h.client.get(f"/api/v1/reader-studies/{rs}/next", headers=h.auth("rad2")).status_code == 200


def test_reference_from_csv_by_uid_and_from_signed_diagnoses(web) -> None:  # noqa: F811
    h = web()
    a, b, c = _cases(h, 3)
    uid_a = h.client.get(f"/api/v1/studies/{a}", headers=h.auth("admin")).json()["study_uid"]
    signed = h.client.post(
        f"/api/v1/studies/{c}/diagnosis",
        json={"label": "Holoprosencephaly", "kind": "final"},
        headers=h.auth("rad"),
    )
    assert signed.status_code == 201, signed.text
    body = {
        "name": "refs",
        "study_ids": [a, b, c],
        "readers": ["rad"],
        "modes": ["unassisted"],
        "reference_csv": f"study_uid,label\n{uid_a},Anencephaly\n",
        "reference": {str(b): "normal"},
        "reference_from_diagnoses": True,
    }
    response = h.client.post("/api/v1/reader-studies", json=body, headers=h.auth("admin"))
    assert response.status_code == 201, response.text
    from app.web.core.models import ReaderStudyCase

    with h.runtime.session_factory() as db:
        cases = {
            row.study_id: (row.reference_label, row.reference_source)
            for row in db.scalars(
                select(ReaderStudyCase).where(ReaderStudyCase.reader_study_id == response.json()["id"])
            )
        }
    assert cases == {
        a: ("Anencephaly", "import"),
        b: ("normal", "import"),
        c: ("Holoprosencephaly", "diagnosis"),
    }
    # The reference of c is rad's own signed diagnosis: while rad has reads of c to answer, the
    # worklist does not list it and the case API and the case's PACS results refuse the case.
    rows = {row["id"]: row for row in h.client.get("/api/v1/studies", headers=h.auth("rad")).json()}
    assert rows[c]["final_label"] is None and rows[c]["in_reader_study"] and rows[c]["reviewed"]
    assert h.client.get(f"/api/v1/studies/{c}", headers=h.auth("rad")).status_code == 403
    assert h.client.get(f"/api/v1/studies/{c}/report.pdf", headers=h.auth("rad")).status_code == 403
    assert h.client.get("/api/v1/studies", headers=h.auth("rad2")).json()[0]["in_reader_study"] is False
    rs = response.json()["id"]
    while (
        nxt := h.client.get(f"/api/v1/reader-studies/{rs}/next", headers=h.auth("rad"))
    ).status_code == 200:
        answer = {"label": "normal", "confidence": 3}
        posted = h.client.post(
            f"/api/v1/reader-studies/{rs}/reads/{nxt.json()['read_id']}", json=answer, headers=h.auth("rad")
        )
        assert posted.status_code == 201
    # Every read answered: the case is an ordinary case again for rad.
    assert (
        h.client.get(f"/api/v1/studies/{c}", headers=h.auth("rad")).json()["final_label"]
        == "Holoprosencephaly"
    )
    # Without the diagnoses, case c has no reference; unknown labels, users and cases are refused.
    for change, words in [
        ({"reference_from_diagnoses": False}, "without a reference"),
        ({"reference": {str(b): "Migraine"}}, "unknown reference labels"),
        ({"readers": ["nobody"]}, "no active user"),
        ({"reference_csv": "study_uid,label\n9.9.9,normal\n"}, "no case has"),
    ]:
        refused = h.client.post("/api/v1/reader-studies", json={**body, **change}, headers=h.auth("admin"))
        assert refused.status_code == 422 and words in refused.json()["detail"], refused.text


def _script(reader: str, study_id: int, mode: str, reference: dict[int, str]) -> tuple[str, int]:
    """A scripted reader: right on every case when aided; unaided, rad misses the first anomaly
    and rad2 calls the first normal case abnormal. Confidence 4 when right, 5 when wrong."""
    ordered = sorted(reference)
    anomalies = [s for s in ordered if reference[s] != "normal"]
    normals = [s for s in ordered if reference[s] == "normal"]
    truth = reference[study_id]
    if mode == "unassisted" and reader == "rad" and study_id == anomalies[0]:
        return "normal", 5
    if mode == "unassisted" and reader == "rad2" and study_id == normals[0]:
        return "Anencephaly", 5
    return truth, 4


def test_a_scripted_study_gives_the_expected_metrics_and_exports(web) -> None:  # noqa: F811
    from scipy import stats as sps
    from sklearn.metrics import roc_auc_score

    from app.readerstudy.stats import abnormality_score

    h = web()
    study_ids = _cases(h, 4)
    reference = dict(zip(study_ids, ["normal", "Anencephaly", "normal", "Holoprosencephaly"], strict=True))
    rs = _create(
        h, study_ids, modes=["unassisted", "concurrent"], reference={str(k): v for k, v in reference.items()}
    )
    base = f"/api/v1/reader-studies/{rs}"
    for reader in ("rad", "rad2"):
        while (response := h.client.get(f"{base}/next", headers=h.auth(reader))).status_code == 200:
            read = response.json()
            label, confidence = _script(reader, read["study_id"], read["mode"], reference)
            posted = h.client.post(
                f"{base}/reads/{read['read_id']}",
                json={"label": label, "confidence": confidence},
                headers=h.auth(reader),
            )
            assert posted.status_code == 201
        assert response.status_code == 204
    assert h.client.get(f"{base}/results", headers=h.auth("rad")).status_code == 403
    results = h.client.get(f"{base}/results", headers=h.auth("admin")).json()
    unassisted, concurrent = results["modes"]["unassisted"], results["modes"]["concurrent"]
    assert unassisted["n_reads"] == concurrent["n_reads"] == 8
    assert unassisted["accuracy"] == pytest.approx(6 / 8) and concurrent["accuracy"] == 1.0
    assert unassisted["misdiagnosis_rate"] == pytest.approx(2 / 8)
    assert unassisted["per_reader"]["rad"]["accuracy"] == pytest.approx(3 / 4)
    assert unassisted["sensitivity"]["Anencephaly"] == pytest.approx(1 / 2)  # rad missed it
    assert unassisted["specificity"]["normal"] == pytest.approx(3 / 4)  # 4 anomaly reads, 1 called normal
    assert unassisted["sensitivity"]["normal"] == pytest.approx(3 / 4)
    classes = results["classes"]
    confusion = unassisted["confusion"]
    assert confusion[classes.index("Anencephaly")][classes.index("normal")] == 1
    assert sum(map(sum, confusion)) == 8

    export = h.client.get(f"{base}/reads", headers=h.auth("admin")).json()
    assert len(export) == 16 and all(r["label"] is not None for r in export)
    un = sorted((r for r in export if r["mode"] == "unassisted"), key=lambda r: (r["reader"], r["study_id"]))
    co = sorted((r for r in export if r["mode"] == "concurrent"), key=lambda r: (r["reader"], r["study_id"]))
    scores = [abnormality_score(r["label"], r["confidence"], "normal") for r in un]
    assert unassisted["auc"] == pytest.approx(roc_auc_score([r["reference"] != "normal" for r in un], scores))
    comparisons = {c["metric"]: c for c in results["comparisons"] if c["a"] != "ai-alone"}
    versus_ai = {(c["b"], c["metric"]): c for c in results["comparisons"] if c["a"] == "ai-alone"}
    for mode, reads in (("unassisted", un), ("concurrent", co)):
        ai_right = [r["ai_label"] == r["reference"] for r in reads]
        reader_right = [r["label"] == r["reference"] for r in reads]
        c = versus_ai[(mode, "accuracy")]
        assert c["n_pairs"] == 8
        assert c["estimate"] == pytest.approx(np.mean(reader_right) - np.mean(ai_right))
        discordant = [x for x, y in zip(ai_right, reader_right, strict=True) if x != y]
        if discordant:
            expected_p = sps.binomtest(sum(discordant), len(discordant), 0.5).pvalue
            assert c["p_value"] == pytest.approx(expected_p)
    acc = comparisons["accuracy"]
    assert acc["test"] == "mcnemar-exact" and acc["estimate"] == pytest.approx(2 / 8)
    assert acc["p_value"] == pytest.approx(sps.binomtest(0, 2, 0.5).pvalue)
    times = comparisons["read_time_s"]
    expected = sps.wilcoxon(
        [r["read_time_s"] for r in co],
        [r["read_time_s"] for r in un],
        zero_method="wilcox",
        correction=False,
        method="exact" if times["test"] == "wilcoxon-exact" else "approx",
    )
    assert times["p_value"] == pytest.approx(expected.pvalue)
    # Unaided, each reader's confident error ties half the pairs: AUC 0.5 each; aided 1.0.
    assert unassisted["per_reader"]["rad"]["auc"] == 0.5 and unassisted["per_reader"]["rad2"]["auc"] == 0.5
    assert comparisons["auc"]["n_readers"] == 2 and comparisons["auc"]["estimate"] == pytest.approx(0.5)
    low, high = comparisons["auc"]["ci"]
    assert low <= 0.5 <= high
    assert results["ai_alone"]["n_reads"] == 4

    text = h.client.get(f"{base}/reads.csv", headers=h.auth("admin")).text
    lines = text.strip().split("\n")
    assert lines[0].startswith("read_id,reader,study_id") and len(lines) == 17
    assert h.client.get(f"{base}/reads.csv", headers=h.auth("rad")).status_code == 403


def test_aided_reads_show_heatmaps_on_a_second_read_site_and_can_hide_them(web) -> None:  # noqa: F811
    h = web(assistance_mode="second-read")
    study_ids = _cases(h, 1)
    for show, expected in ((True, 200), (False, None)):
        rs = _create(
            h, study_ids, readers=["rad"] if show else ["rad2"], modes=["concurrent"], show_heatmaps=show
        )
        user = "rad" if show else "rad2"
        read = h.client.get(f"/api/v1/reader-studies/{rs}/next", headers=h.auth(user)).json()
        assert read["study"]["verdict"] is not None
        urls = [image["heatmap_url"] for image in read["study"]["images"]]
        if expected is None:
            assert urls == [None, None]
            # Nor does the heatmap route give them to this reader during the read.
            for image in read["study"]["images"]:
                refused = h.client.get(f"/api/v1/images/{image['id']}/heatmap", headers=h.auth(user))
                assert refused.status_code == 403 and "does not show heatmaps" in refused.json()["detail"]
        else:
            assert all(urls) and all(h.client.get(u, headers=h.auth(user)).status_code == 200 for u in urls)
        h.client.post(
            f"/api/v1/reader-studies/{rs}/reads/{read['read_id']}",
            json={"label": "normal", "confidence": 3},
            headers=h.auth(user),
        )
    # Once the read is answered, the site's second-read rule applies again.
    image = h.client.get(f"/api/v1/studies/{study_ids[0]}", headers=h.auth("rad")).json()["images"][0]
    assert image["heatmap_url"] is None
