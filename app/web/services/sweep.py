"""The sweep: files a crash left behind, removed at server start and by `fetalcns db sweep`.

A crash between storing blobs and committing the rows that name them leaves orphan blobs; a crash
during an upload leaves its temp folder under ``upload_tmp_dir``. The sweep removes

- blobs of the content store that no column of ``BLOB_KEY_COLUMNS`` names,
- half-written ``.incoming-*`` files of the store,
- folders and files under the upload temp folder,

but only those untouched for ``grace_s`` seconds: another process may be uploading right now,
with blobs written and rows not yet committed. Blobs are listed *before* the rows are read, and a
blob reused by an upload is touched (app.web.core.storage), so a blob named by a row committed
during the sweep is either young or seen in the rows. Only counts are logged.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.web.core.blob_store import BlobStore
from app.web.core.models import BLOB_KEY_COLUMNS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    orphan_blobs: int
    incoming_files: int
    upload_folders: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def referenced_keys(db: Session) -> set[str]:
    """Every storage key some row names."""
    keys: set[str] = set()
    for column in BLOB_KEY_COLUMNS:
        keys.update(key for key in db.scalars(select(column).distinct()) if key)
    return keys


def _newest_mtime(path: Path) -> float:
    """The latest modification time in a folder tree: an upload writing deep inside keeps it young."""
    try:
        newest = path.lstat().st_mtime
        if path.is_dir() and not path.is_symlink():
            for folder, dirs, files in os.walk(path):
                for name in (*dirs, *files):
                    newest = max(newest, os.lstat(os.path.join(folder, name)).st_mtime)
    except FileNotFoundError:
        return float("inf")  # removed meanwhile (its upload finished): not ours to count
    return newest


def sweep_upload_tmp(upload_tmp_dir: Path, grace_s: float) -> int:
    """Remove what abandoned uploads left in ``upload_tmp_dir``; returns how many entries."""
    if not upload_tmp_dir.is_dir():
        return 0
    cutoff = time.time() - grace_s
    removed = 0
    for entry in upload_tmp_dir.iterdir():
        if _newest_mtime(entry) >= cutoff:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed += 1
    return removed


def sweep(
    store: BlobStore,
    session_factory: sessionmaker[Session],
    upload_tmp_dir: Path,
    grace_s: float,
) -> SweepResult:
    """Remove orphan blobs, stale half-written blobs and abandoned upload folders older than ``grace_s``."""
    candidates = store.keys_older_than(grace_s)  # before reading the rows; see the module docstring
    with session_factory() as db:
        referenced = referenced_keys(db)
    orphans = sum(store.delete_if_older(key, grace_s) for key in sorted(candidates - referenced))
    result = SweepResult(
        orphan_blobs=orphans,
        incoming_files=store.remove_stale_incoming(grace_s),
        upload_folders=sweep_upload_tmp(upload_tmp_dir, grace_s),
    )
    log.info(
        "sweep: removed %d orphan blobs, %d half-written blobs, %d abandoned upload folders",
        result.orphan_blobs,
        result.incoming_files,
        result.upload_folders,
    )
    return result
