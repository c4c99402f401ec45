"""The S3-compatible blob store (issue 13) against a real S3 server on loopback: moto's
standalone server, started as a process (never an in-process mock).

Round trip of every store operation, the whole app (upload, analysis, image routes, sweep) on a
bucket, and a put the bucket refuses: the upload answers 503 and leaves no row and no blob.

moto is found as ``moto_server`` beside this interpreter (the test extra installs it), else at
``$FETALCNS_TEST_MOTO_SERVER``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio import Minio
from web_support import db_url, study_files, web  # noqa: F401

from app.web.core.s3_storage import S3Store
from app.web.services.sweep import sweep

pytestmark = pytest.mark.slow

ACCESS = {"s3_access_key_id": "testing", "s3_secret_access_key": "testing", "s3_region": "us-east-1"}


def _moto_server() -> str | None:
    beside = Path(sys.executable).with_name("moto_server")
    if beside.exists():
        return str(beside)
    return os.environ.get("FETALCNS_TEST_MOTO_SERVER") or shutil.which("moto_server")


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = _moto_server()
    if not server:
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    process = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("moto_server did not start") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def _client(endpoint: str) -> Minio:
    return Minio(endpoint.removeprefix("http://"), access_key="testing", secret_key="testing", secure=False)


@pytest.fixture
def bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> str:
    name = "fetalcns-" + str(abs(hash(request.node.nodeid)) % 10**10)
    client = _client(s3_endpoint)
    if not client.bucket_exists(name):
        client.make_bucket(name)
    for item in client.list_objects(name, recursive=True):
        client.remove_object(name, str(item.object_name))
    return name


def test_every_store_operation_round_trips_through_the_bucket(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    store = S3Store(_client(s3_endpoint), bucket, prefix="site-a")
    key, created = store.put_bytes(b"\x89PNG fake bytes", "png")
    assert created and key.endswith(".png") and store.exists(key)
    assert store.put_bytes(b"\x89PNG fake bytes", "png") == (key, False)  # content-addressed
    assert store.read_bytes(key) == b"\x89PNG fake bytes"
    source = tmp_path / "source.dcm"
    source.write_bytes(b"DICM" * 100)
    import hashlib

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


def test_the_app_uploads_analyses_serves_and_sweeps_on_the_bucket(
    web,  # noqa: F811
    db_url: str,  # noqa: F811
    s3_endpoint: str,
    bucket: str,
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
    s3_endpoint: str,
    bucket: str,
) -> None:
    h = web(storage_backend="s3", s3_endpoint_url=s3_endpoint, s3_bucket="no-such-bucket", **ACCESS)
    h.auth()  # signed in first: the token and its audit row are not the upload's
    before = h.counts()
    response = h.upload(study_files(2, patient_id="PID-S3-FAIL"))
    assert response.status_code == 503, response.text
    assert "image storage refused" in response.json()["detail"] and "PID-S3-FAIL" not in response.text
    assert h.counts() == before  # no patient, study, image, analysis or audit row
    assert list(_client(s3_endpoint).list_objects(bucket, recursive=True)) == []


@pytest.mark.parametrize("argv", [["backup", "DEST"], ["restore", "DEST"], ["db", "verify"]])
def test_backup_restore_and_verify_refuse_a_bucket_store_with_the_reason(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main
    from app.web.settings import get_settings

    monkeypatch.setenv("FETALCNS_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FETALCNS_STORAGE_BACKEND", "s3")
    get_settings.cache_clear()
    try:
        status = main([str(tmp_path / "dest") if a == "DEST" else a for a in argv])
    finally:
        get_settings.cache_clear()
    assert status == 1
    assert "local storage folder only" in capsys.readouterr().err
    assert not (tmp_path / "dest").exists()


def test_an_unreachable_bucket_puts_the_analysis_back_in_the_queue_not_failed(
    web,  # noqa: F811
    db_url: str,  # noqa: F811
    s3_endpoint: str,
    bucket: str,
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
