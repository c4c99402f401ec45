"""The deployment files (issue 13), checked without Docker (none runs here): compose.yaml is
valid and complete, every container's command is a real `fetalcns` command line, every
FETALCNS_* variable it sets is a setting; the Dockerfiles run the server or worker in exec form
from the lock, with migrations left to a one-shot job."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from app.cli import build_parser
from app.web.cli import sqlite_refusal
from app.web.settings import Settings

REPO = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((REPO / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
OURS = {name: service for name, service in SERVICES.items() if service.get("build") == "."}


def _fetalcns(argv: list[str]) -> object:
    """Parse a `fetalcns ...` command line with the real parser; its handler must exist."""
    assert argv[0] == "fetalcns", argv
    args = build_parser(argv[1]).parse_args(argv[1:])
    assert callable(getattr(args, "handler", None)), argv
    return args


def test_compose_runs_one_hospital_and_every_dependency_exists() -> None:
    assert {"postgres", "redis", "s3", "migrate", "web-1", "web-2", "worker-1", "worker-2"} <= set(SERVICES)
    for name, service in SERVICES.items():
        assert "image" in service or "build" in service, name
        for needed in service.get("depends_on", {}):
            assert needed in SERVICES, (name, needed)
    # Migrations run once, before the servers and workers, not in their start commands.
    assert OURS["migrate"]["command"] == ["fetalcns", "db", "upgrade"]
    for name in ("web-1", "web-2", "worker-1", "worker-2"):
        assert OURS[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert "upgrade" not in OURS[name]["command"]


def test_every_container_command_is_a_fetalcns_command_line() -> None:
    webs = [s for s in OURS.values() if s["command"][1] == "serve"]
    workers = [s for s in OURS.values() if s["command"][1] == "worker"]
    assert len(webs) == 2 and len(workers) == 2
    for service in OURS.values():
        _fetalcns(service["command"])
    for service in workers:
        args = _fetalcns(service["command"])
        assert args.concurrency >= 1 and args.device  # type: ignore[attr-defined]


def _settings_of(environment: dict[str, str]) -> Settings:
    """The settings a container gets, ${VAR:?...} substituted with a placeholder."""
    values = {
        key.removeprefix("FETALCNS_").lower(): re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", "placeholder", str(value))
        for key, value in environment.items()
    }
    return Settings(**values)


def test_the_environment_names_only_real_settings_and_suits_several_processes() -> None:
    for name, service in OURS.items():
        environment = service["environment"]
        unknown = {k for k in environment if k.removeprefix("FETALCNS_").lower() not in Settings.model_fields}
        assert not unknown, (name, unknown)
        settings = _settings_of(environment)
        assert settings.broker_url and settings.storage_backend == "s3" and settings.secret_key
        workers = _fetalcns(service["command"])
        assert sqlite_refusal(settings, getattr(workers, "workers", 1)) is None  # PostgreSQL


@pytest.mark.parametrize(("dockerfile", "command"), [("Dockerfile", "serve"), ("Dockerfile.gpu", "worker")])
def test_dockerfiles_are_multi_stage_from_the_lock_and_exec_their_command(
    dockerfile: str, command: str
) -> None:
    text = (REPO / dockerfile).read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 2
    assert "--require-hashes --no-deps -r" in text and "run.lock" in text
    (cmd,) = re.findall(r"^CMD (.+)$", text, re.MULTILINE)
    argv = json.loads(cmd)  # exec form: a JSON array, no shell between docker and the process
    assert argv[1] == command and "upgrade" not in argv
    _fetalcns(argv)
    if dockerfile == "Dockerfile.gpu":
        assert re.search(r"^FROM nvidia/cuda:\S+-cudnn-runtime-", text, re.MULTILINE)
