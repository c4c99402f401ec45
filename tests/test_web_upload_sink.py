"""The upload's storing sink: encoding in threads stores exactly what encoding in line does, keeps
memory to a few frames, and reports a failure only after every frame has ended."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from app.ingest.types import IngestedImage
from app.web.core.storage import ContentStore
from app.web.services.uploads import _StoringSink


def _frames(n: int) -> list[IngestedImage]:
    rng = np.random.default_rng(9)
    frames = []
    for i in range(n):
        grey = rng.integers(0, 256, (60 + i, 80), dtype=np.uint8)
        pixels = (
            np.repeat(grey[:, :, None], 3, axis=2) if i % 2 else rng.integers(0, 256, (50, 70, 3), np.uint8)
        )
        frames.append(IngestedImage(f"f{i}.dcm", i, pixels, None, f"{i:064x}", {}))
    return frames


def _sink_run(root: Path, threads: int, frames: list[IngestedImage]) -> _StoringSink:
    sink = _StoringSink(ContentStore(root), threads=threads)
    for frame in frames:
        kept = sink(frame)
        assert kept.pixels_dropped and kept.height == frame.height
    sink.finish()
    return sink


def test_threads_store_what_one_thread_stores(tmp_path: Path) -> None:
    frames = _frames(9)
    alone = _sink_run(tmp_path / "one", 1, frames)
    pooled = _sink_run(tmp_path / "four", 4, frames)
    assert pooled.keys == alone.keys and pooled.created == alone.created
    assert len(alone.keys) == 9 and all(
        t.endswith(".jpg") and d.endswith(".png") for d, t in alone.keys.values()
    )
    # The display PNG gives back the very pixels (lossless), grey or colour.
    store = ContentStore(tmp_path / "four")
    for frame in frames:
        display, _ = pooled.keys[(frame.sha256, frame.frame)]
        data = np.frombuffer(store.read_bytes(display), np.uint8)
        back = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(back, frame.pixels)


class _FailingStore(ContentStore):
    def __init__(self, root: Path, fail_on: int) -> None:
        super().__init__(root)
        self.calls = 0
        self.fail_on = fail_on

    def put_bytes(self, data: bytes, suffix: str) -> tuple[str, bool]:
        self.calls += 1
        if self.calls == self.fail_on:
            raise OSError("disk full")
        return super().put_bytes(data, suffix)


def test_a_failed_frame_is_raised_after_every_frame_has_ended(tmp_path: Path) -> None:
    store = _FailingStore(tmp_path, fail_on=3)
    sink = _StoringSink(store, threads=2)
    with pytest.raises(OSError, match="disk full"):
        for frame in _frames(6):
            sink(frame)
        sink.finish()
    sink.finish()  # idempotent: nothing left running that could write after the caller cleans up
    written: set[Any] = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    assert sink.created <= written
