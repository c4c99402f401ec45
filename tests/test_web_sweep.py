"""The sweep on SQLite and PostgreSQL: orphan blobs and abandoned upload folders older than the
grace period go, at server start and with `fetalcns db sweep`; blobs a row names and young files stay."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select
from web_support import db_url, study_files, web  # noqa: F401

from app.web.core.models import BLOB_KEY_COLUMNS, Image, ImagePredictionRow
from app.web.core.storage import ContentStore
from app.web.services.sweep import referenced_keys, sweep

HOUR = 3600.0


def _age(path: Path, seconds: float) -> None:
    """Make ``path`` (and everything under it) look last written ``seconds`` ago."""
    when = time.time() - seconds
    for folder, _dirs, files in os.walk(path) if path.is_dir() else [(str(path.parent), [], [path.name])]:
        for name in files:
            os.utime(os.path.join(folder, name), (when, when))
        if path.is_dir():
            os.utime(folder, (when, when))


def _analysed_study(harness: Any) -> set[str]:
    """Upload and analyse one study; returns the storage keys its rows name (all made old)."""
    response = harness.upload(study_files(2, seed=40))
    assert response.status_code == 202, response.text
    body = harness.wait_for(response.json()["study_id"])
    assert body["status"] == "done"
    # Heatmaps are drawn and stored on their first view (app.web.services.heatmaps).
    for image in body["images"]:
        assert harness.client.get(image["heatmap_url"], headers=harness.auth()).status_code == 200
    with harness.runtime.session_factory() as db:
        named = referenced_keys(db)
        heatmaps = set(db.scalars(select(ImagePredictionRow.heatmap_key)))
        sources = set(db.scalars(select(Image.source_key)))
    assert heatmaps - {None} and sources - {None}, "the study should name heatmaps and source files"
    store: ContentStore = harness.runtime.store
    assert named and named <= store.all_keys()
    for key in named:
        _age(store.path_for(key), 2 * HOUR)
    return named


def _debris(store: ContentStore, upload_tmp: Path) -> dict[str, Any]:
    """Orphans and leftovers, old and young, as a crash would leave them."""
    old_orphan, _ = store.put_bytes(b"written, then the process died before its commit", "png")
    young_orphan, _ = store.put_bytes(b"an upload in another process, not committed yet", "png")
    _age(store.path_for(old_orphan), 2 * HOUR)
    incoming = store.path_for(old_orphan).parent / ".incoming-crashed"
    incoming.write_bytes(b"half")
    _age(incoming, 2 * HOUR)
    old_upload = upload_tmp / "upload-crashed"
    (old_upload / "nested").mkdir(parents=True)
    (old_upload / "nested" / "img0.dcm").write_bytes(b"DICM")
    _age(old_upload, 2 * HOUR)
    busy_upload = upload_tmp / "upload-busy"  # old folder, but a file written just now inside it
    (busy_upload / "nested").mkdir(parents=True)
    (busy_upload / "nested" / "old.dcm").write_bytes(b"DICM")
    _age(busy_upload, 2 * HOUR)
    (busy_upload / "nested" / "new.dcm").write_bytes(b"DICM")
    return {
        "old_orphan": old_orphan,
        "young_orphan": young_orphan,
        "incoming": incoming,
        "old_upload": old_upload,
        "busy_upload": busy_upload,
    }


def test_blob_columns_are_every_key_column_of_the_models() -> None:
    from app.web.core.db import Base

    key_columns = {
        f"{table.name}.{column.name}"
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if column.name.endswith("_key") and column.name != "patient_key"
    }
    assert key_columns == {f"{c.class_.__tablename__}.{c.key}" for c in BLOB_KEY_COLUMNS}


def test_sweep_removes_exactly_the_old_orphans(web: Any) -> None:  # noqa: F811
    harness = web(sweep_grace_s=int(HOUR))
    store: ContentStore = harness.runtime.store
    named = _analysed_study(harness)
    debris = _debris(store, harness.settings.upload_tmp_dir)

    result = sweep(store, harness.runtime.session_factory, harness.settings.upload_tmp_dir, HOUR)

    assert result.as_dict() == {"orphan_blobs": 1, "incoming_files": 1, "upload_folders": 1}
    assert store.all_keys() == named | {debris["young_orphan"]}
    assert not debris["incoming"].exists() and not debris["old_upload"].exists()
    assert (debris["busy_upload"] / "nested" / "new.dcm").is_file()
    # Storing bytes that are already there makes the blob young again: an upload about to name it
    # keeps it.
    _age(store.path_for(debris["young_orphan"]), 2 * HOUR)
    store.put_bytes(b"an upload in another process, not committed yet", "png")
    again = sweep(store, harness.runtime.session_factory, harness.settings.upload_tmp_dir, HOUR)
    assert again.orphan_blobs == 0
    assert debris["young_orphan"] in store.all_keys()


def test_the_server_sweeps_at_start(web: Any) -> None:  # noqa: F811
    first = web(worker_enabled=True)
    named = _analysed_study(first)
    debris = _debris(first.runtime.store, first.settings.upload_tmp_dir)
    # A second server process on the same data starts and sweeps.
    second = web(data_dir=first.settings.data_dir, worker_enabled=False)
    assert second.runtime.store.all_keys() == named | {debris["young_orphan"]}
    assert not debris["old_upload"].exists() and debris["busy_upload"].exists()
    # With the sweep switched off nothing is touched.
    store = first.runtime.store
    _age(store.path_for(debris["young_orphan"]), 2 * HOUR)
    web(data_dir=first.settings.data_dir, worker_enabled=False, sweep_on_start=False)
    assert debris["young_orphan"] in store.all_keys()


def test_fetalcns_db_sweep(web: Any, monkeypatch: Any, capsys: Any) -> None:  # noqa: F811
    from app.cli import main
    from app.web.settings import get_settings

    harness = web(worker_enabled=False)
    debris = _debris(harness.runtime.store, harness.settings.upload_tmp_dir)
    monkeypatch.setenv("FETALCNS_DATA_DIR", str(harness.settings.data_dir))
    monkeypatch.setenv("FETALCNS_DATABASE_URL", harness.db_url)
    get_settings.cache_clear()
    try:
        assert main(["db", "sweep", "--grace-s", "60"]) == 0
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr().out
    assert "removed 1 orphan blobs, 1 half-written blobs and 1 abandoned upload folders" in out
    assert harness.runtime.store.all_keys() == {debris["young_orphan"]}


def test_zips_are_unpacked_inside_the_upload_folder_that_the_sweep_covers(
    web: Any,  # noqa: F811
    tmp_path: Path,
    monkeypatch: Any,
) -> None:
    """Not in the system temp folder, which nothing sweeps: pointed at a folder that does not exist,
    an upload that used it would fail."""
    import tempfile

    from web_support import zip_bytes

    harness = web(worker_enabled=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-system-temp"))
    response = harness.upload([("exam.zip", zip_bytes(study_files(2, seed=50)))])
    assert response.status_code == 202, response.text
    assert response.json()["studies"][0]["n_images"] == 2
    assert not list(harness.settings.upload_tmp_dir.iterdir())
