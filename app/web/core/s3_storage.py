"""Content-addressed blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph, ...), through the
MinIO client: the same keys and operations as the local ``ContentStore``.

An S3 PUT is atomic (an object is either wholly there or not), so nothing is ever half-written
and ``remove_stale_incoming`` has nothing to do. Storing bytes already there refreshes the
object's modification time (a copy onto itself), so the sweep's grace period protects a blob an
upload is about to name, as it does on disk.

A failing bucket raises ``StorageUnavailable`` (a 503 for the routes): the upload that met it
rolls back, so no row names a blob that was not stored. The message names the operation and
the S3 error code only, never a key's owner.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

from minio import Minio
from minio.commonconfig import REPLACE, CopySource
from minio.error import S3Error
from urllib3.exceptions import HTTPError

from app.web.core.blob_store import StorageUnavailable

T = TypeVar("T")
_KEY = re.compile(r"^[0-9a-f]{64}\.[a-z0-9]{1,8}$")
_MISSING = ("NoSuchKey", "NoSuchObject", "ResourceNotFound")
# A server that cannot be reached: urllib3's errors (retries exhausted, refused, timed out) and
# the operating system's.
_UNREACHABLE = (HTTPError, OSError)
# Parts of an upload whose length is not known beforehand (S3's minimum part is 5 MiB).
_PART = 16 << 20


class _Body:
    """An object's bytes as read by the caller: a connection lost half-way is StorageUnavailable."""

    def __init__(self, response: Any) -> None:
        self.response = response

    def read(self, size: int = -1) -> bytes:
        try:
            return bytes(self.response.read(None if size < 0 else size))
        except _UNREACHABLE as exc:
            raise StorageUnavailable("the image storage could not be reached to read a blob") from exc


