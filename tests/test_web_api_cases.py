"""Diagnoses (amendments never overwrite), second-read mode, audit trail, worklist, bad input."""

from __future__ import annotations

from web_support import db_url, study_files, web  # noqa: F401


def _done_study(h, n: int = 2, seed: int = 0, **form: str) -> int:
    study_id = h.upload(study_files(n, seed=seed, patient_id=f"PID-{seed}"), **form).json()["study_id"]
    assert h.wait_for(study_id)["status"] == "done"
    return study_id


def test_amendments_add_rows_and_never_overwrite(web) -> None:  # noqa: F811
    h = web()
    sid = _done_study(h)
    url = f"/api/v1/studies/{sid}/diagnosis"
    verdict = h.client.get(f"/api/v1/studies/{sid}", headers=h.auth()).json()["verdict"]["label"]

    first = h.client.post(
        url, json={"label": "Anencephaly", "confidence": 4, "notes": "skull absent"}, headers=h.auth()
    )
    assert first.status_code == 201, first.text
    assert first.json()["kind"] == "final" and first.json()["agrees_with_ai"] == (verdict == "Anencephaly")

    no_reason = h.client.post(url, json={"label": "normal"}, headers=h.auth())
    assert no_reason.status_code == 422 and "reason" in no_reason.json()["detail"]
    late_preliminary = h.client.post(url, json={"label": "normal", "kind": "preliminary"}, headers=h.auth())
    assert late_preliminary.status_code == 409

    amended = h.client.post(
        url, json={"label": "normal", "reason": "re-read the clip"}, headers=h.auth("rad2")
    )
    assert amended.status_code == 201
    assert amended.json()["kind"] == "amendment" and amended.json()["amends_id"] == first.json()["id"]

    rows = h.client.get(f"/api/v1/studies/{sid}", headers=h.auth()).json()["diagnoses"]
    assert [(d["kind"], d["label"], d["signed_by"]) for d in rows] == [
        ("final", "Anencephaly", "rad"),
        ("amendment", "normal", "rad2"),
    ]
    assert rows[0]["notes"] == "skull absent" and rows[0]["time_to_decision_s"] >= 0
    listed = h.client.get("/api/v1/studies?review=reviewed", headers=h.auth()).json()
    assert [(s["id"], s["final_label"]) for s in listed] == [(sid, "normal")]


def test_second_read_withholds_ai_until_a_preliminary_read(web) -> None:  # noqa: F811
    h = web(assistance_mode="second-read")
    sid = _done_study(h)
    hidden = h.client.get(f"/api/v1/studies/{sid}", headers=h.auth()).json()
    assert hidden["ai_withheld"] and hidden["verdict"] is None
    assert all(
        i["label"] is None and i["probabilities"] is None and i["heatmap_url"] is None
        for i in hidden["images"]
    )
    image_id = hidden["images"][0]["id"]
    assert h.client.get(f"/api/v1/images/{image_id}/heatmap", headers=h.auth()).status_code == 403
    assert h.client.get("/api/v1/studies", headers=h.auth()).json()[0]["verdict"] is None

    prelim = h.client.post(
        f"/api/v1/studies/{sid}/diagnosis", json={"label": "normal", "kind": "preliminary"}, headers=h.auth()
    )
    assert prelim.status_code == 201 and prelim.json()["agrees_with_ai"] is not None
    shown = h.client.get(f"/api/v1/studies/{sid}", headers=h.auth()).json()
    assert not shown["ai_withheld"] and shown["verdict"]["label"]
    assert all(i["label"] for i in shown["images"])
    assert h.client.get(f"/api/v1/images/{image_id}/heatmap", headers=h.auth()).status_code == 200
    # Another reader still has to commit first.
    assert h.client.get(f"/api/v1/studies/{sid}", headers=h.auth("rad2")).json()["verdict"] is None


