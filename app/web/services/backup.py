"""`fetalcns backup DEST` and `fetalcns backup verify SRC`: a consistent copy of the database and
the blob store (the local folder or a bucket: app.web.core.blob_store), taken while the server runs.

Consistency rests on two facts. The database copy is one snapshot (SQLite's online backup API;
pg_dump run inside a snapshot this process exported and reads the blob keys from). Blobs are
immutable and content-addressed, and a blob that a committed row names is never deleted (the
sweep spares it), so the blobs the snapshot's rows name can be copied afterwards, at leisure.
Blobs no row of the snapshot names (uploads still in flight, orphans) are left out.

A backup folder::

    DEST/manifest.json          written last: a folder without it is an unfinished backup
    DEST/database.sqlite3       SQLite (journal mode DELETE: one self-contained file), or
    DEST/database.dump          PostgreSQL (pg_dump custom format)
    DEST/storage/ab/cd/<key>    the local content store's layout, whichever store the blobs came
                                from (manifest.json says which), so any backup restores into either
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, func, inspect, select, table, text

from app.web.core import dbcopy
from app.web.core.blob_store import BlobStore
from app.web.core.db import make_engine
from app.web.core.storage import ContentStore
from app.web.services.blob_check import (
    BlobProblem,
    BlobReport,
    NamedBlob,
    blob_intact,
    check_blobs,
    file_sha256,
    named_blobs,
)

MANIFEST = "manifest.json"
FORMAT = "fetalcns-backup"
FORMAT_VERSION = 1
DATABASE_FILES = {dbcopy.SQLITE: "database.sqlite3", dbcopy.POSTGRESQL: "database.dump"}


class BackupError(Exception):
    """The backup or its verification cannot go on; the message says why."""


@dataclass
class BackupResult:
    dest: Path
    manifest: dict[str, Any]
    # Blobs the snapshot names that the live store lacks or holds damaged: not copied.
    problems: list[BlobProblem] = field(default_factory=list)


@dataclass
class Snapshot:
    """What the database copy holds, read from the copy's own snapshot."""

    revision: str | None
    row_counts: dict[str, int]
    named: list[NamedBlob]


def read_snapshot(connection: Connection) -> Snapshot:
    names = sorted(inspect(connection).get_table_names())
    counts = {
        name: int(connection.execute(select(func.count()).select_from(table(name))).scalar_one())
        for name in names
    }
    revision = None
    if "alembic_version" in names:
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    named = named_blobs(connection) if "images" in names else []
    return Snapshot(revision, counts, named)


def read_sqlite_file(path: Path) -> Snapshot:
    # A plain engine: app.web.core.db.make_engine would switch the file to WAL mode.
    engine = create_engine(f"sqlite:///{path.as_posix()}")
    try:
        with engine.connect() as connection:
            return read_snapshot(connection)
    finally:
        engine.dispose()


def _empty_folder(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} is not an empty folder; back up into a new or empty folder")
    dest.mkdir(parents=True, exist_ok=True)


def _dump_database(database_url: str, dest: Path) -> tuple[str, Snapshot]:
    kind = dbcopy.backend(database_url)
    target = dest / DATABASE_FILES[kind]
    if kind == dbcopy.SQLITE:
        dbcopy.sqlite_copy(dbcopy.sqlite_path(database_url), target)
        dbcopy.sqlite_self_contained(target)
        return kind, read_sqlite_file(target)
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                # The first statement fixes this transaction's snapshot; pg_dump reads the same one.
                exported = connection.execute(text("SELECT pg_export_snapshot()")).scalar_one()
                snapshot = read_snapshot(connection)
                dbcopy.pg_dump(database_url, target, snapshot=str(exported))
    finally:
        engine.dispose()
    return kind, snapshot


def copy_blobs(
    named: list[NamedBlob], live: BlobStore, copy: BlobStore
) -> tuple[dict[str, int], list[BlobProblem]]:
    """Copy each named blob once, hashed on the way: (key → bytes) of those copied, and the problems
    (missing or damaged in ``live``: not copied)."""
    copied: dict[str, int] = {}
    problems: list[BlobProblem] = []
    seen: set[str] = set()
    for blob in named:
        if blob.key in seen:
            continue
        seen.add(blob.key)
        where = f"{blob.column}, row {blob.row_id}"
        try:
            with live.open_blob(blob.key) as source:
                size = copy.put_checked(blob.key, source)
        except (FileNotFoundError, ValueError):  # not stored, or no storage key at all
            problems.append(BlobProblem(blob.key, where, "missing"))
            continue
        if size is None:
            problems.append(BlobProblem(blob.key, where, "damaged"))
        else:
            copied[blob.key] = size
    return copied, problems


