"""Run the Alembic migrations in migrations/ from Python (used by `fetalcns db` and the tests)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from app.web.core.db import make_engine
from app.web.core.paths import project_dir


def alembic_config(database_url: str) -> Config:
    migrations_dir = project_dir("migrations")
    if not (migrations_dir / "env.py").is_file():
        raise RuntimeError(
            f"the migrations folder {migrations_dir} is missing; run from the fetalcns source tree"
        )
    config = Config(str(migrations_dir / "alembic.ini"))
    config.set_main_option("script_location", str(migrations_dir))
    # ConfigParser treats % as interpolation; URLs with escaped passwords contain it.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_database(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade_database(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def head_revision(database_url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()


def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or None for an empty database."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
