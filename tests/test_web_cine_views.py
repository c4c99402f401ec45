"""The case page's entries: each still alone, each cine loop once with its frames in order,
its most suspicious frame, the words when frames were dropped, nothing of the AI when withheld."""

from __future__ import annotations

import pytest

from app.web.core.templating import human_label
from app.web.pages.views import frames_text, image_groups, image_item
from app.web.schemas import ImageOut

CLASSES = ("Anencephaly", "normal")


def _image(image_id: int, frame: int | None, p_normal: float | None, loop: str | None = None) -> ImageOut:
    return ImageOut(
        id=image_id,
        position=image_id,
        filename="cine.dcm" if loop else f"still{image_id}.dcm",
        frame=frame,
        loop=loop,
        n_frames=300 if loop else None,
        frames_stored=120 if loop else None,
        frame_time_ms=33.0 if loop else None,
        width=64,
        height=48,
        image_url=f"/api/v1/images/{image_id}/original",
        thumbnail_url=f"/api/v1/images/{image_id}/thumbnail",
        label=None if p_normal is None else ("normal" if p_normal > 0.5 else "Anencephaly"),
        probabilities=None if p_normal is None else {"Anencephaly": 1 - p_normal, "normal": p_normal},
        ood=None,
        ood_score=None,
        quality_issue=None,
        used_in_verdict=None,
        heatmap_url=None,
        error=None,
    )


def test_loops_are_one_entry_with_frames_in_order_and_their_most_suspicious_frame() -> None:
    images = [
        _image(1, None, 0.9),
        _image(12, 2, 0.2, loop="L"),  # support order puts the loop's best frame first
        _image(2, None, 0.8),
        _image(10, 0, 0.7, loop="L"),
        _image(11, 1, None, loop="L"),  # stored for playback, not analysed
    ]
    items = [image_item(i, CLASSES, human_label) for i in images]
    groups = image_groups(images, items, "normal", max_cine_frames=120)
    assert [g["kind"] for g in groups] == ["still", "loop", "still"]
    loop = groups[1]
    assert [f["frame"] for f in loop["frames"]] == [0, 1, 2]
    scores = [f["p_anomaly"] for f in loop["frames"]]
    assert scores[1] is None and scores[0] == pytest.approx(0.3) and scores[2] == pytest.approx(0.8)
    assert loop["most_suspicious"] == 2 and loop["n_analysed"] == 2
    assert loop["frames_text"] == "frames 1–120 of 300 stored (the server keeps at most 120 frames per loop)"
    assert loop["frame_time_ms"] == 33.0 and loop["thumb_url"].endswith("/10/thumbnail")


def test_withheld_ai_leaves_no_scores_and_no_suspicious_frame() -> None:
    images = [_image(10, 0, None, loop="L"), _image(11, 1, None, loop="L")]
    items = [image_item(i, CLASSES, human_label) for i in images]
    (loop,) = image_groups(images, items, "normal")
    assert loop["most_suspicious"] is None and loop["n_analysed"] == 0 and not loop["excluded"]
    assert all(f["p_anomaly"] is None for f in loop["frames"])


def test_frames_text() -> None:
    assert frames_text(12, 12, 120) == "12 frames"
    assert frames_text(None, 5, None) == "5 frames"
    assert frames_text(300, 120, None) == "frames 1–120 of 300 stored"
