"""`fetalcns backup DEST` and `fetalcns backup verify SRC`: a consistent copy of the database and
the content store, taken while the server runs.

Consistency rests on two facts. The database copy is one snapshot (SQLite's online backup API;
pg_dump run inside a snapshot this process exported and reads the blob keys from). Blobs are
immutable and content-addressed, and a blob that a committed row names is never deleted (the
sweep spares it), so the blobs the snapshot's rows name can be copied afterwards, at leisure.
Blobs no row of the snapshot names (uploads still in flight, orphans) are left out.

A backup folder::

    DEST/manifest.json          written last: a folder without it is an unfinished backup
    DEST/database.sqlite3       SQLite (journal mode DELETE: one self-contained file), or
    DEST/database.dump          PostgreSQL (pg_dump custom format)
    DEST/storage/ab/cd/<key>    the content store's own layout
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, func, inspect, select, table, text

from app.web.core import dbcopy
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
_CHUNK = 1 << 20


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


def copy_blob(source: Path, target: Path, key: str) -> bool:
    """Copy one blob (temp file, then rename), hashing as it goes; False if the bytes do not match
    the key (then nothing is left at ``target``)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    try:
        digest = hashlib.sha256()
        with source.open("rb") as src, os.fdopen(fd, "wb") as dst:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                dst.write(chunk)
        if digest.hexdigest() != key.split(".", 1)[0]:
            Path(tmp).unlink()
            return False
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def create_backup(database_url: str, storage_dir: Path, dest: Path, app_version: str) -> BackupResult:
    """Back up the database and the blobs its rows name into ``dest`` (new or empty)."""
    _empty_folder(dest)
    started = datetime.now(UTC)
    try:
        kind, snapshot = _dump_database(database_url, dest)
    except dbcopy.DatabaseCopyError as exc:
        raise BackupError(str(exc)) from exc
    live = ContentStore(storage_dir)
    copy = ContentStore(dest / "storage")
    problems: list[BlobProblem] = []
    copied: dict[str, int] = {}
    for blob in snapshot.named:
        if blob.key in copied:
            continue
        source = live.path_for(blob.key)
        where = f"{blob.column}, row {blob.row_id}"
        if not source.is_file():
            problems.append(BlobProblem(blob.key, where, "missing"))
        elif not copy_blob(source, copy.path_for(blob.key), blob.key):
            problems.append(BlobProblem(blob.key, where, "damaged"))
        else:
            copied[blob.key] = source.stat().st_size
            continue
        copied[blob.key] = -1
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
            "blobs": sum(size >= 0 for size in copied.values()),
            "bytes": sum(size for size in copied.values() if size >= 0),
            "keys": sorted(key for key, size in copied.items() if size >= 0),
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


def restore_blobs(source: Path, store: ContentStore) -> int:
    """Copy the backup's blobs into ``store``; a blob there already is kept if intact. Returns how many
    were written."""
    written = 0
    for path in sorted((source / "storage").glob("*/*/*")):
        key = path.name
        try:
            target = store.path_for(key)
        except ValueError:
            continue  # a leftover temp file, not a blob
        if blob_intact(target, key):
            continue
        if not copy_blob(path, target, key):
            raise BackupError(f"blob {key} of the backup is damaged")
        written += 1
    return written
