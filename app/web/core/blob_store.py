"""Which blob store a process uses: the local content-addressed folder (``ContentStore``, the
default) or an S3-compatible bucket (``S3Store``), by ``FETALCNS_STORAGE_BACKEND``.

Both name a blob by the sha256 of its bytes plus a suffix and offer the same operations, so the
upload, the worker, the image routes and the sweep do not know which one they have. Backup,
restore and ``db verify`` read the local folder's files and need the local store (for a bucket,
use the object store's own versioning and replication).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from app.web.core.storage import ContentStore
from app.web.errors import Unavailable


class StorageUnavailable(Unavailable):
    """The blob store refused or could not be reached; nothing was stored. Routes answer 503;
    the analysis worker puts the analysis back in the queue instead of failing it."""


class BlobStore(Protocol):
    def exists(self, key: str) -> bool: ...
    def put_bytes(self, data: bytes, suffix: str) -> tuple[str, bool]: ...
    def put_file(self, source: Path, sha256: str, suffix: str) -> tuple[str, bool]: ...
    def read_bytes(self, key: str) -> bytes: ...
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


def local_only(settings: Any, what: str) -> str | None:
    """Why ``what`` cannot run with these settings (a bucket store), or None."""
    if settings.storage_backend != "local":
        return (
            f"{what} works on the local storage folder only; FETALCNS_STORAGE_BACKEND is "
            f"{settings.storage_backend!r} (use the object store's versioning and replication)"
        )
    return None
