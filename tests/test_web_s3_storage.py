"""The S3-compatible blob store (issue 13) against a real S3 server on loopback: moto's
standalone server, started as a process (never an in-process mock).

Round trip of every store operation, the whole app (upload, analysis, image routes, sweep) on a
bucket, and a put the bucket refuses: the upload answers 503 and leaves no row and no blob.

The server and bucket fixtures are in s3_support.py (the backup tests use them too).
"""

from __future__ import annotations

import hashlib
import io
import socket
import time
from pathlib import Path

import pytest
from s3_support import ACCESS, bucket, s3_endpoint  # noqa: F401
from s3_support import s3_client as _client
from web_support import db_url, study_files, web  # noqa: F401

from app.web.core.s3_storage import S3Store
from app.web.services.sweep import sweep

pytestmark = pytest.mark.slow


def test_every_store_operation_round_trips_through_the_bucket(
    s3_endpoint: str,  # noqa: F811
    bucket: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    store = S3Store(_client(s3_endpoint), bucket, prefix="site-a")
    key, created = store.put_bytes(b"\x89PNG fake bytes", "png")
    assert created and key.endswith(".png") and store.exists(key)
    assert store.put_bytes(b"\x89PNG fake bytes", "png") == (key, False)  # content-addressed
    assert store.read_bytes(key) == b"\x89PNG fake bytes"
    source = tmp_path / "source.dcm"
    source.write_bytes(b"DICM" * 100)
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    assert store.put_file(source, sha, "src") == (f"{sha}.src", True)
    assert store.read_bytes(f"{sha}.src") == source.read_bytes()
    assert store.all_keys() == {key, f"{sha}.src"}
    objects = {str(o.object_name) for o in _client(s3_endpoint).list_objects(bucket, recursive=True)}
    assert objects == {f"site-a/{key}", f"site-a/{sha}.src"}  # under the prefix
    assert store.keys_older_than(3600) == set() and store.delete_if_older(key, 3600) is False
    time.sleep(1.1)  # S3 modification times have whole seconds
    assert store.keys_older_than(1) == {key, f"{sha}.src"}
    assert store.delete_if_older(key, 1) is True and not store.exists(key)
    store.delete(f"{sha}.src")
    assert store.all_keys() == set() and store.remove_stale_incoming(0) == 0
    with pytest.raises(FileNotFoundError):
        store.read_bytes(key)
    with pytest.raises(ValueError):
        store.read_bytes("../escape")
    # What backup and restore copy through: a stream, hashed on the way in.
    data = b"\x89PNG streamed"
    streamed = f"{hashlib.sha256(data).hexdigest()}.png"
    assert store.put_checked(streamed, io.BytesIO(data)) == len(data)
    with store.open_blob(streamed) as body:
        assert body.read() == data
    wrong = f"{hashlib.sha256(b'other').hexdigest()}.png"
    assert store.put_checked(wrong, io.BytesIO(data)) is None and not store.exists(wrong)
    with pytest.raises(FileNotFoundError), store.open_blob(wrong):
        pass


def test_the_app_uploads_analyses_serves_and_sweeps_on_the_bucket(
    web,  # noqa: F811
    db_url: str,  # noqa: F811
    s3_endpoint: str,  # noqa: F811
    bucket: str,  # noqa: F811
) -> None:
    h = web(storage_backend="s3", s3_endpoint_url=s3_endpoint, s3_bucket=bucket, **ACCESS)
    assert isinstance(h.runtime.store, S3Store)
    study_id = h.upload(study_files(2)).json()["study_id"]
    study = h.wait_for(study_id)
    assert study["status"] == "done"
    stored = h.runtime.store.all_keys()
    image = study["images"][0]
    original = h.client.get(f"/api/v1/images/{image['id']}/original", headers=h.auth())
    assert original.status_code == 200 and original.content[:4] == b"\x89PNG"
    assert any(k.endswith(".png") for k in stored) and any(k.endswith(".src") for k in stored)
    # Heatmaps went to the bucket too: every key a row names is there.
    from sqlalchemy import select

    from app.web.core.models import BLOB_KEY_COLUMNS

    with h.runtime.session_factory() as db:
        named = {k for column in BLOB_KEY_COLUMNS for k in db.scalars(select(column)) if k}
    assert named and named <= stored

    h.runtime.store.put_bytes(b"nobody names me", "png")
    time.sleep(1.1)
    result = sweep(h.runtime.store, h.runtime.session_factory, h.settings.upload_tmp_dir, 1)
    assert result.orphan_blobs == 1
    assert h.runtime.store.all_keys() == stored  # the orphan went, every named blob stayed


def test_a_put_the_bucket_refuses_leaves_no_row_and_no_blob(
    web,  # noqa: F811
    db_url: str,  # noqa: F811
    s3_endpoint: str,  # noqa: F811
    bucket: str,  # noqa: F811
) -> None:
    h = web(storage_backend="s3", s3_endpoint_url=s3_endpoint, s3_bucket="no-such-bucket", **ACCESS)
    h.auth()  # signed in first: the token and its audit row are not the upload's
    before = h.counts()
    response = h.upload(study_files(2, patient_id="PID-S3-FAIL"))
    assert response.status_code == 503, response.text
    assert "image storage refused" in response.json()["detail"] and "PID-S3-FAIL" not in response.text
    assert h.counts() == before  # no patient, study, image, analysis or audit row
    assert list(_client(s3_endpoint).list_objects(bucket, recursive=True)) == []


def test_an_unreachable_bucket_puts_the_analysis_back_in_the_queue_not_failed(
    web,  # noqa: F811
    db_url: str,  # noqa: F811
    s3_endpoint: str,  # noqa: F811
    bucket: str,  # noqa: F811
) -> None:
    from sqlalchemy import select

    from app.web.core.models import Analysis
    from app.web.services.analysis_worker import AnalysisWorker

    h = web(
        worker_enabled=False, storage_backend="s3", s3_endpoint_url=s3_endpoint, s3_bucket=bucket, **ACCESS
    )
    study_id = h.upload(study_files(2)).json()["study_id"]
    with socket.socket() as sock:  # a port nothing listens on: the store is away
        sock.bind(("127.0.0.1", 0))
        away = int(sock.getsockname()[1])
    reachable = h.runtime.store
    h.runtime.store = S3Store(_client(f"http://127.0.0.1:{away}"), bucket)
    worker = AnalysisWorker(h.runtime)
    with h.runtime.session_factory() as db:
        analysis_id = db.scalar(select(Analysis.id))
    assert worker.process(analysis_id) is False  # left queued, to be taken again
    with h.runtime.session_factory() as db:
        analysis = db.get(Analysis, analysis_id)
        assert analysis is not None and (analysis.status, analysis.error) == ("queued", None)
        assert analysis.lease_owner is None and analysis.predictions == []
    h.runtime.store = reachable  # the store is back
    assert worker.process(analysis_id) is True
    assert h.wait_for(study_id)["status"] == "done"
