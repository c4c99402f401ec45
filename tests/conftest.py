"""Fixtures shared by every test area. Area-specific fixtures live beside their tests."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


DEMO_MODEL_DIR = REPO_ROOT / "models" / "fetal-cns-demo"


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
