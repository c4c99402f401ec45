"""`fetalcns backup DEST`, `fetalcns backup verify SRC`, `fetalcns restore SRC [--force]` and
`fetalcns db verify` (registered by app.web.cli). See app.web.services.backup and .restore.

Exit status: 0 when everything checked out, 1 when something did not (the message says what).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _settings() -> Any:
    from app.web.settings import get_settings

    return get_settings()


def _store(settings: Any) -> Any:
    """The configured blob store (the local folder or a bucket); ValueError for a bad S3 endpoint."""
    from app.web.core.blob_store import make_store

    return make_store(settings)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _backup(args: argparse.Namespace) -> int:
    if args.dest == "verify":
        if args.source is None:
            return _fail("say which backup folder to verify: fetalcns backup verify SRC")
        return _verify_backup(Path(args.source))
    if args.source is not None:
        return _fail("fetalcns backup takes one folder (or: fetalcns backup verify SRC)")
    from app.cli import package_version
    from app.web.core.blob_store import StorageUnavailable, describe_store
    from app.web.services.backup import BackupError, create_backup

    settings = _settings()
    where = settings.locations()
    print(f"backing up {where['database']} and {where['storage']} into {args.dest}", file=sys.stderr)
    try:
        result = create_backup(
            settings.resolved_database_url,
            _store(settings),
            Path(args.dest),
            package_version(),
            describe_store(settings),
        )
    except (BackupError, StorageUnavailable, ValueError) as exc:
        return _fail(str(exc))
    storage = result.manifest["storage"]
    rows = result.manifest["database"]["row_counts"]
    print(
        f"backup written to {result.dest}: {rows.get('studies', 0)} studies, {rows.get('images', 0)} images, "
        f"{storage['blobs']} blobs ({storage['bytes'] / (1 << 20):.1f} MiB)"
    )
    for problem in result.problems:
        print(f"warning: {problem.message()}; it is not in the backup", file=sys.stderr)
    return 1 if result.problems else 0


def _verify_backup(source: Path) -> int:
    from app.web.services.backup import BackupError, verify_backup

    try:
        check = verify_backup(source)
    except BackupError as exc:
        return _fail(str(exc))
    if not check.ok:
        for message in check.messages():
            print(f"error: {message}", file=sys.stderr)
        print(f"backup {source} FAILED verification")
        return 1
    print(f"backup {source} verified: database file intact; {check.blobs.summary()}")
    return 0


def _restore(args: argparse.Namespace) -> int:
    from app.web.core.blob_store import StorageUnavailable
    from app.web.services.backup import BackupError
    from app.web.services.restore import restore_backup

    settings = _settings()
    where = settings.locations()
    print(f"restoring {args.source} into {where['database']} and {where['storage']}", file=sys.stderr)
    try:
        result = restore_backup(
            Path(args.source), settings.resolved_database_url, _store(settings), force=args.force
        )
    except (BackupError, StorageUnavailable, ValueError) as exc:
        return _fail(str(exc))
    print(
        f"restored: {result.blobs_written} blobs written, {result.blobs_removed} removed; "
        f"database at revision {result.revision or 'empty'}"
    )
    print(f"check of the restored data: {result.check.summary()}; integrity: {result.integrity}")
    for problem in result.check.problems:
        print(f"error: {problem.message()}", file=sys.stderr)
    from app.web.core.migrations import head_revision

    head = head_revision(settings.resolved_database_url)
    if result.revision != head:
        print(f"the backup's schema is {result.revision}; run `fetalcns db upgrade` to reach {head}")
    return 0 if result.check.ok and result.integrity in ("ok", "not checked") else 1


def _db_verify(args: argparse.Namespace) -> int:
    from app.web.core import dbcopy
    from app.web.core.blob_store import StorageUnavailable
    from app.web.core.db import make_engine
    from app.web.services.blob_check import check_blobs, named_blobs

    settings = _settings()
    url = settings.resolved_database_url
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            report = check_blobs(named_blobs(connection), _store(settings))
    except (StorageUnavailable, ValueError) as exc:
        return _fail(str(exc))
    finally:
        engine.dispose()
    for problem in report.problems:
        print(f"error: {problem.message()}", file=sys.stderr)
    print(report.summary())
    if dbcopy.backend(url) == dbcopy.SQLITE:
        integrity = dbcopy.sqlite_integrity(dbcopy.sqlite_path(url), read_only=False)
        print(f"SQLite integrity check: {integrity}")
        if integrity != "ok":
            return 1
    return 0 if report.ok else 1


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    backup = subparsers.add_parser(
        "backup",
        help="copy the database and storage into a new folder while the server runs; "
        "`backup verify SRC` checks a backup",
        description="fetalcns backup DEST: a consistent copy of the database and of every blob its rows "
        "name, with manifest.json. fetalcns backup verify SRC: check a backup (a folder named "
        "'verify' is written ./verify).",
    )
    backup.add_argument("dest", metavar="DEST", help="a new or empty folder (or the word verify)")
    backup.add_argument("source", metavar="SRC", nargs="?", help="with verify: the backup folder to check")
    backup.set_defaults(handler=_backup)

    restore = subparsers.add_parser(
        "restore",
        help="restore a backup into the configured database and storage (stop the server first)",
    )
    restore.add_argument("source", metavar="SRC", help="a folder written by fetalcns backup")
    restore.add_argument(
        "--force", action="store_true", help="replace a database and storage that already hold data"
    )
    restore.set_defaults(handler=_restore)


def register_db(db_sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    verify = db_sub.add_parser(
        "verify", help="check that every blob a row names is stored and matches its sha256"
    )
    verify.set_defaults(handler=_db_verify)
