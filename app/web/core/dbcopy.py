"""Copying a whole database while the server runs: SQLite's online backup API, PostgreSQL's
pg_dump/pg_restore. Used by app.web.services.backup and app.web.services.restore.

The PostgreSQL password travels in PGPASSWORD, never on a command line (other users of the
machine can read those in the process list).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from urllib.parse import quote

from sqlalchemy.engine import make_url

SQLITE = "sqlite"
POSTGRESQL = "postgresql"


class DatabaseCopyError(Exception):
    """A copy step failed; the message says which and why, in words an administrator can act on."""


def backend(url: str) -> str:
    name = make_url(url).get_backend_name()
    if name not in (SQLITE, POSTGRESQL):
        raise DatabaseCopyError(f"backups support SQLite and PostgreSQL databases, not {name}")
    return name


def sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise DatabaseCopyError("an in-memory SQLite database cannot be backed up or restored")
    return Path(database)


def sqlite_copy(source: Path, target: Path) -> None:
    """Copy ``source`` into ``target`` with the online backup API: one consistent snapshot, even
    while other connections write (in one step, under one read transaction). ``target`` is
    overwritten page by page through SQLite itself, so a server must not be using it."""
    if not source.is_file():
        raise DatabaseCopyError(f"the SQLite database {source} does not exist")
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(target, timeout=30)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def sqlite_self_contained(path: Path) -> None:
    """Switch a copied file out of WAL mode, so that it is one file that a read-only reader can open."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode=DELETE")
    finally:
        connection.close()


def sqlite_integrity(path: Path, read_only: bool = True) -> str:
    """``PRAGMA integrity_check``: "ok" or SQLite's findings. A backup file is opened read-only; a
    live WAL-mode database cannot always be (its -shm file may not exist yet)."""
    if not path.is_file():
        return "the database file is missing"
    connection = (
        sqlite3.connect(f"file:{quote(str(path.absolute()))}?mode=ro", uri=True)
        if read_only
        else sqlite3.connect(path)
    )
    try:
        rows = connection.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return f"not a readable SQLite database ({exc})"
    finally:
        connection.close()
    return "; ".join(str(row[0]) for row in rows)


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection string for ``url`` (no password) and the environment that carries it."""
    from psycopg.conninfo import make_conninfo

    parsed = make_url(url)
    params: dict[str, str] = {k: str(v) for k, v in parsed.query.items() if isinstance(v, str)}
    for key, value in (
        ("host", parsed.host),
        ("port", parsed.port),
        ("user", parsed.username),
        ("dbname", parsed.database),
    ):
        if value is not None:
            params[key] = str(value)
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    return make_conninfo(**params), env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise DatabaseCopyError(
            f"{name} is not on PATH; install the PostgreSQL client tools "
            "(the same major version as the server or newer)"
        )
    return found


def _run(args: list[str], env: dict[str, str], what: str) -> str:
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise DatabaseCopyError(
            f"{what} failed: {detail[-1] if detail else f'exit status {done.returncode}'}"
        )
    return done.stdout


def pg_dump(url: str, out: Path, snapshot: str | None = None) -> None:
    """Dump in pg_dump's custom format; with ``snapshot``, exactly what that exported snapshot sees."""
    conninfo, env = _libpq(url)
    args = [_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--file={out}"]
    if snapshot:
        args.append(f"--snapshot={snapshot}")
    _run([*args, "--dbname", conninfo], env, "pg_dump")


def pg_restore(url: str, dump: Path) -> None:
    """Replace the objects of the dump in ``url``'s database, in one transaction: all or nothing."""
    conninfo, env = _libpq(url)
    args = [
        _tool("pg_restore"),
        "--no-owner",
        "--no-privileges",
        "--clean",
        "--if-exists",
        "--single-transaction",
        "--exit-on-error",
        "--dbname",
        conninfo,
        str(dump),
    ]
    _run(args, env, "pg_restore")


def pg_dump_readable(dump: Path) -> None:
    """Raises DatabaseCopyError unless pg_restore can read the dump's table of contents."""
    _run([_tool("pg_restore"), "--list", str(dump)], dict(os.environ), "reading the dump")
