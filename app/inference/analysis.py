"""One study's images → per-image predictions (or failures) and the patient verdict.

The single analysis path: ``fetalcns predict`` and the web worker both call
``analyse_study``. Images are scored in the engine's batches; when a batch raises, its
images are retried one by one, so that one image the model cannot take fails alone,
with a reason, and the verdict comes from the others.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from app.inference.aggregate import (
    FAILED,
    FLAGGED,
    LOSSY,
    NOT_ULTRASOUND,
    OOD,
    QUALITY,
    VIEW,
    Verdict,
    aggregate,
)
from app.inference.engine import ImagePrediction, InferenceEngine
from app.inference.prepare import PreparedImage
from app.ingest.types import IngestedImage
from app.modelcard import AGGREGATIONS, VerdictRule

log = logging.getLogger(__name__)


def failure_reason(exc: BaseException) -> str:
    """The words stored on an image that could not be analysed."""
    return f"this image could not be analysed: {exc}"


@dataclass(frozen=True)
class StudyAnalysis:
    """The outcome for one study, image positions as given to ``analyse_study``.

    ``predictions[i]`` is None exactly when ``errors`` holds a reason for image ``i``.
    ``verdict`` comes from the analysed, unflagged images under the card's ``VerdictRule``;
    its ``support`` holds image positions in the study, and its counts cover the whole study
    (failed images are excluded with reason "failed"). When no image could be analysed the
    verdict is indeterminate, with the first failure's reason.
    """

    predictions: tuple[ImagePrediction | None, ...]
    errors: Mapping[int, str]
    verdict: Verdict
    aggregation: str = field(repr=False)
    classes: tuple[str, ...] = field(repr=False)
    normal_class: str = field(repr=False)
    rule: VerdictRule = field(default_factory=VerdictRule, repr=False)
    groups: tuple[str | None, ...] | None = field(default=None, repr=False)

    @property
    def analysed(self) -> list[tuple[int, ImagePrediction]]:
        """(position, prediction) of every image that was analysed, in study order."""
        return [(i, p) for i, p in enumerate(self.predictions) if p is not None]

    @property
    def n_failed(self) -> int:
        return len(self.errors)

    def with_failures(self, reasons: Mapping[int, str]) -> StudyAnalysis:
        """The same analysis with more images failed (e.g. a heatmap that could not be stored).

        The verdict is recomputed from the images that are left.
        """
        if not reasons:
            return self
        predictions = [None if i in reasons else p for i, p in enumerate(self.predictions)]
        errors = {**self.errors, **{i: r for i, r in reasons.items() if self.predictions[i] is not None}}
        return _conclude(
            predictions, errors, self.aggregation, self.classes, self.normal_class, self.rule, self.groups
        )


def _score_chunk(
    engine: InferenceEngine, chunk: Sequence[PreparedImage], positions: Sequence[int], errors: dict[int, str]
) -> list[ImagePrediction | None]:
    # The log gets counts, positions and exception types only: an exception's message may
    # quote a file name, and file names may name the patient.
    try:
        return list(engine.predict_prepared(chunk))
    except Exception:
        log.warning("a batch of %d image(s) failed; retrying them one by one", len(chunk))
    results: list[ImagePrediction | None] = []
    for position, item in zip(positions, chunk, strict=True):
        try:
            results.append(engine.predict_prepared([item])[0])
        except Exception as exc:
            log.warning("image %d of the study could not be analysed (%s)", position, type(exc).__name__)
            errors[position] = failure_reason(exc)
            results.append(None)
    return results


def exclusion_key(prediction: ImagePrediction | None) -> str | None:
    """Why an image is left out of the verdict, as a reason key; None when it is usable.

    The order of ``ImagePrediction.exclusion_reason``: "not an ultrasound image" first (a CT
    slice or a photograph is also unfamiliar, and the plainer reason helps a reader more), then
    quality (a blank frame is usually also unfamiliar), then the view and OOD signals.
    """
    if prediction is None:
        return FAILED
    if prediction.not_ultrasound is not None:
        return NOT_ULTRASOUND
    if prediction.quality_issue is not None:
        return QUALITY
    if prediction.lossy_excluded is not None:
        return LOSSY
    if prediction.out_of_scope_view:
        return VIEW
    if prediction.ood:
        return OOD
    # Another engine flag (a newer OOD signal) still keeps the image out, under a generic reason.
    return FLAGGED if prediction.excluded else None


def _conclude(
    predictions: Sequence[ImagePrediction | None],
    errors: Mapping[int, str],
    aggregation: str,
    classes: tuple[str, ...],
    normal_class: str,
    rule: VerdictRule,
    groups: Sequence[str | None] | None = None,
) -> StudyAnalysis:
    # Failed images take part as NaN rows with reason "failed": aggregate never reads the rows of
    # left-out images, and so counts the whole study and numbers images by study position.
    nan_row = np.full(len(classes), np.nan)
    verdict = aggregate(
        [nan_row if p is None else p.probabilities for p in predictions],
        classes,
        normal_class,
        method=aggregation,
        reasons=[exclusion_key(p) for p in predictions],
        rule=rule,
        groups=groups,
    )
    if errors and len(errors) == len(predictions):
        first = errors[min(errors)]
        verdict = replace(verdict, reason=f"none of the {len(errors)} image(s) could be analysed; {first}")
    return StudyAnalysis(
        predictions=tuple(predictions),
        errors=dict(sorted(errors.items())),
        verdict=verdict,
        aggregation=aggregation,
        classes=classes,
        normal_class=normal_class,
        rule=rule,
        groups=tuple(groups) if groups is not None else None,
    )


def loop_key(sha256: str, frame: int | None) -> str | None:
    """The cine loop an image belongs to (its file's sha256); None for a still."""
    return sha256 if frame is not None else None


def loop_groups(images: Sequence[IngestedImage | None]) -> list[str | None]:
    return [loop_key(image.sha256, image.frame) if image is not None else None for image in images]


def frames_to_analyse(
    keys: Sequence[str | None], frames: Sequence[int | None], max_frames: int | None
) -> list[int]:
    """Positions the model analyses: every still, and of each loop (same key) at most
    ``max_frames`` frames spread evenly over its stored frames, first and last included
    (every frame when None). Study order is kept."""
    from app.ingest.display import sample_frame_indices

    loops: dict[str, list[int]] = {}
    for position, key in enumerate(keys):
        if key is not None:
            loops.setdefault(key, []).append(position)
    chosen: set[int] = set()
    for positions in loops.values():
        ordered = sorted(positions, key=lambda p: (frames[p] if frames[p] is not None else -1, p))
        picks = range(len(ordered)) if max_frames is None else sample_frame_indices(len(ordered), max_frames)
        chosen.update(ordered[i] for i in picks)
    return [p for p, key in enumerate(keys) if key is None or p in chosen]


def prepare_images(
    engine: InferenceEngine,
    images: Sequence[IngestedImage],
    positions: Sequence[int],
    errors: dict[int, str],
) -> list[PreparedImage | None]:
    """``engine.prepare`` of each image; one that raises is None, with its reason in ``errors``."""
    prepared: list[PreparedImage | None] = []
    for position, image in zip(positions, images, strict=True):
        try:
            prepared.append(engine.prepare(image))
        except Exception as exc:
            log.warning("image %d of the study could not be prepared (%s)", position, type(exc).__name__)
            errors[position] = failure_reason(exc)
            prepared.append(None)
    return prepared


def score_prepared(
    engine: InferenceEngine,
    prepared: Sequence[PreparedImage | None],
    positions: Sequence[int],
    errors: dict[int, str],
) -> list[ImagePrediction | None]:
    """Score prepared images (None: failed while preparing, reason already in ``errors``) in the
    engine's batches. A batch that raises is retried image by image; each image that still fails
    is None in the answer, with its reason added to ``errors`` under its position. Positions
    may come from several studies (the web worker batches across studies): they only key
    ``errors``."""
    todo = [(i, item) for i, item in enumerate(prepared) if item is not None]
    predictions: list[ImagePrediction | None] = [None] * len(prepared)
    for start in range(0, len(todo), engine.batch_size):
        chunk = todo[start : start + engine.batch_size]
        scored = _score_chunk(engine, [item for _, item in chunk], [positions[i] for i, _ in chunk], errors)
        for (index, _), prediction in zip(chunk, scored, strict=True):
            predictions[index] = prediction
    return predictions


def score_images(
    engine: InferenceEngine,
    images: Sequence[IngestedImage],
    positions: Sequence[int],
    errors: dict[int, str],
) -> list[ImagePrediction | None]:
    """Prepare and score ``images`` (at ``positions`` in their study) in the engine's batches.

    An image that cannot be prepared, and one that still fails when its failed batch is retried
    image by image, is None in the answer, with its reason added to ``errors`` under its
    position. Callers that hold a large study feed it in parts and join the parts with
    ``conclude_study``.
    """
    predictions: list[ImagePrediction | None] = []
    for start in range(0, len(images), engine.batch_size):
        chunk = images[start : start + engine.batch_size]
        chunk_positions = positions[start : start + engine.batch_size]
        prepared = prepare_images(engine, chunk, chunk_positions, errors)
        predictions.extend(score_prepared(engine, prepared, chunk_positions, errors))
    return predictions


def conclude_study(
    engine: InferenceEngine,
    predictions: Sequence[ImagePrediction | None],
    errors: Mapping[int, str],
    aggregation: str | None = None,
    groups: Sequence[str | None] | None = None,
) -> StudyAnalysis:
    """The verdict over a whole study's predictions (None where ``errors`` holds the reason).

    ``groups``: each image's cine loop (``loop_key``), None for stills; with the card's
    ``cine.loop_weight`` "one_image" (the default) a loop counts as one image of the verdict.
    """
    method = aggregation or engine.card.aggregation
    if method not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {method!r}; choose one of {', '.join(AGGREGATIONS)}")
    card = engine.card
    if card.cine_rule.loop_weight != "one_image":
        groups = None
    return _conclude(
        predictions, errors, method, engine.classes, card.normal_class, card.verdict_rule, groups
    )


def analyse_study(
    engine: InferenceEngine,
    images: Sequence[IngestedImage | None],
    aggregation: str | None = None,
    failures: Mapping[int, str] | None = None,
) -> StudyAnalysis:
    """Score a study's images with per-image fallback and aggregate them into a verdict.

    ``aggregation``: "mean" or "vote"; default the model card's rule. Never raises for a bad
    image; the image's reason is in ``errors``. ``failures``: positions already known not to
    be analysable (e.g. unreadable from storage; their ``images`` entry may be None) with
    their reasons, so that the verdict's counts cover the whole study.
    """
    method = aggregation or engine.card.aggregation
    if method not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {method!r}; choose one of {', '.join(AGGREGATIONS)}")
    errors: dict[int, str] = dict(failures or {})
    if any(image is None and i not in errors for i, image in enumerate(images)):
        raise ValueError("an image given as None needs its reason in 'failures'")
    todo = [(i, image) for i, image in enumerate(images) if i not in errors and image is not None]
    predictions: list[ImagePrediction | None] = [None] * len(images)
    scored = score_images(engine, [image for _, image in todo], [i for i, _ in todo], errors)
    for (position, _), prediction in zip(todo, scored, strict=True):
        predictions[position] = prediction
    return conclude_study(engine, predictions, errors, method, loop_groups(images))
