"""`fetalcns restore SRC [--force]`: a verified backup back into the configured database and blob
store (the local folder or a bucket; a backup of either restores into either).

Order matters for a crash half-way: the backup is verified first (nothing is touched when it is
damaged), then blobs are copied (extra blobs are harmless: the sweep removes blobs no row names),
then the database is replaced in one step (SQLite backup API; pg_restore --single-transaction).
Finally the restored data is checked: every blob a restored row names must be present and intact.

A target that already holds data (rows in any table, or blobs) is refused unless ``force``; with
``force`` the database is replaced and blobs the backup does not hold are removed (in a bucket:
under the configured prefix only, the store's own keys). The server must be stopped while
restoring.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import inspect

from app.web.core import dbcopy
from app.web.core.blob_store import BlobStore
from app.web.core.db import make_engine
from app.web.services.backup import (
    BackupCheck,
    BackupError,
    read_snapshot,
    restore_blobs,
    verify_backup,
)
from app.web.services.blob_check import BlobReport, check_blobs, named_blobs


@dataclass
class RestoreResult:
    backup: BackupCheck
    blobs_written: int
    blobs_removed: int
    revision: str | None
    check: BlobReport
    integrity: str  # "ok", SQLite's findings, or "not checked" (PostgreSQL)


def _database_rows(database_url: str) -> int:
    """Rows in the target's tables (the schema version table aside); 0 for a new database."""
    if dbcopy.backend(database_url) == dbcopy.SQLITE and not dbcopy.sqlite_path(database_url).exists():
        return 0
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).get_table_names():
                return 0
            counts = read_snapshot(connection).row_counts
    finally:
        engine.dispose()
    return sum(n for name, n in counts.items() if name != "alembic_version")


def check_target_empty(database_url: str, store: BlobStore) -> None:
    rows = _database_rows(database_url)
    blobs = len(store.all_keys())
    if rows or blobs:
        raise BackupError(
            f"the target already holds data ({rows} database rows, {blobs} stored blobs); "
            "restore refuses to overwrite it. Restore into a new database and an empty storage "
            "folder or bucket prefix, or pass --force to replace what is there"
        )


def restore_backup(source: Path, database_url: str, store: BlobStore, force: bool = False) -> RestoreResult:
    check = verify_backup(source)
    if not check.ok:
        raise BackupError(
            "the backup failed verification, nothing was restored: " + "; ".join(check.messages())
        )
    database = check.manifest["database"]
    kind = dbcopy.backend(database_url)
    if database["backend"] != kind:
        raise BackupError(
            f"this backup holds a {database['backend']} database and the target is {kind}; "
            "restore it into a database of the same kind"
        )
    if not force:
        check_target_empty(database_url, store)
    written = restore_blobs(source, store)
    database_file = source / database["file"]
    try:
        if kind == dbcopy.SQLITE:
            target = dbcopy.sqlite_path(database_url)
            dbcopy.sqlite_copy(database_file, target)
        else:
            dbcopy.pg_restore(database_url, database_file)
    except dbcopy.DatabaseCopyError as exc:
        raise BackupError(str(exc)) from exc
    kept = set(check.manifest["storage"]["keys"])
    removed = 0
    if force:
        for key in store.all_keys() - kept:
            store.delete(key)
            removed += 1
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            revision = read_snapshot(connection).revision
            report = check_blobs(named_blobs(connection), store)
    finally:
        engine.dispose()
    integrity = (
        dbcopy.sqlite_integrity(dbcopy.sqlite_path(database_url), read_only=False)
        if kind == dbcopy.SQLITE
        else "not checked"
    )
    return RestoreResult(check, written, removed, revision, report, integrity)
