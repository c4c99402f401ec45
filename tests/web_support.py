"""Helpers and fixtures for the web back-end tests (tests/test_web_api_*, _db_*, _cli_*).

Fixtures, imported by the test modules:
- ``db_url``: a migrated database, parametrized over SQLite and PostgreSQL
  (a fresh randomly named PostgreSQL database per module, dropped at the end).
- ``web``: a factory ``web(**settings) -> WebHarness`` running create_app with
  the tiny untrained model against ``db_url``, all tables emptied first.
"""

from __future__ import annotations

import io
import os
import secrets
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from ingest_support import dicom_bytes as encode_dicom
from ingest_support import make_us_dataset
from pydicom.uid import generate_uid
from sqlalchemy import Engine, delete, func, select, update

from app.web.app import create_app
from app.web.core.db import Base, make_engine, make_session_factory
from app.web.core.migrations import upgrade_database
from app.web.core.models import User
from app.web.services.users import create_user
from app.web.settings import Settings

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
PASSWORD = "correct-horse-battery"
# Name prefix of the test databases created on the PostgreSQL server (parallel checkouts set their own).
PG_DB_PREFIX = os.environ.get("FETALCNS_TEST_PG_PREFIX", "fetalcns_test_")


# ---- images ------------------------------------------------------------------------------
def ultrasound_pixels(seed: int, height: int = 240, width: int = 320) -> np.ndarray:
    """A grey speckle fan on black, like a B-mode frame (uint8 H×W)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    angle = np.arctan2(xx - width / 2, yy + 10)
    radius = np.hypot(xx - width / 2, yy + 10)
    fan = (np.abs(angle) < 0.7) & (radius < height * 0.95)
    image = (rng.gamma(2.0, 40.0, size=(height, width)) * fan).clip(0, 255)
    return image.astype(np.uint8)


def dicom_bytes(
    pixels: np.ndarray,
    patient_id: str | None = "PID-4711",
    patient_name: str | None = "Testpatient^Erika",
    study_uid: str | None = None,
) -> bytes:
    """A minimal ultrasound DICOM file (uint8 MONOCHROME2 or RGB); None leaves a patient field out."""
    ds = make_us_dataset(
        pixels,
        patient_id=patient_id or "",
        patient_name=patient_name or "",
        study_uid=study_uid,
        Manufacturer="fetalcns-tests",
    )
    if patient_id is None:
        del ds.PatientID
    if patient_name is None:
        del ds.PatientName
    return encode_dicom(ds)


def png_bytes(pixels: np.ndarray) -> bytes:
    import cv2

    ok, encoded = cv2.imencode(".png", pixels)
    assert ok
    return encoded.tobytes()


def study_files(
    n: int = 3, patient_id: str | None = "PID-4711", name: str | None = "Testpatient^Erika", seed: int = 0
):
    """``n`` DICOM files of one study, as (filename, bytes) pairs for a multipart upload."""
    uid = generate_uid()
    return [
        (f"img{i}.dcm", dicom_bytes(ultrasound_pixels(seed + i), patient_id, name, study_uid=uid))
        for i in range(n)
    ]


def zip_bytes(files: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            archive.writestr(name, data)
    return buffer.getvalue()


def multipart(files: list[tuple[str, bytes]], content_type: str = "application/octet-stream") -> list[Any]:
    return [("files", (name, data, content_type)) for name, data in files]


# ---- databases ---------------------------------------------------------------------------
def _postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN):
            return True
    except Exception:
        return False


def new_database(backend: str, tmp_path_factory: pytest.TempPathFactory, config: pytest.Config) -> str:
    """A fresh database migrated to the latest revision; PostgreSQL ones get a random name and
    are dropped when the test session ends."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.db'}"
        upgrade_database(url)
        return url
    if not _postgres_available():
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    import psycopg

    name = f"{PG_DB_PREFIX}{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    config.add_cleanup(drop)
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    upgrade_database(url)
    return url


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
# One shared database per backend for the whole session (each test empties it first).
_SHARED: dict[str, str] = {}


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The session's migrated database for this backend (SQLite, then PostgreSQL)."""
    if request.param not in _SHARED:
        _SHARED[request.param] = new_database(request.param, tmp_path_factory, request.config)
    return _SHARED[request.param]


