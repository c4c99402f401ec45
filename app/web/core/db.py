"""Database engine and sessions. Portable across SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, TypeDecorator, create_engine, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

# Stable constraint names so that Alembic migrations are identical on both backends.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes in, timezone-aware UTC datetimes out, on every backend.

    SQLite has no timezone type and returns naive values; PostgreSQL returns the
    session's zone. Normalising here keeps comparisons and JSON output consistent.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a timezone-aware column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def insert_for(db: Session) -> Callable[..., Any]:
    """The dialect's INSERT construct, which has ``on_conflict_do_nothing``: a row that concurrent
    requests may create at the same instant is inserted that way, then selected, so that none of
    them fails on the unique constraint."""
    from sqlalchemy.dialects.postgresql import insert as postgresql_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert if db.get_bind().dialect.name == "sqlite" else postgresql_insert


def utcnow() -> datetime:
    return datetime.now(UTC)


def _sqlite_pragmas(busy_timeout_s: float) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL lets the page requests read while the worker or an upload writes.
        cursor.execute("PRAGMA journal_mode=WAL")
        # A writer waits this long for another's (short) transaction before "database is locked".
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.close()

    return on_connect


# Connections kept per server process, and as many more under load. A request holds one at a
# time, for one short transaction (uploads release theirs before the import: app.web.deps), so
# 10 + 10 serve the 40 request threads; four processes stay under PostgreSQL's default of 100.
DEFAULT_POOL_SIZE = 10


def make_engine(
    url: str,
    *,
    busy_timeout_s: float = 10.0,
    pool_size: int = DEFAULT_POOL_SIZE,
    pool_timeout_s: float = 30.0,
) -> Engine:
    """An engine for ``url``; creates the parent folder of a SQLite file."""
    parsed = make_url(url)
    # hide_parameters: SQLAlchemy's error texts otherwise quote the statement's values, which
    # include patient names and IDs.
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "hide_parameters": True}
    in_memory = parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")
    if not in_memory:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_timeout=pool_timeout_s)
    if parsed.get_backend_name() == "sqlite":
        if not in_memory:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": busy_timeout_s}
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_s))
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
