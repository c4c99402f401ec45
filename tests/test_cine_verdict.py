"""Cine loops in the verdict: a loop counts as one image (the mean of its usable frames), and the
card chooses which stored frames are analysed. Checked against numpy by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.inference.aggregate import OOD, QUALITY, aggregate
from app.inference.analysis import frames_to_analyse, loop_key
from app.modelcard import DEFAULT_MAX_ANALYSED_FRAMES, VerdictRule, load_model_card

CLASSES = ("Anencephaly", "normal")
UNGATED = VerdictRule(min_usable_images=1, max_excluded_fraction=1.0)


def test_a_long_loop_does_not_outvote_the_stills() -> None:
    stills = [[0.2, 0.8], [0.3, 0.7]]
    frames = [[0.9, 0.1]] * 60
    probabilities = stills + frames
    groups = [None, None] + ["loop"] * 60
    per_loop = aggregate(probabilities, CLASSES, "normal", groups=groups, rule=UNGATED)
    per_frame = aggregate(probabilities, CLASSES, "normal", rule=UNGATED)
    expected = np.mean([stills[0], stills[1], np.mean(frames, axis=0)], axis=0)
    assert [per_loop.probabilities[c] for c in CLASSES] == pytest.approx(expected.tolist())
    assert per_loop.label == "normal" and per_frame.label == "Anencephaly"
    assert (per_loop.n_used, per_loop.n_total) == (3, 3)
    # Support is still frame positions: both stills and every usable frame of the loop.
    assert sorted(per_loop.support) == list(range(62))
    assert per_loop.support[:2] == [0, 1]  # the stills support "normal" most, the first more


def test_a_loop_is_left_out_when_most_of_its_frames_are() -> None:
    probabilities = [[0.6, 0.4], [0.5, 0.5], [np.nan, np.nan], [0.1, 0.9], [np.nan, np.nan], [0.2, 0.8]]
    reasons = [None, None, OOD, None, QUALITY, QUALITY]
    groups = [None, None, "a", "a", "b", "b"]
    verdict = aggregate(probabilities, CLASSES, "normal", reasons=reasons, groups=groups, rule=UNGATED)
    # Loop "a" keeps its one usable frame; loop "b" is all quality-flagged: left out as one image.
    assert (verdict.n_used, verdict.n_excluded, verdict.n_total) == (3, 1, 4)
    assert verdict.excluded_by_reason == {QUALITY: 1}
    expected = np.mean([[0.6, 0.4], [0.5, 0.5], [0.1, 0.9]], axis=0)
    assert verdict.probabilities["normal"] == pytest.approx(expected[1])
    assert 2 not in verdict.support and 4 not in verdict.support and 5 not in verdict.support
    # Under the default rule (at most half left out), 3 flagged frames of 4 leave the loop out.
    mostly_flagged = aggregate(
        [[0.3, 0.7]] * 6,
        CLASSES,
        "normal",
        reasons=[None, None, OOD, OOD, OOD, None],
        groups=[None, None, "c", "c", "c", "c"],
        rule=VerdictRule(min_usable_images=1),
    )
    assert (mostly_flagged.n_used, mostly_flagged.n_total) == (2, 3)
    assert mostly_flagged.excluded_by_reason == {OOD: 1} and sorted(mostly_flagged.support) == [0, 1]


def test_the_gate_counts_a_loop_as_one_image() -> None:
    # Two loops of many frames and nothing else: two images, enough for the default rule's 2.
    probabilities = [[0.7, 0.3]] * 10 + [[0.6, 0.4]] * 10
    groups = ["x"] * 10 + ["y"] * 10
    verdict = aggregate(probabilities, CLASSES, "normal", groups=groups, rule=VerdictRule())
    assert not verdict.indeterminate and verdict.n_total == 2
    alone = aggregate(probabilities[:10], CLASSES, "normal", groups=groups[:10], rule=VerdictRule())
    assert alone.indeterminate and alone.n_total == 1


def test_stills_only_is_unchanged_by_groups() -> None:
    probabilities = [[0.3, 0.7], [0.8, 0.2], [0.4, 0.6]]
    assert aggregate(probabilities, CLASSES, "normal", groups=[None] * 3) == aggregate(
        probabilities, CLASSES, "normal"
    )


def test_frames_to_analyse_spreads_the_card_budget_over_each_loop() -> None:
    keys = [None, "a", "a", "a", "a", "a", "a", None, "b", "b"]
    frames = [None, 5, 0, 1, 2, 3, 4, None, 0, 1]
    chosen = frames_to_analyse(keys, frames, 3)
    # Stills always; loop "a" by frame order: frames 0, 2 (or 3) and 5; loop "b" both frames.
    assert 0 in chosen and 7 in chosen and {8, 9} <= set(chosen)
    loop_a = sorted(frames[p] for p in chosen if keys[p] == "a")
    assert loop_a[0] == 0 and loop_a[-1] == 5 and len(loop_a) == 3
    assert chosen == sorted(chosen)  # study order kept
    assert frames_to_analyse(keys, frames, None) == list(range(10))
    assert loop_key("abc", None) is None and loop_key("abc", 0) == "abc"


def test_the_card_cine_block_and_its_defaults(tmp_path: Path, demo_model_dir: Path) -> None:
    card = load_model_card(demo_model_dir)
    assert card.cine_rule.max_analysed_frames == DEFAULT_MAX_ANALYSED_FRAMES
    assert card.cine_rule.loop_weight == "one_image"
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(demo_model_dir, copy)
    raw = json.loads((copy / "model.json").read_text())
    raw["cine"] = {"max_analysed_frames": 4, "loop_weight": "per_frame"}
    (copy / "model.json").write_text(json.dumps(raw))
    rule = load_model_card(copy).cine_rule
    assert (rule.max_analysed_frames, rule.loop_weight) == (4, "per_frame")
