"""Robustness: failing images, restarts, bad uploads leave nothing behind, size limits, no PHI in logs."""

from __future__ import annotations

import logging

from sqlalchemy import text, update
from web_support import db_url, dicom_bytes, study_files, ultrasound_pixels, web, zip_bytes  # noqa: F401

from app.web.core.models import Analysis, Image, Study
from app.web.services.analysis_worker import AnalysisWorker


def _corrupt_images(h, study_id: int, how_many: int) -> None:
    with h.runtime.session_factory() as db:
        keys = [i.storage_key for i in db.query(Image).filter_by(study_id=study_id).order_by(Image.position)]
    for key in keys[:how_many]:
        h.runtime.store.path_for(key).write_bytes(b"not a png any more")


def test_a_failed_image_gets_a_reason_and_the_others_are_analysed(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    sid = h.upload(study_files(3)).json()["study_id"]
    _corrupt_images(h, sid, 1)
    assert AnalysisWorker(h.runtime).run_pending() == 1
    study = h.client.get(f"/api/v1/studies/{sid}", headers=h.auth()).json()
    assert study["status"] == "done"
    failed, *good = study["images"]
    assert "could not be analysed" in failed["error"] and failed["label"] is None
    assert all(i["label"] and i["error"] is None for i in good)
    assert study["verdict"]["n_used"] + study["verdict"]["n_excluded"] == 3


def test_an_image_the_model_cannot_take_fails_alone(web) -> None:  # noqa: F811
    """A bad scan-area box makes the whole batch raise; the worker retries image by image."""
    h = web(worker_enabled=False)
    sid = h.upload(study_files(3)).json()["study_id"]
    with h.runtime.session_factory() as db:
        db.execute(
            update(Image).where(Image.study_id == sid, Image.position == 1).values(scan_box=[0, 0, 0, 0])
        )
        db.commit()
    AnalysisWorker(h.runtime).run_pending()
    study = h.client.get(f"/api/v1/studies/{sid}", headers=h.auth()).json()
    assert study["status"] == "done"
    assert [i["error"] is None for i in study["images"]] == [True, False, True]
    assert "crop box" in study["images"][1]["error"]
    assert study["images"][0]["label"] and study["images"][2]["label"]


def test_a_study_whose_images_all_fail_is_failed_with_a_reason(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    sid = h.upload(study_files(2)).json()["study_id"]
    _corrupt_images(h, sid, 2)
    AnalysisWorker(h.runtime).run_pending()
    study = h.client.get(f"/api/v1/studies/{sid}", headers=h.auth()).json()
    assert study["status"] == "failed" and study["verdict"] is None
    assert "none of the 2 image(s) could be analysed" in study["error"]
    assert h.client.get("/api/v1/studies?status=failed", headers=h.auth()).json()[0]["id"] == sid


def test_interrupted_and_queued_analyses_resume_after_a_restart(web) -> None:  # noqa: F811
    first = web(worker_enabled=False)
    running = first.upload(study_files(1, seed=1)).json()["study_id"]
    queued = first.upload(study_files(1, seed=2, patient_id="PID-2")).json()["study_id"]
    with first.runtime.session_factory() as db:  # as if the server died mid-analysis
        db.execute(update(Analysis).where(Analysis.study_id == running).values(status="running"))
        db.execute(update(Study).where(Study.id == running).values(status="running"))
        db.commit()
    second = web(data_dir=first.settings.data_dir)
    assert second.wait_for(running)["status"] == "done"
    assert second.wait_for(queued)["status"] == "done"


def _install_failing_trigger(h) -> None:
    """A database that refuses the second image of a study: a write failing mid-transaction."""
    with h.runtime.db_engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.execute(
                text(
                    "CREATE TRIGGER refuse_second_image BEFORE INSERT ON images "
                    "WHEN (SELECT count(*) FROM images WHERE study_id = NEW.study_id) >= 1 "
                    "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
                )
            )
        else:
            connection.execute(
                text(
                    "CREATE FUNCTION refuse_second_image() RETURNS trigger AS $$ BEGIN "
                    "IF (SELECT count(*) FROM images WHERE study_id = NEW.study_id) >= 1 THEN "
                    "RAISE EXCEPTION 'disk full'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            connection.execute(
                text(
                    "CREATE TRIGGER refuse_second_image BEFORE INSERT ON images "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_second_image()"
                )
            )


def _drop_failing_trigger(h) -> None:
    with h.runtime.db_engine.begin() as connection:
        connection.execute(
            text(
                "DROP TRIGGER IF EXISTS refuse_second_image"
                + ("" if connection.dialect.name == "sqlite" else " ON images")
            )
        )
        if connection.dialect.name != "sqlite":
            connection.execute(text("DROP FUNCTION IF EXISTS refuse_second_image()"))


def test_bad_uploads_leave_nothing_behind(web) -> None:  # noqa: F811
    h = web(worker_enabled=False, max_file_bytes=400_000, max_request_bytes=3_000_000)
    h.upload(study_files(1, seed=5))  # something already stored must survive
    before_rows, before_keys = h.counts(), h.stored_keys()

    unusable = h.upload([("a.txt", b"hello"), ("b.dcm", b"DICM? no")])
    assert unusable.status_code == 422
    assert "none of the uploaded files could be used" in unusable.json()["detail"]
    assert "a.txt" in unusable.json()["detail"]

    big = dicom_bytes(ultrasound_pixels(1, 600, 800))  # ~480 kB > 400 kB per file
    too_big = h.upload([("big.dcm", big)])
    assert too_big.status_code == 413 and "big.dcm is larger than the limit" in too_big.json()["detail"]
    huge = h.upload([(f"f{i}.dcm", b"x" * 350_000) for i in range(10)])
    assert huge.status_code == 413 and "larger than the limit" in huge.json()["detail"]

    _install_failing_trigger(h)
    try:
        failed = h.upload(study_files(3, seed=9, patient_id="PID-NEW"))
    finally:
        _drop_failing_trigger(h)
    assert failed.status_code == 500 and failed.json()["detail"]

    assert h.counts() == before_rows
    assert h.stored_keys() == before_keys
    assert not any(h.settings.upload_tmp_dir.iterdir())


def test_zip_of_one_study_is_one_study(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    body = h.client.post(
        "/api/v1/studies",
        files=[("files", ("exam.zip", zip_bytes(study_files(3)), "application/zip"))],
        headers=h.auth(),
    ).json()
    assert len(body["studies"]) == 1 and body["studies"][0]["n_images"] == 3


def test_patient_names_and_ids_never_reach_the_log(web, caplog) -> None:  # noqa: F811
    caplog.set_level(logging.DEBUG)
    h = web()
    files = study_files(2, patient_id="SECRET-ID-93", name="Geheim^Marlene")
    sid = h.upload(files, patient_name="Geheim^Marlene", patient_id="SECRET-ID-93").json()["study_id"]
    assert h.wait_for(sid)["status"] == "done"
    h.client.post(f"/api/v1/studies/{sid}/diagnosis", json={"label": "normal"}, headers=h.auth())
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "analysis" in logged  # the log was captured at all
    assert "SECRET-ID-93" not in logged and "Geheim" not in logged and "Marlene" not in logged
