"""Fixtures shared by every test area. Area-specific fixtures live beside their tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# .ci/run sets this: there every prerequisite (Chromium, dcmtk, PostgreSQL, test DICOMs) is
# installed, so a test that skips for a missing one would pass without having run.
REQUIRE_ALL_ENV = "FETALCNS_TESTS_REQUIRE_ALL"
# Skips that describe the machine, not a missing install.
ALLOWED_SKIPS = ("this machine has a GPU",)


def _skip_reason(report: Any) -> str:
    longrepr = report.longrepr
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def _fail_missing_prerequisite(report: Any) -> None:
    if os.environ.get(REQUIRE_ALL_ENV) != "1" or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if any(allowed in reason for allowed in ALLOWED_SKIPS):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped where every prerequisite must be installed ({REQUIRE_ALL_ENV}=1): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    _fail_missing_prerequisite(outcome.get_result())  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    _fail_missing_prerequisite(outcome.get_result())  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


DEMO_MODEL_DIR = REPO_ROOT / "models" / "fetal-cns-demo"


@pytest.fixture(scope="session")
def served_model_dir(request: pytest.FixtureRequest) -> Path:
    """The bundled demo model when it has been trained, else the tiny untrained test model
    (the browser tests serve whichever there is)."""
    if (DEMO_MODEL_DIR / "model.json").is_file():
        return DEMO_MODEL_DIR
    return request.getfixturevalue("tiny_model_dir")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained, very narrow ResNet-34 exported exactly like a real model.

    Built once per test session so that engine, pipeline and web tests exercise
    the real export path without waiting for a trained model.
    """
    from app.training.export import export_untrained_demo

    out = tmp_path_factory.mktemp("tiny-model")
    export_untrained_demo(out, width=0.125, seed=0)
    return out


@pytest.fixture(scope="session")
def demo_model_dir() -> Path:
    if not (DEMO_MODEL_DIR / "model.json").is_file():
        pytest.skip("the bundled demo model models/fetal-cns-demo is missing (train it: see docs/model.md)")
    return DEMO_MODEL_DIR
