"""`fetalcns backup`, `backup verify`, `restore` and `db verify` with the S3 bucket store (issue 13),
against a real S3 server on loopback (moto's standalone server, s3_support.py), on SQLite and
PostgreSQL: a bucket's backup has the local layout and restores into an empty bucket; a damaged
or missing blob in the bucket is named; a non-empty bucket needs --force, which removes only the
extra blobs under the configured prefix; a local backup restores into a bucket and back."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from backup_support import cli, fresh_target, new_target, studies  # noqa: F401
from s3_support import empty_bucket, s3_client, s3_endpoint, s3_objects  # noqa: F401
from web_support import db_url, study_files, web  # noqa: F401

from app.web.services.backup import MANIFEST

pytestmark = pytest.mark.slow

SECRET = "s3-secret-never-in-a-backup"


def s3_store(endpoint: str, bucket: str, prefix: str = "") -> dict[str, str]:
    """Settings naming a bucket (moto accepts any credentials)."""
    return {
        "storage_backend": "s3",
        "s3_endpoint_url": endpoint,
        "s3_bucket": bucket,
        "s3_prefix": prefix,
        "s3_region": "us-east-1",
        "s3_access_key_id": "backup-test",
        "s3_secret_access_key": SECRET,
    }


def _analysed(web: Any, **store: str) -> Any:  # noqa: F811
    harness = web(worker_enabled=True, **store)
    response = harness.upload(study_files(2, patient_id="PID-S3B", seed=3))
    assert response.status_code == 202, response.text
    assert harness.wait_for(response.json()["study_id"])["status"] == "done"
    return harness


def _blob_key(n: int) -> str:
    return f"{hashlib.sha256(b'extra %d' % n).hexdigest()}.png"


def _put(endpoint: str, bucket: str, name: str, data: bytes) -> None:
    s3_client(endpoint).put_object(bucket, name, io.BytesIO(data), len(data))


def test_a_bucket_backup_verifies_and_restores_into_an_empty_bucket(
    web: Any,  # noqa: F811
    cli: Any,  # noqa: F811
    fresh_target: tuple[Path, str],  # noqa: F811
    s3_endpoint: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    live = s3_store(s3_endpoint, empty_bucket(s3_endpoint, "live-a"), "site-a")
    harness = _analysed(web, **live)
    live_dir, live_url = harness.settings.data_dir, harness.db_url
    dest = tmp_path / "backup"
    status, out, err = cli(live_dir, live_url, "backup", str(dest), store=live)
    assert status == 0, err
    text = (dest / MANIFEST).read_text()
    manifest = json.loads(text)
    assert manifest["storage"]["source"] == {"backend": "s3", "bucket": "live-a", "prefix": "site-a"}
    assert SECRET not in text and "backup-test" not in text and s3_endpoint not in text
    keys = set(manifest["storage"]["keys"])
    # The local layout, whatever the store; every blob the bucket holds for the rows.
    assert keys and {p.name for p in (dest / "storage").glob("*/*/*")} == keys
    assert {f"site-a/{k}" for k in keys} == s3_objects(s3_endpoint, "live-a")
    assert cli(live_dir, live_url, "backup", "verify", str(dest))[0] == 0

    data_dir, url = fresh_target
    target = s3_store(s3_endpoint, empty_bucket(s3_endpoint, "target-a"), "site-b")
    status, out, err = cli(data_dir, url, "restore", str(dest), store=target)
    assert status == 0, err + out
    assert f"{len(keys)} blobs written, 0 removed" in out
    assert s3_objects(s3_endpoint, "target-a") == {f"site-b/{k}" for k in keys}
    assert set(studies(url).values()) == {2}
    assert not (data_dir / "storage").exists() or not list((data_dir / "storage").glob("*/*/*"))
    status, out, err = cli(data_dir, url, "db", "verify", store=target)
    assert status == 0 and f"all {len(keys)} blobs" in out, err

    # A bucket holding blobs (and rows) is refused without --force, and nothing changes.
    status, _out, err = cli(data_dir, url, "restore", str(dest), store=target)
    assert status == 1 and "already holds data" in err and "--force" in err
    # --force: an extra blob under the prefix goes, one damaged blob is rewritten, intact ones are
    # left alone, and objects outside the prefix (another site, anything else) stay.
    damaged = sorted(keys)[0]
    _put(s3_endpoint, "target-a", f"site-b/{damaged}", b"not the bytes")
    _put(s3_endpoint, "target-a", f"site-b/{_blob_key(1)}", b"extra 1")
    outside = {f"site-c/{_blob_key(2)}", _blob_key(3), "notes/readme.txt"}
    for name in outside:
        _put(s3_endpoint, "target-a", name, b"someone else's")
    status, out, err = cli(data_dir, url, "restore", "--force", str(dest), store=target)
    assert status == 0, err + out
    assert "1 blobs written, 1 removed" in out
    assert s3_objects(s3_endpoint, "target-a") == {f"site-b/{k}" for k in keys} | outside
    assert cli(data_dir, url, "db", "verify", store=target)[0] == 0


def test_a_damaged_or_missing_blob_in_the_bucket_is_named_and_left_out(
    web: Any,  # noqa: F811
    cli: Any,  # noqa: F811
    s3_endpoint: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    live = s3_store(s3_endpoint, empty_bucket(s3_endpoint, "live-b"))
    harness = _analysed(web, **live)
    live_dir, live_url = harness.settings.data_dir, harness.db_url
    assert cli(live_dir, live_url, "db", "verify", store=live)[0] == 0
    stored = sorted(s3_objects(s3_endpoint, "live-b"))
    damaged, missing = stored[0], stored[1]
    _put(s3_endpoint, "live-b", damaged, s3_client(s3_endpoint).get_object("live-b", damaged).read() + b"x")
    s3_client(s3_endpoint).remove_object("live-b", missing)

    status, out, err = cli(live_dir, live_url, "db", "verify", store=live)
    assert status == 1 and "2 of " in out
    assert f"blob {damaged} (" in err and "is damaged: its bytes do not match its sha256" in err
    assert f"blob {missing} (" in err and "is missing from the storage" in err
    dest = tmp_path / "backup"
    status, _out, err = cli(live_dir, live_url, "backup", str(dest), store=live)
    assert status == 1
    assert f"blob {damaged}" in err and f"blob {missing}" in err and "not in the backup" in err
    manifest = json.loads((dest / MANIFEST).read_text())
    assert set(manifest["storage"]["keys"]) == set(stored) - {damaged, missing}
    assert {p.name for p in (dest / "storage").glob("*/*/*")} == set(stored) - {damaged, missing}
    # Such a backup does not verify: the left-out blobs are named.
    status, _out, err = cli(live_dir, live_url, "backup", "verify", str(dest))
    assert status == 1 and f"blob {damaged}" in err and f"blob {missing}" in err


def test_a_local_backup_restores_into_a_bucket_and_that_bucket_back_into_a_folder(
    web: Any,  # noqa: F811
    cli: Any,  # noqa: F811
    db_url: str,  # noqa: F811
    s3_endpoint: str,  # noqa: F811
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> None:
    harness = _analysed(web)
    dest = tmp_path / "local-backup"
    assert cli(harness.settings.data_dir, harness.db_url, "backup", str(dest))[0] == 0
    manifest = json.loads((dest / MANIFEST).read_text())
    assert manifest["storage"]["source"] == {"backend": "local"}
    keys = set(manifest["storage"]["keys"])

    data_dir, url = new_target(db_url, tmp_path_factory, request.config)
    bucket = s3_store(s3_endpoint, empty_bucket(s3_endpoint, "cross"), "site-x")
    # A damaged backup touches nothing in the bucket.
    blob = next((dest / "storage").glob("*/*/*"))
    good = blob.read_bytes()
    blob.write_bytes(good + b"x")
    status, _out, err = cli(data_dir, url, "restore", str(dest), store=bucket)
    assert status == 1 and "failed verification, nothing was restored" in err
    assert s3_objects(s3_endpoint, "cross") == set() and not studies(url)
    blob.write_bytes(good)

    status, out, err = cli(data_dir, url, "restore", str(dest), store=bucket)
    assert status == 0, err + out
    assert s3_objects(s3_endpoint, "cross") == {f"site-x/{k}" for k in keys}
    assert cli(data_dir, url, "db", "verify", store=bucket)[0] == 0

    # And back: that bucket's backup restores into a local folder.
    again = tmp_path / "bucket-backup"
    assert cli(data_dir, url, "backup", str(again), store=bucket)[0] == 0
    assert json.loads((again / MANIFEST).read_text())["storage"]["keys"] == sorted(keys)
    local_dir, local_url = new_target(db_url, tmp_path_factory, request.config)
    status, out, err = cli(local_dir, local_url, "restore", str(again))
    assert status == 0, err + out
    assert {p.name for p in (local_dir / "storage").glob("*/*/*")} == keys
    assert studies(local_url) == studies(url) and cli(local_dir, local_url, "db", "verify")[0] == 0
