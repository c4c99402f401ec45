"""Fixtures for the `fetalcns backup` / `restore` / `db verify` tests (tests/test_web_backup*.py):
the CLI run with settings for one place, and a fresh place to restore into."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select
from web_support import new_database

from app.web.core.db import make_engine
from app.web.core.models import Image, Study

# The store settings a `cli` call names or else clears, so that one call's store is not the next's.
STORE_SETTINGS = (
    "storage_backend",
    "s3_endpoint_url",
    "s3_bucket",
    "s3_prefix",
    "s3_region",
    "s3_access_key_id",
    "s3_secret_access_key",
)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """``cli(data_dir, db_url, *argv, store={setting: value})`` → (exit status, stdout, stderr), with
    settings for that place (the local storage folder unless ``store`` names a bucket)."""
    from app.cli import main
    from app.web.settings import get_settings

    def run(
        data_dir: Path, url: str, *argv: str, store: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        monkeypatch.setenv("FETALCNS_DATA_DIR", str(data_dir))
        monkeypatch.setenv("FETALCNS_DATABASE_URL", url)
        for name in STORE_SETTINGS:
            variable = f"FETALCNS_{name.upper()}"
            if store and name in store:
                monkeypatch.setenv(variable, store[name])
            elif variable in os.environ:
                monkeypatch.delenv(variable)
        get_settings.cache_clear()
        capsys.readouterr()
        status = main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    yield run
    get_settings.cache_clear()


def new_target(
    db_url: str, tmp_path_factory: pytest.TempPathFactory, config: pytest.Config
) -> tuple[Path, str]:
    """A new data folder and a database of ``db_url``'s backend holding no rows."""
    data_dir = tmp_path_factory.mktemp("restored")
    if db_url.startswith("sqlite"):
        return data_dir, f"sqlite:///{data_dir / 'fetalcns.db'}"
    return data_dir, new_database("postgres", tmp_path_factory, config)


@pytest.fixture
def fresh_target(
    db_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> tuple[Path, str]:
    return new_target(db_url, tmp_path_factory, request.config)


def studies(url: str) -> dict[int, int]:
    """Study id → number of images."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            if "studies" not in inspect(connection).get_table_names():
                return {}
            rows = connection.execute(
                select(Study.id, func.count(Image.id)).outerjoin(Image).group_by(Study.id)
            ).all()
    finally:
        engine.dispose()
    return {int(study): int(n) for study, n in rows}