def create_backup(
    database_url: str, live: BlobStore, dest: Path, app_version: str, source: dict[str, str]
) -> BackupResult:
    """Back up the database and the blobs its rows name, read from ``live``, into ``dest`` (new or
    empty). ``source`` describes the live store for the manifest (never its credentials)."""
    _empty_folder(dest)
    started = datetime.now(UTC)
    try:
        kind, snapshot = _dump_database(database_url, dest)
    except dbcopy.DatabaseCopyError as exc:
        raise BackupError(str(exc)) from exc
    copied, problems = copy_blobs(snapshot.named, live, ContentStore(dest / "storage"))
    database_file = dest / DATABASE_FILES[kind]
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fetalcns_version": app_version,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "database": {
            "backend": kind,
            "file": database_file.name,
            "bytes": database_file.stat().st_size,
            "sha256": file_sha256(database_file),
            "revision": snapshot.revision,
            "row_counts": snapshot.row_counts,
        },
        "storage": {
            "source": source,
            "blobs": len(copied),
            "bytes": sum(copied.values()),
            "keys": sorted(copied),
            "not_copied": [{"key": p.key, "where": p.where, "problem": p.problem} for p in problems],
        },
    }
    tmp = dest / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, dest / MANIFEST)
    return BackupResult(dest, manifest, problems)


# ---- verification ------------------------------------------------------------------------
@dataclass
class BackupCheck:
    manifest: dict[str, Any]
    errors: list[str] = field(default_factory=list)
    blobs: BlobReport = field(default_factory=BlobReport)

    @property
    def ok(self) -> bool:
        return not self.errors and self.blobs.ok

    def messages(self) -> list[str]:
        return [*self.errors, *(p.message() for p in self.blobs.problems)]


def read_manifest(source: Path) -> dict[str, Any]:
    path = source / MANIFEST
    if not path.is_file():
        raise BackupError(f"{source} has no {MANIFEST}: it is not a backup, or the backup did not finish")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path} cannot be read ({type(exc).__name__})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path} is not a fetalcns backup manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(
            f"backup format {manifest.get('format_version')} is not supported (expected {FORMAT_VERSION})"
        )
    return manifest


def verify_backup(source: Path) -> BackupCheck:
    """Check a backup folder: the database file is the one the manifest describes (sha256) and is
    readable, and every blob its rows name is present and matches its sha256."""
    manifest = read_manifest(source)
    check = BackupCheck(manifest)
    database = manifest["database"]
    kind = database.get("backend")
    database_file = source / str(database.get("file"))
    if kind not in DATABASE_FILES or database_file.name != DATABASE_FILES[kind]:
        check.errors.append(f"the manifest names an unknown database backend {kind!r}")
        return check
    if not database_file.is_file():
        check.errors.append(f"the database file {database_file.name} is missing")
        return check
    if file_sha256(database_file) != database.get("sha256"):
        check.errors.append(
            f"the database file {database_file.name} is damaged: its sha256 differs from the manifest's"
        )
        return check
    store = ContentStore(source / "storage")
    if kind == dbcopy.SQLITE:
        integrity = dbcopy.sqlite_integrity(database_file)
        if integrity != "ok":
            check.errors.append(f"the database copy fails SQLite's integrity check: {integrity}")
            return check
        named = read_sqlite_file(database_file).named
    else:
        try:
            dbcopy.pg_dump_readable(database_file)
        except dbcopy.DatabaseCopyError as exc:
            check.errors.append(str(exc))
            return check
        # The dump is not queryable without a server: the keys were read from pg_dump's own snapshot.
        named = [NamedBlob(key, "backup manifest", 0) for key in manifest["storage"]["keys"]]
    for item in manifest["storage"].get("not_copied", []):
        check.errors.append(
            f"blob {item['key']} ({item['where']}) was {item['problem']} in the live storage when the backup "
            "was taken and is not in the backup"
        )
    check.blobs = check_blobs(named, store)
    return check


def restore_blobs(source: Path, target: BlobStore) -> int:
    """Copy the backup's blobs into ``target``; a blob there already is kept if intact (a damaged one
    is replaced). Returns how many were written."""
    backup = ContentStore(source / "storage")
    written = 0
    for key in sorted(backup.all_keys()):
        if blob_intact(target, key):
            continue
        with backup.open_blob(key) as data:
            if target.put_checked(key, data) is None:
                raise BackupError(f"blob {key} of the backup is damaged")
        written += 1
    return written
