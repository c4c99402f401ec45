"""Helpers for the training tests: a tiny synthetic data set, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.synth import generate_dataset


@pytest.fixture(scope="session")
def tiny_synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 synthetic patients (2 per class), 2 images each: enough to exercise every code path."""
    out = tmp_path_factory.mktemp("tiny-synth")
    generate_dataset(out, n_patients=10, seed=7, images_per_patient=(2, 2))
    return out
