"""Does every blob that a row names exist, with the bytes its key promises?

A storage key is ``<sha256 of the bytes>.<suffix>`` (app.web.core.storage), so a blob can be
checked without any other record: hash the bytes and compare, whichever store holds them (the
local folder, a bucket, a backup's folder). Used by `fetalcns db verify` on the live data, by
`fetalcns backup verify` on a backup and by `fetalcns restore` on what it restored. Messages
name the key, the column and the row id; never patient data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, select

from app.web.core.blob_store import BlobStore
from app.web.core.models import BLOB_KEY_COLUMNS

_CHUNK = 1 << 20


@dataclass(frozen=True)
class NamedBlob:
    """One place a key is named: ``images.storage_key`` of row 12."""

    key: str
    column: str
    row_id: int


@dataclass(frozen=True)
class BlobProblem:
    key: str
    where: str  # "images.storage_key, row 12"
    problem: str  # "missing" or "damaged"

    def message(self) -> str:
        if self.problem == "missing":
            return f"blob {self.key} ({self.where}) is missing from the storage"
        return f"blob {self.key} ({self.where}) is damaged: its bytes do not match its sha256"


@dataclass
class BlobReport:
    checked: int = 0
    problems: list[BlobProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return f"all {self.checked} blobs named by the database are present and match their sha256"
        missing = sum(p.problem == "missing" for p in self.problems)
        damaged = len(self.problems) - missing
        return f"{len(self.problems)} of {self.checked} blobs failed: {missing} missing, {damaged} damaged"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def blob_intact(store: BlobStore, key: str) -> bool | None:
    """True when ``store`` holds the bytes ``key`` names, False when damaged, None when missing
    (or when ``key`` is no storage key at all: nothing can hold it)."""
    digest = hashlib.sha256()
    try:
        with store.open_blob(key) as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except (FileNotFoundError, ValueError):
        return None
    return digest.hexdigest() == key.split(".", 1)[0]


def named_blobs(connection: Connection) -> list[NamedBlob]:
    """Every (key, column, row) of ``BLOB_KEY_COLUMNS``; empty keys skipped."""
    named: list[NamedBlob] = []
    for column in BLOB_KEY_COLUMNS:
        table = column.table
        label = f"{table.name}.{column.name}"
        rows = connection.execute(select(table.c.id, column).where(column.is_not(None)).order_by(table.c.id))
        named.extend(NamedBlob(key, label, int(row_id)) for row_id, key in rows if key)
    return named


def check_blobs(named: Iterable[NamedBlob], store: BlobStore) -> BlobReport:
    """Hash each distinct key once; every place that names a bad key is reported once per key."""
    report = BlobReport()
    seen: dict[str, bool | None] = {}
    for blob in named:
        if blob.key not in seen:
            seen[blob.key] = blob_intact(store, blob.key)
            report.checked += 1
            state = seen[blob.key]
            if state is not True:
                where = f"{blob.column}, row {blob.row_id}"
                report.problems.append(
                    BlobProblem(blob.key, where, "missing" if state is None else "damaged")
                )
    return report
