"""A real S3-compatible server on loopback for the tests: moto's standalone server, started as a
process (never an in-process mock), one per test module.

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


def s3_client(endpoint: str) -> Minio:
    return Minio(endpoint.removeprefix("http://"), access_key="testing", secret_key="testing", secure=False)


def empty_bucket(endpoint: str, name: str) -> str:
    """The bucket ``name``, created if needed and emptied."""
    client = s3_client(endpoint)
    if not client.bucket_exists(name):
        client.make_bucket(name)
    for item in client.list_objects(name, recursive=True):
        client.remove_object(name, str(item.object_name))
    return name


@pytest.fixture
def bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> str:
    return empty_bucket(s3_endpoint, "fetalcns-" + str(abs(hash(request.node.nodeid)) % 10**10))


def s3_objects(endpoint: str, bucket: str) -> set[str]:
    """Every object name in the bucket, whatever its prefix."""
    return {str(item.object_name) for item in s3_client(endpoint).list_objects(bucket, recursive=True)}
