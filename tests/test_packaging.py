"""The package outside its source tree: version, resource folders and the wheel's data files.

An installed fetalcns (no checkout anywhere) must still find its migrations, templates, static
assets and demo model, migrate a database, and use the same data folder whatever the current
folder is.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from app.cli import package_version
from app.paths import RESOURCE_DIRS

REPO_ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _shipped_files() -> set[str]:
    """Every file pyproject's data-files put in the wheel, as repo-relative paths."""
    shipped: set[str] = set()
    for destination, patterns in PYPROJECT["tool"]["setuptools"]["data-files"].items():
        for pattern in patterns:
            matches = sorted(REPO_ROOT.glob(pattern))
            assert matches, f"data-files pattern {pattern!r} matches nothing"
            for match in matches:
                relative = match.relative_to(REPO_ROOT)
                # The wheel keeps each file's folder below share/fetalcns.
                assert destination == "share/fetalcns/" + relative.parent.as_posix(), (pattern, destination)
                shipped.add(relative.as_posix())
    return shipped


def test_every_resource_file_is_in_the_wheel() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", *RESOURCE_DIRS], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked, "git ls-files found no resource files"
    assert set(tracked) == _shipped_files()


def test_one_version_string_from_the_metadata() -> None:
    import app

    assert package_version() == PYPROJECT["project"]["version"] == app.__version__
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"fetalcns {PYPROJECT['project']['version']}"


@pytest.mark.slow
def test_installed_wheel_migrates_and_serves_from_any_folder(tmp_path: Path) -> None:
    home = tmp_path / "home"
    # No PYTHONPATH: with a checkout on it, pip would take the checkout's metadata for an
    # installed fetalcns and skip the install.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FETALCNS_", "XDG_", "PYTHON"))}
    env["HOME"] = str(home)
    wheel_dir = tmp_path / "wheel"
    build = ["wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir), str(REPO_ROOT)]
    subprocess.run(
        [sys.executable, "-m", "pip", *build],
        check=True,
        capture_output=True,
        env=env,
    )
    (wheel,) = wheel_dir.glob("fetalcns-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = ["--python", str(python), "install", "--quiet", "--no-deps", "--no-index", str(wheel)]
    subprocess.run(
        [sys.executable, "-m", "pip", *install],
        check=True,
        capture_output=True,
        env=env,
    )
    # The dependencies come from the test venv. A path line in a .pth adds that folder only;
    # the .pth files inside it (this checkout's editable install) are not run, so `app` is
    # imported from the wheel.
    site = next((venv / "lib").glob("python3.*/site-packages"))
    deps = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "fastapi").is_dir())
    (site / "test_deps.pth").write_text(f"{deps}\n", encoding="utf-8")

    somewhere, elsewhere = tmp_path / "somewhere", tmp_path / "elsewhere"
    somewhere.mkdir()
    elsewhere.mkdir()

    def fetalcns(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(venv / "bin" / "fetalcns"), *args], cwd=cwd, env=env, capture_output=True, text=True
        )

    version = fetalcns("--version", cwd=somewhere)
    assert version.stdout.strip() == f"fetalcns {PYPROJECT['project']['version']}", version.stderr
    upgrade = fetalcns("db", "upgrade", cwd=somewhere)
    assert upgrade.returncode == 0, upgrade.stderr
    database = home / ".local" / "share" / "fetalcns" / "fetalcns.db"
    assert database.is_file()
    assert str(database) in upgrade.stderr  # it says which database it migrated
    current = fetalcns("db", "current", cwd=elsewhere)  # the same database from another folder
    assert current.returncode == 0, current.stdout + current.stderr

    probe = f"""
import sys
from pathlib import Path
import app
assert Path(app.__file__).is_relative_to({str(venv)!r}), app.__file__
from fastapi.testclient import TestClient
from app.web.app import create_app
with TestClient(create_app(load_model=True)) as client:
    health = client.get("/health").json()
    assert health["status"] == "ok", health
    assert client.get("/login").status_code == 200
    assert client.get("/static/vendor/swagger-ui/swagger-ui.css").status_code == 200
    assert client.get("/docs").status_code == 200
assert "torch" not in sys.modules
from app.web.services.password_policy import common_passwords  # package data, not a resource folder
assert len(common_passwords()) > 1000
print(health["model"]["name"])
"""
    served = subprocess.run(
        [str(python), "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
    )
    assert served.returncode == 0, served.stderr[-3000:]
    assert served.stdout.strip() == "fetal-cns-demo"
