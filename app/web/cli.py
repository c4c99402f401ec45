"""`fetalcns serve | db | users | demo-data`: running and administering the web app.

No torch here (and nothing at module top level heavier than argparse).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

log = logging.getLogger(__name__)


def _settings() -> Any:
    from app.web.settings import get_settings

    return get_settings()


def _say_locations(settings: Any, keys: tuple[str, ...] = ("database", "storage", "model")) -> None:
    """Say plainly which database, store and model this command uses: it depends on the folder
    it was started from only through FETALCNS_* settings, and a reader should see which."""
    from app.cli import package_version

    where = settings.locations()
    print(f"fetalcns {package_version()}", file=sys.stderr)
    for key in keys:
        print(f"  {key + ':':<10}{where[key]}", file=sys.stderr)


# ---- serve ----------------------------------------------------------------------------
def sqlite_refusal(settings: Any, workers: int) -> str | None:
    """Why ``workers`` processes may not serve this database, or None when they may."""
    from sqlalchemy.engine import make_url

    if workers > 1 and make_url(settings.resolved_database_url).get_backend_name() == "sqlite":
        return (
            f"--workers {workers} needs PostgreSQL: SQLite lets one process write at a time, so "
            "several server processes would queue behind each other's writes and time out. Set "
            "FETALCNS_DATABASE_URL=postgresql+psycopg://user:password@host/fetalcns, or serve "
            "SQLite with one process (--workers 1)."
        )
    return None


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.web.core.logging_config import uvicorn_log_config

    if args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    settings = _settings()
    refusal = sqlite_refusal(settings, args.workers)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    _say_locations(settings)
    common: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "proxy_headers": True,
        "log_level": "info",
        "log_config": uvicorn_log_config(),
    }
    from app.web.core.metrics_dir import end_multiprocess_run, multiprocess_dir, start_multiprocess_run

    if args.workers == 1:
        if multiprocess_dir() is not None:
            start_multiprocess_run()  # the operator's directory: last run's counts are not ours
        from app.web.app import create_app

        # One process: the model and (without a broker) the worker live in it.
        uvicorn.run(create_app(settings), **common)
        return 0
    # Several processes, each building the app from the same environment (app.main). Sessions
    # and API tokens are database rows; CSRF tokens are signed with the secret key, resolved
    # here once before the processes start, so that a generated key is written once and every
    # process reads the same one. Without a broker each process runs its own in-process worker:
    # the analysis leases (app.web.services.leases) keep them from running a study twice.
    settings.resolved_secret_key()
    # /metrics sums every process's counts from files in one directory of this run
    # (app.web.core.metrics); set before the processes start, so that they inherit it.
    metrics_dir, made_here = start_multiprocess_run()
    try:
        uvicorn.run("app.main:app", workers=args.workers, **common)
    finally:
        end_multiprocess_run(metrics_dir, made_here)
    return 0


# ---- db -------------------------------------------------------------------------------
def _db_upgrade(args: argparse.Namespace) -> int:
    from app.web.core.migrations import current_revision, upgrade_database

    settings = _settings()
    _say_locations(settings, ("database",))
    url = settings.resolved_database_url
    upgrade_database(url, args.revision)
    print(f"database at revision {current_revision(url)}")
    return 0


def _db_downgrade(args: argparse.Namespace) -> int:
    from app.web.core.migrations import current_revision, downgrade_database

    settings = _settings()
    _say_locations(settings, ("database",))
    url = settings.resolved_database_url
    downgrade_database(url, args.revision)
    print(f"database at revision {current_revision(url)}")
    return 0


def _db_current(args: argparse.Namespace) -> int:
    from app.web.core.migrations import current_revision, head_revision

    url = _settings().resolved_database_url
    current, head = current_revision(url), head_revision(url)
    print(f"current: {current or 'empty'}; latest: {head}")
    return 0 if current == head else 1


def _db_sweep(args: argparse.Namespace) -> int:
    from app.web.core.blob_store import make_store
    from app.web.core.db import make_engine, make_session_factory
    from app.web.core.migrations import current_revision, head_revision
    from app.web.services.sweep import sweep

    settings = _settings()
    _say_locations(settings, ("database", "storage"))
    url = settings.resolved_database_url
    if current_revision(url) != head_revision(url):
        # Unmigrated tables would make every blob look orphaned.
        print("error: the database is not migrated; run `fetalcns db upgrade` first", file=sys.stderr)
        return 1
    grace_s = settings.sweep_grace_s if args.grace_s is None else args.grace_s
    engine = make_engine(url)
    try:
        result = sweep(
            make_store(settings),
            make_session_factory(engine),
            settings.upload_tmp_dir,
            grace_s,
        )
    finally:
        engine.dispose()
    print(
        f"removed {result.orphan_blobs} orphan blobs, {result.incoming_files} half-written blobs and "
        f"{result.upload_folders} abandoned upload folders older than {grace_s} s"
    )
    return 0


# ---- users ----------------------------------------------------------------------------
def _session() -> Any:
    from app.web.core.db import make_engine, make_session_factory

    return make_session_factory(make_engine(_settings().resolved_database_url))()


def _users_create(args: argparse.Namespace) -> int:
    from app.web.errors import ServiceError
    from app.web.services.users import create_user

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        import getpass

        password = getpass.getpass(f"password for {args.username}: ")
    with _session() as db:
        try:
            user = create_user(db, args.username, password, role=args.role)
        except ServiceError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
    print(f"created {user.role} {user.username}")
    return 0


def _users_bootstrap_admin(args: argparse.Namespace) -> int:
    from app.web.errors import ServiceError
    from app.web.services.users import bootstrap_admin

    with _session() as db:
        try:
            user, generated = bootstrap_admin(db, _settings().admin_password)
        except ServiceError as exc:
            print(f"error: FETALCNS_ADMIN_PASSWORD: {exc.message}", file=sys.stderr)
            return 1
    if user is None:
        print("an administrator already exists; nothing to do")
    elif generated:
        # Printed once, never stored in clear: the only chance to read it.
        print(f"created administrator 'admin' with password: {generated}")
        print("write it down now; it will not be shown again (change it under Users)")
    else:
        print("created administrator 'admin' with the password from FETALCNS_ADMIN_PASSWORD")
    return 0


def _read_password(args: argparse.Namespace, username: str) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    return getpass.getpass(f"new password for {username}: ")


def _users_change(args: argparse.Namespace) -> int:
    """`users set-password | set-role | rename`: an administrator's changes from the shell
    (audited with no user: the command line is the server's operator)."""
    from app.web.errors import ServiceError
    from app.web.services.users import find_user, rename_user, update_user

    with _session() as db:
        user = find_user(db, args.username)
        if user is None:
            print(f"error: no user named {args.username!r}", file=sys.stderr)
            return 1
        try:
            if args.users_command == "set-password":
                update_user(db, user.id, None, password=_read_password(args, user.username))
                print(f"password of {user.username} set; their sessions and API tokens have ended")
            elif args.users_command == "set-role":
                out = update_user(db, user.id, None, role=args.role)
                print(f"{out.username} is now {out.role}")
            else:
                out = rename_user(db, user.id, args.new_name, None)
                print(f"renamed {args.username} to {out.username}")
        except ServiceError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
    return 0


def _users_list(args: argparse.Namespace) -> int:
    from app.web.services.users import list_users

    with _session() as db:
        for user in list_users(db):
            print(f"{user.username}\t{user.role}\t{'active' if user.active else 'disabled'}")
    return 0


# ---- demo data ------------------------------------------------------------------------
def _demo_data(args: argparse.Namespace) -> int:
    from app.web.services.demo import import_demo_data

    return import_demo_data(_settings(), n_patients=args.patients, if_empty=args.if_empty, seed=args.seed)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = subparsers.add_parser("serve", help="run the web app (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes (default 1); more than 1 needs PostgreSQL and shares the secret key",
    )
    serve.set_defaults(handler=_serve)

    db = subparsers.add_parser("db", help="database migrations")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION")
    up = db_sub.add_parser("upgrade", help="migrate the database to the latest schema (safe to repeat)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(handler=_db_upgrade)
    down = db_sub.add_parser("downgrade", help="migrate down to REVISION (e.g. base: drops everything)")
    down.add_argument("revision")
    down.set_defaults(handler=_db_downgrade)
    db_sub.add_parser("current", help="show the schema revision").set_defaults(handler=_db_current)
    sweep = db_sub.add_parser(
        "sweep", help="remove orphan blobs and abandoned upload folders (as the server does at start)"
    )
    sweep.add_argument(
        "--grace-s",
        type=float,
        default=None,
        help="spare files younger than this many seconds (default FETALCNS_SWEEP_GRACE_S)",
    )
    sweep.set_defaults(handler=_db_sweep)
    from app.web.backup_cli import register_db

    register_db(db_sub)

    users = subparsers.add_parser("users", help="user accounts")
    users_sub = users.add_subparsers(dest="users_command", metavar="ACTION")
    create = users_sub.add_parser("create", help="create a user")
    create.add_argument("username")
    create.add_argument("--role", choices=("admin", "radiologist"), default="radiologist")
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    create.set_defaults(handler=_users_create)
    boot = users_sub.add_parser(
        "bootstrap-admin",
        help="create user 'admin' if no admin exists (FETALCNS_ADMIN_PASSWORD, else a generated password)",
    )
    boot.set_defaults(handler=_users_bootstrap_admin)
    users_sub.add_parser("list", help="list users").set_defaults(handler=_users_list)
    set_password = users_sub.add_parser("set-password", help="reset a user's password (ends their sessions)")
    set_password.add_argument("username")
    set_password.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    set_password.set_defaults(handler=_users_change)
    set_role = users_sub.add_parser("set-role", help="make a user an administrator or a radiologist")
    set_role.add_argument("username")
    set_role.add_argument("role", choices=("admin", "radiologist"))
    set_role.set_defaults(handler=_users_change)
    rename = users_sub.add_parser("rename", help="give a user another name (names ignore case)")
    rename.add_argument("username")
    rename.add_argument("new_name")
    rename.set_defaults(handler=_users_change)

    demo = subparsers.add_parser("demo-data", help="import synthetic demo studies (labelled as such)")
    demo.add_argument("--if-empty", action="store_true", help="only when the database has no studies")
    demo.add_argument("--patients", type=int, default=5, help="number of synthetic patients (default 5)")
    demo.add_argument("--seed", type=int, default=2025)
    demo.set_defaults(handler=_demo_data)
