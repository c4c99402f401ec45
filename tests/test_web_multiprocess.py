"""Several web processes on one PostgreSQL database (issue 13): `fetalcns serve --workers N`, and
sessions, CSRF tokens and the secret key valid in every process; SQLite refused for N > 1.

Real servers, started as `fetalcns serve` processes: one with ``--workers 2`` and one plain, all
sharing the database and DATA_DIR (the generated secret key) and nothing else. A browser signs
in on one, posts a form with a token from another, and signs out on a third path.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from web_support import PASSWORD, new_database, reset_database

REPO_ROOT = Path(__file__).resolve().parent.parent
_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(data_dir: Path, db_url: str | None, model_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FETALCNS_")}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        FETALCNS_DATA_DIR=str(data_dir),
        FETALCNS_MODEL_DIR=str(model_dir),
        FETALCNS_INFERENCE_DEVICE="cpu",
        FETALCNS_INFERENCE_THREADS="1",
        FETALCNS_SWEEP_ON_START="false",
    )
    if db_url:
        env["FETALCNS_DATABASE_URL"] = db_url
    return env


def _serve(env: dict[str, str], port: int, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), *extra],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_healthy(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(process.stderr.read().decode()[-3000:] if process.stderr else "no output")
        time.sleep(0.3)


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _csrf(html: str) -> str:
    match = _CSRF_META.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def test_several_workers_on_sqlite_are_refused_with_a_clear_message(
    tmp_path: Path, demo_model_dir: Path
) -> None:
    port = _free_port()
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--workers", "2", "--port", str(port)],
        env=_env(tmp_path / "var", None, demo_model_dir),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--workers 2 needs PostgreSQL" in done.stderr and "--workers 1" in done.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)


@pytest.fixture
def servers(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, demo_model_dir: Path
) -> Iterator[tuple[int, int, int]]:
    """(port of `serve --workers 2`, its pid, port of a second plain `serve`) on one database."""
    db_url = new_database("postgres", tmp_path_factory, request.config)
    reset_database(db_url)
    env = _env(tmp_path_factory.mktemp("shared") / "var", db_url, demo_model_dir)
    many_port, one_port = _free_port(), _free_port()
    many = _serve(env, many_port, "--workers", "2")
    one = _serve(env, one_port)
    try:
        _wait_healthy(many, many_port)
        _wait_healthy(one, one_port)
        yield many_port, many.pid, one_port
    finally:
        for process in (many, one):
            process.terminate()
            process.wait(60)


@pytest.mark.postgres
def test_sessions_and_csrf_tokens_are_valid_across_processes(servers: tuple[int, int, int]) -> None:
    many_port, many_pid, one_port = servers
    many, one = f"http://127.0.0.1:{many_port}", f"http://127.0.0.1:{one_port}"
    assert len(_children(many_pid)) >= 2  # uvicorn's supervisor and its two server processes

    with httpx.Client(follow_redirects=False, timeout=30) as browser:
        # The login form of one process, submitted to the others.
        token = _csrf(browser.get(f"{one}/login").text)
        signed_in = browser.post(
            f"{many}/login", data={"username": "rad", "password": PASSWORD, "csrf_token": token, "next": "/"}
        )
        assert signed_in.status_code == 303, signed_in.text[:500]
        # The session is a database row: every request to either server (and so to both
        # processes behind --workers 2) sees it.
        for base in (many, one) * 5:
            page = browser.get(f"{base}/")
            assert page.status_code == 200 and "/logout" in page.text
        # A token from one process's page is accepted by the others (one shared secret key).
        token = _csrf(browser.get(f"{many}/").text)
        signed_out = browser.post(f"{one}/logout", data={"csrf_token": token})
        assert signed_out.status_code == 303
        # Signed out everywhere at once.
        for base in (many, one) * 3:
            assert browser.get(f"{base}/").status_code == 303
