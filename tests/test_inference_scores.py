"""Softmax, energy and the blank-frame check, against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.inference.scores import blank_frame_issue, energy_score, softmax
from tests.ingest_support import phantom


@pytest.mark.parametrize("scale", [1.0, 50.0, 1000.0])
def test_softmax_and_energy_match_torch(scale: float) -> None:
    logits = np.random.default_rng(int(scale)).normal(size=(6, 5)) * scale
    reference = torch.from_numpy(logits)
    np.testing.assert_allclose(softmax(logits), torch.softmax(reference, dim=1).numpy(), atol=1e-12)
    np.testing.assert_allclose(energy_score(logits), -torch.logsumexp(reference, dim=1).numpy(), rtol=1e-12)


def test_energy_by_hand() -> None:
    assert energy_score(np.zeros(4)) == pytest.approx(-np.log(4))
    assert energy_score(np.array([[10.0, 10.0]]))[0] == pytest.approx(-(10 + np.log(2)))


def rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[:, :, None], 3, axis=2)


def test_blank_and_dark_frames_are_named() -> None:
    box = (0, 100, 0, 100)
    assert blank_frame_issue(rgb(np.zeros((100, 100), np.uint8)), box) == "blank or near-uniform frame"
    assert blank_frame_issue(rgb(np.full((100, 100), 180, np.uint8)), box) == "blank or near-uniform frame"
    sparse = np.zeros((100, 100), np.uint8)
    sparse[::20, ::20] = 255  # a few bright dots on black: enough spread, almost no signal
    sparse[1::20, ::20] = 255
    assert blank_frame_issue(rgb(sparse), box) == "almost entirely dark frame"
    assert blank_frame_issue(rgb(phantom(100, 100)), box) is None


def test_only_the_scan_area_counts() -> None:
    frame = np.zeros((200, 200), np.uint8)
    frame[:20] = np.random.default_rng(0).integers(0, 255, (20, 200))  # busy annotation strip
    assert blank_frame_issue(rgb(frame), (0, 200, 0, 200)) is None
    assert blank_frame_issue(rgb(frame), (40, 200, 0, 200)) == "blank or near-uniform frame"