class _Hashing:
    """Hashes what an upload reads from ``source``."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.source.read(size)
        self.digest.update(chunk)
        self.size += len(chunk)
        return chunk


class S3Store:
    def __init__(self, client: Minio, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    @classmethod
    def from_settings(cls, settings: Any) -> S3Store:
        endpoint = urlsplit(settings.s3_endpoint_url)
        if endpoint.scheme not in ("http", "https") or not endpoint.netloc:
            raise ValueError("FETALCNS_S3_ENDPOINT_URL must be http(s)://host[:port]")
        client = Minio(
            endpoint.netloc,
            access_key=settings.s3_access_key_id,
            secret_key=settings.s3_secret_access_key,
            secure=endpoint.scheme == "https",
            region=settings.s3_region,
        )
        return cls(client, settings.s3_bucket, settings.s3_prefix)

    # ---- keys -------------------------------------------------------------------------
    def _object(self, key: str) -> str:
        if not _KEY.match(key):
            raise ValueError(f"not a storage key: {key!r}")
        return f"{self.prefix}{key}"

    def _call(self, what: str, work: Callable[[], T]) -> T:
        try:
            return work()
        except S3Error as exc:
            raise StorageUnavailable(f"the image storage refused to {what} ({exc.code})") from exc
        except _UNREACHABLE as exc:
            raise StorageUnavailable(f"the image storage could not be reached to {what}") from exc

    def _stat(self, key: str) -> Any | None:
        try:
            return self.client.stat_object(self.bucket, self._object(key))
        except S3Error as exc:
            if exc.code in _MISSING:
                return None
            raise StorageUnavailable(f"the image storage refused to read a blob ({exc.code})") from exc
        except _UNREACHABLE as exc:
            raise StorageUnavailable("the image storage could not be reached to read a blob") from exc

    def exists(self, key: str) -> bool:
        return self._stat(key) is not None

    def _reuse(self, key: str) -> bool:
        """True when the blob is stored already; then its modification time is refreshed."""
        if self._stat(key) is None:
            return False
        name = self._object(key)
        self._call(
            "refresh a blob",
            lambda: self.client.copy_object(
                self.bucket,
                name,
                CopySource(self.bucket, name),
                metadata={"x-amz-meta-reused": str(time.time())},
                metadata_directive=REPLACE,
            ),
        )
        return True

    # ---- the ContentStore operations ----------------------------------------------------
    def put_bytes(self, data: bytes, suffix: str) -> tuple[str, bool]:
        key = f"{hashlib.sha256(data).hexdigest()}.{suffix}"
        if self._reuse(key):
            return key, False
        name = self._object(key)
        self._call(
            "store a blob", lambda: self.client.put_object(self.bucket, name, io.BytesIO(data), len(data))
        )
        return key, True

    def put_file(self, source: Path, sha256: str, suffix: str, *, move: bool = False) -> tuple[str, bool]:
        # ``move`` (the caller gives the file up) changes nothing here: an upload is a copy.
        key = f"{sha256}.{suffix}"
        if self._reuse(key):
            return key, False
        name = self._object(key)
        self._call("store a blob", lambda: self.client.fput_object(self.bucket, name, str(source)))
        return key, True

    def read_bytes(self, key: str) -> bytes:
        with self.open_blob(key) as body:
            return body.read()

    @contextmanager
    def open_blob(self, key: str) -> Iterator[BinaryIO]:
        """The object's bytes as a stream (FileNotFoundError when it is not stored)."""
        name = self._object(key)
        try:
            response = self.client.get_object(self.bucket, name)
        except S3Error as exc:
            if exc.code in _MISSING:
                raise FileNotFoundError(f"blob {key} is not in the storage") from exc
            raise StorageUnavailable(f"the image storage refused to read a blob ({exc.code})") from exc
        except _UNREACHABLE as exc:
            raise StorageUnavailable("the image storage could not be reached to read a blob") from exc
        try:
            yield _Body(response)  # type: ignore[misc]  # read() is all a blob reader uses
        finally:
            response.close()
            response.release_conn()

    def put_checked(self, key: str, source: BinaryIO) -> int | None:
        """Store ``source``'s bytes under ``key`` (replacing what is there), hashing while uploading:
        the number of bytes, or None when they do not match the key. Such an upload is removed at
        once; a PUT cannot be made conditional on a sha256 the MinIO client computes afterwards."""
        name = self._object(key)
        data = _Hashing(source)
        self._call(
            "store a blob",
            lambda: self.client.put_object(self.bucket, name, data, -1, part_size=_PART),  # type: ignore[arg-type]
        )
        if data.digest.hexdigest() != key.split(".", 1)[0]:
            self.delete(key)
            return None
        return data.size

    def delete(self, key: str) -> None:
        name = self._object(key)
        self._call("delete a blob", lambda: self.client.remove_object(self.bucket, name))

    def _listing(self) -> dict[str, float]:
        """Every stored key with its modification time (epoch seconds)."""

        def walk() -> dict[str, float]:
            found = {}
            for item in self.client.list_objects(self.bucket, prefix=self.prefix, recursive=True):
                key = str(item.object_name)[len(self.prefix) :]
                if _KEY.match(key):
                    found[key] = item.last_modified.timestamp() if item.last_modified else 0.0
            return found

        return self._call("list blobs", walk)

    def all_keys(self) -> set[str]:
        return set(self._listing())

    def keys_older_than(self, age_s: float) -> set[str]:
        cutoff = time.time() - age_s
        return {key for key, modified in self._listing().items() if modified < cutoff}

    def delete_if_older(self, key: str, age_s: float) -> bool:
        """Delete unless written or reused within ``age_s`` (checked again right before)."""
        stat = self._stat(key)
        if (
            stat is None
            or stat.last_modified is None
            or stat.last_modified.timestamp() >= time.time() - age_s
        ):
            return False
        self.delete(key)
        return True

    def remove_stale_incoming(self, age_s: float) -> int:
        return 0  # an S3 PUT is atomic: there are no half-written objects
