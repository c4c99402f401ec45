"""`fetalcns db | users | demo-data | serve`: the commands `make run` uses, run as a user would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from app.cli import main
from app.web.core.db import make_engine, make_session_factory
from app.web.core.models import Study, User
from app.web.core.security import verify_password
from app.web.settings import get_settings


@pytest.fixture
def env(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FETALCNS_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FETALCNS_MODEL_DIR", str(tiny_model_dir))
    monkeypatch.setenv("FETALCNS_INFERENCE_DEVICE", "cpu")
    monkeypatch.delenv("FETALCNS_DATABASE_URL", raising=False)
    monkeypatch.delenv("FETALCNS_ADMIN_PASSWORD", raising=False)
    get_settings.cache_clear()
    yield tmp_path / "var"
    get_settings.cache_clear()


def _users(var: Path) -> list[User]:
    engine = make_engine(f"sqlite:///{var / 'fetalcns.db'}")
    with make_session_factory(engine)() as db:
        users = list(db.query(User).order_by(User.username))
    engine.dispose()
    return users


def test_db_upgrade_and_bootstrap_admin_prints_a_generated_password_once(env: Path, capsys) -> None:
    assert main(["db", "upgrade"]) == 0
    assert main(["db", "upgrade"]) == 0  # idempotent, as `make run` repeats it
    assert main(["db", "current"]) == 0
    capsys.readouterr()
    assert main(["users", "bootstrap-admin"]) == 0
    first = capsys.readouterr().out
    password = first.split("password: ")[1].split()[0]
    assert main(["users", "bootstrap-admin"]) == 0
    second = capsys.readouterr().out
    assert "already exists" in second and password not in second
    (admin,) = _users(env)
    assert (
        admin.username == "admin" and admin.role == "admin" and verify_password(admin.password_hash, password)
    )
    assert password not in admin.password_hash


def test_bootstrap_admin_takes_the_password_from_the_environment(env: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("FETALCNS_ADMIN_PASSWORD", "from-the-environment")
    get_settings.cache_clear()
    main(["db", "upgrade"])
    assert main(["users", "bootstrap-admin"]) == 0
    assert "from-the-environment" not in capsys.readouterr().out
    assert verify_password(_users(env)[0].password_hash, "from-the-environment")


def test_users_create_reads_the_password_from_stdin(env: Path, monkeypatch, capsys) -> None:
    main(["db", "upgrade"])
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("s3cret-password\n"))
    assert main(["users", "create", "dr.who", "--role", "radiologist", "--password-stdin"]) == 0
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("short\n"))
    assert main(["users", "create", "dr.no", "--password-stdin"]) == 1
    assert "at least 8 characters" in capsys.readouterr().err
    (user,) = _users(env)
    assert user.username == "dr.who" and verify_password(user.password_hash, "s3cret-password")


@pytest.mark.slow
def test_demo_data_imports_and_analyses_synthetic_studies_once(env: Path, capsys) -> None:
    pytest.importorskip("app.synth")
    main(["db", "upgrade"])
    assert main(["demo-data", "--if-empty", "--patients", "2"]) == 0
    assert "imported 2 synthetic demo studies" in capsys.readouterr().out
    assert main(["demo-data", "--if-empty"]) == 0
    assert "already has 2 studies" in capsys.readouterr().out
    engine = make_engine(f"sqlite:///{env / 'fetalcns.db'}")
    with make_session_factory(engine)() as db:
        assert sorted(s.status for s in db.query(Study)) == ["done", "done"]
    engine.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_serve_starts_uvicorn_and_reports_health(env: Path) -> None:
    main(["db", "upgrade"])
    port = _free_port()
    cli = Path(sys.executable).with_name("fetalcns")
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "app.cli"]
    process = subprocess.Popen(
        [*command, "serve", "--port", str(port)],
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    body = response.read().decode()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        process.stdout.read().decode() if process.stdout else "no output"
                    ) from None
                time.sleep(0.3)
        assert '"status":"ok"' in body and '"database":"ok"' in body
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_demo_file_names_do_not_carry_the_true_class(tmp_path: Path) -> None:
    """Second-read mode hides the AI; a file name such as "anencephaly/SYN…/IM0001.dcm" in the
    image list would unblind the case all the same."""
    pytest.importorskip("app.synth")
    from app.synth import generate_dataset
    from app.web.services.demo import demo_file_name

    generate_dataset(tmp_path, n_patients=5, seed=7, fmt="dicom", images_per_patient=(1, 1))
    files = sorted((tmp_path / "dicom").rglob("*.dcm"))
    classes = {p.relative_to(tmp_path / "dicom").parts[0] for p in files}
    assert len(classes) >= 2  # the generator does lay the files out by class
    for path in files:
        name = demo_file_name(path).lower()
        assert not any(cls.lower() in name for cls in classes), name
        assert path.name.lower() in name and path.parent.name.lower() in name


def test_users_set_password_set_role_and_rename(env: Path, monkeypatch, capsys) -> None:
    main(["db", "upgrade"])
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("s3cret-password\n"))
    assert main(["users", "create", "Dr.Who", "--password-stdin"]) == 0
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("s3cret-password\n"))
    assert main(["users", "create", "dr.who", "--password-stdin"]) == 1  # names ignore case
    assert "taken" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("another long password\n"))
    assert main(["users", "set-password", "dr.who", "--password-stdin"]) == 0
    assert main(["users", "set-role", "DR.WHO", "admin"]) == 0
    assert main(["users", "rename", "dr.who", "dr.watson"]) == 0
    assert main(["users", "set-role", "nobody", "admin"]) == 1
    (user,) = _users(env)
    assert user.username == "dr.watson" and user.role == "admin"
    assert verify_password(user.password_hash, "another long password")


def test_worker_refuses_a_batch_of_no_studies_before_it_loads_anything(
    env: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FETALCNS_BROKER_URL", "redis://127.0.0.1:1/0")  # never reached
    get_settings.cache_clear()
    assert main(["worker", "--batch-studies", "0"]) == 1
    assert "--batch-studies must be at least 1" in capsys.readouterr().err
    assert not (env / "fetalcns.db").exists()  # refused before the database was opened
