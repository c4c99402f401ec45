"""No patient data in any log line, exceptions and SQL parameters included.

The formatter is checked on its own, then a real `fetalcns serve` (SQLite and PostgreSQL) is
made to fail on requests that carry a patient's name and ID, and its whole log is searched.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import pytest
from web_browser_support import PASSWORD, free_port, prepare_database
from web_support import new_database

from app.logsafe import WITHHELD, PrivateFormatter, redact_query, redacted_traceback
from tests.ingest_support import phantom

SECRET_NAME = "Zyxwv^Secretname"
SECRET_ID = "PID-SECRET-918273"


def _raise_chain() -> None:
    try:
        raise KeyError(f"patient {SECRET_ID}")
    except KeyError as exc:
        raise RuntimeError(f"could not store {SECRET_NAME}") from exc


def test_logged_exceptions_keep_type_and_place_but_not_the_message() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(PrivateFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test_logs_private")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            _raise_chain()
        except RuntimeError:
            # A plain formatter caches the full text on the record first, as another handler would.
            record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
            logging.Formatter().format(record)
            assert SECRET_NAME in (record.exc_text or "")
            handler.handle(record)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert SECRET_NAME not in text and SECRET_ID not in text
    assert "builtins.KeyError " + WITHHELD in text
    assert "builtins.RuntimeError " + WITHHELD in text
    assert text.index("KeyError") < text.index("RuntimeError")  # oldest first, as Python prints
    assert "in _raise_chain" in text


def test_redacted_traceback_of_an_exception_without_traceback() -> None:
    assert redacted_traceback(ValueError(SECRET_ID)) == f"builtins.ValueError {WITHHELD}"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/api/v1/studies", "/api/v1/studies"),
        ("/?q=Doe&label=normal", "/?q=…&label=…"),
        ("/x?flag", "/x?flag=…"),
    ],
)
def test_query_values_are_dropped(target: str, expected: str) -> None:
    assert redact_query(target) == expected


def _png() -> bytes:
    ok, data = cv2.imencode(".png", phantom(seed=3))
    assert ok
    return data.tobytes()


def _multipart(fields: dict[str, str], filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = "----fetalcns-test-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{filename}"\r\n'
        "Content-Type: image/png\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "log_format"),
    [("sqlite", "text"), pytest.param("postgres", "text", marks=pytest.mark.postgres), ("sqlite", "json")],
)
def test_server_log_has_no_patient_data_after_errors(
    backend: str,
    log_format: str,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
    tiny_model_dir: Path,
) -> None:
    url = new_database(backend, tmp_path_factory, request.config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FETALCNS_")}
    env |= {
        "FETALCNS_DATA_DIR": str(tmp_path),
        "FETALCNS_DATABASE_URL": url,
        "FETALCNS_MODEL_DIR": str(tiny_model_dir),
        "FETALCNS_SECRET_KEY": "log-test-secret",
        "FETALCNS_INFERENCE_THREADS": "1",
        "FETALCNS_LOG_FORMAT": log_format,
    }
    prepare_database(env, {"rad": "radiologist"})
    port = free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "-v", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.3)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        form = f"username=rad&password={PASSWORD.replace(' ', '+')}"
        connection.request(
            "POST", "/api/v1/auth/token", form, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        token = json.loads(connection.getresponse().read())["access_token"]
        auth = {"Authorization": f"Bearer {token}"}

        statuses = []
        # A NUL inside the name (PostgreSQL cannot store it) and an id no database integer
        # holds: before app.web.core.input_guard both failed inside the database layer with the
        # request's values at hand; now they are refused with a 422. Either way, nothing of the
        # patient may reach the log.
        body, content_type = _multipart(
            {"patient_name": SECRET_NAME + "\x00", "patient_id": SECRET_ID}, "scan.png", _png()
        )
        connection.request("POST", "/api/v1/studies", body, {**auth, "Content-Type": content_type})
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
        connection.request("GET", f"/api/v1/studies/{2**70}", headers=auth)
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
        connection.request("GET", f"/api/v1/studies?label={SECRET_NAME}", headers=auth)
        connection.getresponse().read()
        # The same keep-alive connection still answers after a 500.
        connection.request("GET", "/health")
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
    text = log_path.read_text(encoding="utf-8", errors="replace")
    assert 500 in statuses or all(400 <= s < 500 for s in statuses), statuses
    assert "label=…" in text  # the access log was written, with the query value dropped
    if log_format == "json":
        # Every log line is one JSON object. Not logged, so not JSON: the start-up lines that name
        # the database, storage and model (printed), and Python's own runpy warning of `-m`.
        lines = [line for line in text.splitlines() if line.strip()]
        printed = ("fetalcns ", "  ", "<frozen runpy>")
        assert all(line.startswith(("{", *printed)) for line in lines), lines
        records = [json.loads(line) for line in lines if line.startswith("{")]
        assert {"time", "level", "logger", "message"} <= set(records[0])
        access = [r for r in records if r.get("path", "").startswith("/api/v1/studies?")]
        assert access and access[0]["path"] == "/api/v1/studies?label=…" and access[0]["status"] == 200
    for secret in (SECRET_NAME, SECRET_ID, "Secretname", "SECRET-918273"):
        assert secret not in text, f"{secret!r} reached the server log"


def test_json_lines_keep_the_same_rules() -> None:
    from app.logsafe import PrivateJsonFormatter
    from app.web.core.logging_config import PrivateJsonAccessFormatter

    try:
        raise ValueError(f"duplicate key ({SECRET_NAME})")
    except ValueError:
        import sys as _sys

        record = logging.LogRecord("app.x", logging.ERROR, __file__, 1, "failed %d", (7,), _sys.exc_info())
    line = json.loads(PrivateJsonFormatter().format(record))
    assert line["message"] == "failed 7" and line["level"] == "ERROR" and line["logger"] == "app.x"
    assert "ValueError" in line["exception"] and SECRET_NAME not in json.dumps(line)
    access = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", f"/api/v1/studies?q={SECRET_NAME}", "1.1", 200), None,
    )  # fmt: skip
    fields = json.loads(PrivateJsonAccessFormatter().format(access))
    assert fields["path"] == "/api/v1/studies?q=…" and fields["status"] == 200
    assert SECRET_NAME not in json.dumps(fields)
