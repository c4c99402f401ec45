"""Which blob store a process uses: the local content-addressed folder (``ContentStore``, the
default) or an S3-compatible bucket (``S3Store``), by ``FETALCNS_STORAGE_BACKEND``.

Both name a blob by the sha256 of its bytes plus a suffix and offer the same operations, so the
upload, the worker, the image routes, the sweep, backup, restore and ``db verify`` do not know
which one they have. ``open_blob`` and ``put_checked`` are what backup and restore copy through:
a stream out of one store into another, hashed on the way, so a backup folder has the same
layout whichever store it came from and restores into either.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from app.web.core.storage import ContentStore
from app.web.errors import Unavailable


class StorageUnavailable(Unavailable):
    """The blob store refused or could not be reached; nothing was stored. Routes answer 503;
    the analysis worker puts the analysis back in the queue instead of failing it."""


class BlobStore(Protocol):
    def exists(self, key: str) -> bool: ...
    def put_bytes(self, data: bytes, suffix: str) -> tuple[str, bool]: ...
    def put_file(self, source: Path, sha256: str, suffix: str, *, move: bool = False) -> tuple[str, bool]: ...
    def read_bytes(self, key: str) -> bytes: ...
    def open_blob(self, key: str) -> AbstractContextManager[BinaryIO]: ...
    def put_checked(self, key: str, source: BinaryIO) -> int | None: ...
    def delete(self, key: str) -> None: ...
    def all_keys(self) -> set[str]: ...
    def keys_older_than(self, age_s: float) -> set[str]: ...
    def delete_if_older(self, key: str, age_s: float) -> bool: ...
    def remove_stale_incoming(self, age_s: float) -> int: ...


def make_store(settings: Any) -> BlobStore:
    """The store the settings name (app.web.settings)."""
    if settings.storage_backend == "s3":
        from app.web.core.s3_storage import S3Store

        return S3Store.from_settings(settings)
    return ContentStore(settings.resolved_storage_dir)


def describe_store(settings: Any) -> dict[str, str]:
    """Which store the settings name, for a backup's manifest: never the endpoint or credentials."""
    if settings.storage_backend == "s3":
        return {"backend": "s3", "bucket": settings.s3_bucket, "prefix": settings.s3_prefix}
    return {"backend": "local"}