@pytest.fixture(params=BACKENDS)
def fresh_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database of its own, for tests that migrate up and down."""
    return new_database(request.param, tmp_path_factory, request.config)


def wipe(engine: Engine) -> None:
    """Empty every table but users (hashing passwords is slow); re-enable the test users."""
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name != "users":
                connection.execute(delete(table))
        connection.execute(
            update(User).values(active=True, role="radiologist").where(User.username != "admin")
        )
        connection.execute(delete(User).where(User.username.not_in(TEST_USERS)))


TEST_USERS = ("admin", "rad", "rad2")
# Bearer tokens by (database, username) within one test: logging in costs an argon2 verification.
_TOKENS: dict[tuple[str, str], str] = {}


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            t.name: int(connection.execute(select(func.count()).select_from(t)).scalar_one())
            for t in Base.metadata.sorted_tables
        }


def reset_database(db_url: str) -> None:
    """Empty the tables (wipe) and make sure the test users exist, with PASSWORD."""
    engine = make_engine(db_url)
    try:
        wipe(engine)
        # The wipe deleted every API token row, so the tokens cached by earlier tests are dead.
        for key in [key for key in _TOKENS if key[0] == db_url]:
            del _TOKENS[key]
        with make_session_factory(engine)() as db:
            existing = set(db.scalars(select(User.username)))
            for username in TEST_USERS:
                if username not in existing:
                    create_user(
                        db, username, PASSWORD, role="admin" if username == "admin" else "radiologist"
                    )
    finally:
        engine.dispose()


# ---- the app -----------------------------------------------------------------------------
@dataclass
class WebHarness:
    client: TestClient
    settings: Settings
    app: Any
    db_url: str

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    def auth(self, username: str = "rad") -> dict[str, str]:
        """Bearer header for a user created by the fixture ("admin", "rad", "rad2")."""
        key = (self.db_url, username)
        if key not in _TOKENS:
            response = self.client.post(
                "/api/v1/auth/token", data={"username": username, "password": PASSWORD}
            )
            assert response.status_code == 200, response.text
            _TOKENS[key] = response.json()["access_token"]
        return {"Authorization": f"Bearer {_TOKENS[key]}"}

    def token(self, username: str) -> str:
        return self.auth(username)["Authorization"].removeprefix("Bearer ")

    def upload(self, files: list[tuple[str, bytes]], user: str = "rad", **form: str) -> Any:
        return self.client.post("/api/v1/studies", files=multipart(files), data=form, headers=self.auth(user))

    def wait_for(self, study_id: int, user: str = "rad", timeout: float = 60.0) -> dict[str, Any]:
        """Poll the study until its analysis is done or failed."""
        deadline = time.monotonic() + timeout
        while True:
            body = self.client.get(f"/api/v1/studies/{study_id}", headers=self.auth(user)).json()
            if body["status"] in ("done", "failed") or time.monotonic() > deadline:
                return body
            time.sleep(0.1)

    def stored_keys(self) -> set[str]:
        return self.runtime.store.all_keys()

    def counts(self) -> dict[str, int]:
        return row_counts(self.runtime.db_engine)


@pytest.fixture
def web(db_url: str, tiny_model_dir: Path, tmp_path: Path) -> Iterator[Callable[..., WebHarness]]:
    """``web(**settings_overrides)`` → a running app (lifespan started) with users admin, rad, rad2."""
    started: list[TestClient] = []
    reset_database(db_url)

    def build(**overrides: Any) -> WebHarness:
        values: dict[str, Any] = {
            "data_dir": tmp_path / f"var{len(started)}",
            "database_url": db_url,
            "model_dir": tiny_model_dir,
            "secret_key": "test-secret",
            "inference_device": "cpu",
            "inference_threads": 1,
            "worker_poll_s": 0.2,
        }
        values.update(overrides)
        settings = Settings(**values)
        app = create_app(settings)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        started.append(client)
        return WebHarness(client, settings, app, db_url)

    yield build
    for client in started:
        client.__exit__(None, None, None)
