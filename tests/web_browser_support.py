"""A real server and Debian's Chromium for the browser tests (and docs/make_screenshots.py).

The server is uvicorn in a child process on a free 127.0.0.1 port, with its own
SQLite database, storage and secret key under a temp folder. Chromium is
/usr/bin/chromium driven by Playwright; nothing is downloaded.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "browser test password"
ARTIFACTS = REPO_ROOT / "test-artifacts"


@dataclass(frozen=True)
class LiveServer:
    url: str
    data_dir: Path
    log_path: Path

    def log_tail(self, n: int = 40) -> str:
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(lines[-n:])


# "8120-8129": take the servers' ports from this range (a machine shared by several test runs).
PORT_RANGE_ENV = "FETALCNS_TEST_PORTS"


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    wanted = os.environ.get(PORT_RANGE_ENV, "")
    if wanted:
        first, _, last = wanted.partition("-")
        for port in range(int(first), int(last or first) + 1):
            if _port_is_free(port):
                return port
        raise RuntimeError(f"no free port in {PORT_RANGE_ENV}={wanted}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(
    data_dir: Path, model_dir: Path, assistance_mode: str = "concurrent", database_url: str | None = None
) -> dict[str, str]:
    """The server's environment; its own SQLite database under ``data_dir`` unless ``database_url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FETALCNS_")}
    env.update(
        {
            "FETALCNS_DATA_DIR": str(data_dir),
            "FETALCNS_DATABASE_URL": database_url or f"sqlite:///{(data_dir / 'fetalcns.db').as_posix()}",
            "FETALCNS_STORAGE_DIR": str(data_dir / "storage"),
            "FETALCNS_MODEL_DIR": str(model_dir),
            "FETALCNS_SECRET_KEY": "browser-test-secret",
            "FETALCNS_ASSISTANCE_MODE": assistance_mode,
            "FETALCNS_INFERENCE_DEVICE": "cpu",
            "FETALCNS_INFERENCE_THREADS": "1",
            "FETALCNS_WORKER_POLL_S": "0.5",
        }
    )
    return env


def prepare_database(env: dict[str, str], users: dict[str, str]) -> None:
    """Migrate and create users (name -> role) with PASSWORD, through the app's own services."""
    from app.web.core.db import make_engine, make_session_factory
    from app.web.core.migrations import upgrade_database
    from app.web.services.users import create_user

    url = env["FETALCNS_DATABASE_URL"]
    upgrade_database(url)
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as db:
            for name, role in users.items():
                create_user(db, name, PASSWORD, role=role)
    finally:
        engine.dispose()


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the server exited at start:\n" + log_path.read_text(errors="replace")[-4000:])
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise RuntimeError("the server did not become healthy:\n" + log_path.read_text(errors="replace")[-4000:])


@contextmanager
def live_server(
    data_dir: Path,
    model_dir: Path,
    assistance_mode: str = "concurrent",
    users: dict[str, str] | None = None,
    database_url: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[LiveServer]:
    data_dir.mkdir(parents=True, exist_ok=True)
    env = server_env(data_dir, model_dir, assistance_mode, database_url)
    env.update(extra_env or {})
    prepare_database(env, users or {"rad": "radiologist", "admin": "admin"})
    with uvicorn_server(env, data_dir) as server:
        yield server


@contextmanager
def uvicorn_server(env: dict[str, str], data_dir: Path) -> Iterator[LiveServer]:
    """``fetalcns``'s app in a uvicorn child process with ``env``, on a migrated database."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = data_dir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.web.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, process, log_path, timeout_s=60)
            server = LiveServer(url, data_dir, log_path)
            try:
                yield server
            except BaseException:
                # pytest shows captured output of a failed test: the server's side of the story.
                print("---- server log (last lines) ----\n" + server.log_tail())
                raise
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def chromium_page(viewport: tuple[int, int] = (1440, 900)) -> Iterator[Any]:
    """A Playwright page in headless Debian Chromium; the caller skips when CHROMIUM is missing."""
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
            page = context.new_page()
            page.set_default_timeout(20_000)
            yield page
        finally:
            browser.close()


def synthetic_dicom_study(out: Path, diagnosis: str = "Anencephaly", seed: int = 11) -> list[Path]:
    """One synthetic patient's DICOM study (app.synth), as a radiologist would drag it in."""
    from app.synth import generate_dataset

    generate_dataset(
        out, n_patients=1, seed=seed, fmt="dicom", images_per_patient=(4, 4), classes=[diagnosis]
    )
    files = sorted((out / "dicom").rglob("*.dcm"))
    assert files, f"the synthetic generator wrote no DICOM under {out / 'dicom'}"
    return files


def sign_in(page: Any, base_url: str, username: str) -> None:
    page.goto(base_url + "/login")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base_url + "/")


DEMO_MODEL_DIR = REPO_ROOT / "models" / "fetal-cns-demo"


UNLABELLED_CONTROLS_JS = """() => Array.from(document.querySelectorAll('input, select, textarea, button'))
    .filter(el => el.type !== 'hidden' && !el.hidden && el.offsetParent !== null)
    .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                  && !el.getAttribute('aria-labelledby') && !(el.tagName === 'BUTTON' && el.innerText.trim()))
    .map(el => el.outerHTML.slice(0, 120))"""


def unlabelled_controls(page: Any) -> list[str]:
    """Visible form controls a screen reader could not name (should be none)."""
    return list(page.evaluate(UNLABELLED_CONTROLS_JS))