def test_every_view_and_change_of_a_case_is_audited(web) -> None:  # noqa: F811
    h = web()
    sid = _done_study(h)
    study = h.client.get(f"/api/v1/studies/{sid}", headers=h.auth()).json()
    image_id = study["images"][0]["id"]
    for _ in range(3):  # a viewer reloading the same image: one view of it in this case view
        for kind in ("original", "thumbnail", "heatmap"):
            assert h.client.get(f"/api/v1/images/{image_id}/{kind}", headers=h.auth()).status_code == 200
    h.client.post(f"/api/v1/studies/{sid}/diagnosis", json={"label": "normal"}, headers=h.auth())

    events = h.client.get(f"/api/v1/studies/{sid}/audit", headers=h.auth("admin")).json()
    seen = [(e["action"], e["username"], e["detail"].get("kind")) for e in events]
    assert ("study.upload", "rad", None) in seen
    assert ("study.view", "rad", None) in seen
    # The thumbnails are part of the case view, which names every image the strip shows.
    view = [e for e in events if e["action"] == "study.view"][-1]
    assert image_id in view["detail"]["image_ids"]
    for kind in ("original", "heatmap"):
        assert seen.count(("image.view", "rad", kind)) == 1
    assert ("image.view", "rad", "thumbnail") not in seen
    # The next opening of the case records its image views again.
    h.client.get(f"/api/v1/studies/{sid}", headers=h.auth())
    h.client.get(f"/api/v1/images/{image_id}/original", headers=h.auth())
    events = h.client.get(f"/api/v1/studies/{sid}/audit", headers=h.auth("admin")).json()
    seen = [(e["action"], e["username"], e["detail"].get("kind")) for e in events]
    assert seen.count(("image.view", "rad", "original")) == 2
    assert ("diagnosis.record", "rad", "final") in seen
    text = repr(events)
    assert "PID-0" not in text and "Testpatient" not in text


def test_worklist_sorts_most_suspicious_first_and_filters(web) -> None:  # noqa: F811
    h = web()
    # Two images each: the card's verdict rule gives a single-image study no verdict to sort by.
    ids = [_done_study(h, n=2, seed=seed) for seed in (0, 10, 20)]
    rows = h.client.get("/api/v1/studies", headers=h.auth()).json()
    p = [r["verdict"]["p_abnormal"] for r in rows]
    assert sorted(r["id"] for r in rows) == sorted(ids) and p == sorted(p, reverse=True)
    by_date = h.client.get("/api/v1/studies?sort=date", headers=h.auth()).json()
    assert [r["id"] for r in by_date] == sorted(ids, reverse=True)
    label = rows[0]["verdict"]["label"]
    assert all(
        r["verdict"]["label"] == label
        for r in h.client.get(f"/api/v1/studies?label={label}", headers=h.auth()).json()
    )
    assert h.client.get("/api/v1/studies?status=queued", headers=h.auth()).json() == []
    h.client.post(f"/api/v1/studies/{ids[0]}/diagnosis", json={"label": "normal"}, headers=h.auth())
    unreviewed = h.client.get("/api/v1/studies?review=unreviewed", headers=h.auth()).json()
    assert sorted(r["id"] for r in unreviewed) == sorted(ids[1:])
    today = rows[0]["created_at"][:10]
    assert (
        len(h.client.get(f"/api/v1/studies?date_from={today}&date_to={today}", headers=h.auth()).json()) == 3
    )
    assert h.client.get("/api/v1/studies?date_to=2000-01-01", headers=h.auth()).json() == []


BAD_REQUESTS = [
    ("get", "/api/v1/studies?sort=name", None, 422, "sort must be one of"),
    ("get", "/api/v1/studies?status=lost", None, 422, "status must be one of"),
    ("get", "/api/v1/studies/999999", None, 404, "does not exist"),
    ("get", "/api/v1/studies/abc", None, 422, "study_id"),
    ("post", "/api/v1/studies/{sid}/diagnosis", {"label": "Cyclopia"}, 422, "unknown diagnosis"),
    ("post", "/api/v1/studies/{sid}/diagnosis", {"label": "normal", "confidence": 9}, 422, "confidence"),
    ("post", "/api/v1/studies/{sid}/diagnosis", {"label": "normal", "kind": "amendment"}, 409, "no final"),
    ("post", "/api/v1/studies/{sid}/diagnosis", {"labl": "normal"}, 422, "label"),
]


def test_bad_input_gets_a_readable_4xx(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    sid = h.upload(study_files(1)).json()["study_id"]
    for method, path, body, status, words in BAD_REQUESTS:
        response = h.client.request(method, path.format(sid=sid), json=body, headers=h.auth())
        assert response.status_code == status, (path, body, response.text)
        detail = response.json()["detail"]
        assert isinstance(detail, str) and words in detail, (path, detail)
