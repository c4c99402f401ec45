"""Bytes on disk → patient verdicts: the service-friendly entry point (no torch).

``analyse_paths`` ingests files and runs ``app.inference.analysis.analyse_study`` (the one
analysis path, shared with the web worker) on every study. The returned
``PredictionReport`` holds everything a caller stores: per image the original pixels,
probabilities, label, Grad-CAM, flags and metadata, or why it could not be analysed; per
patient the verdict. ``to_json`` gives the ``fetalcns predict`` document.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.inference.aggregate import Verdict
from app.inference.analysis import StudyAnalysis, analyse_study
from app.inference.engine import ImagePrediction, InferenceEngine
from app.inference.render import DEFAULT_OPACITY, encode_png, overlay
from app.ingest import IngestedImage, IngestedStudy, IngestOptions, Rejection, ingest_paths

log = logging.getLogger(__name__)


@dataclass
class PatientResult:
    """One study's images and their analysis: predictions (same order; None where failed) and verdict."""

    study: IngestedStudy
    analysis: StudyAnalysis

    @property
    def predictions(self) -> list[ImagePrediction | None]:
        return list(self.analysis.predictions)

    @property
    def verdict(self) -> Verdict:
        return self.analysis.verdict

    @property
    def errors(self) -> Mapping[int, str]:
        return self.analysis.errors

    @property
    def patient_key(self) -> str:
        return self.study.patient_key

    @property
    def images(self) -> list[IngestedImage]:
        return self.study.images


@dataclass
class PredictionReport:
    model: dict[str, Any]
    provider: str
    patients: list[PatientResult] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def write_overlays(self, directory: Path, opacity: float = DEFAULT_OPACITY) -> dict[tuple[int, int], str]:
        """Write one overlay PNG per image, named by patient_key (never by patient name/ID).

        Returns {(patient index, image index): path} for ``to_json``.
        """
        directory.mkdir(parents=True, exist_ok=True)
        written: dict[tuple[int, int], str] = {}
        for p, patient in enumerate(self.patients):
            for i, (image, prediction) in enumerate(zip(patient.images, patient.predictions, strict=True)):
                if prediction is None:
                    continue
                path = directory / f"{patient.patient_key}_{i:03d}.png"
                path.write_bytes(encode_png(overlay(image.pixels, prediction.cam, opacity)))
                written[(p, i)] = str(path)
        return written

    def to_json(self, overlays: Mapping[tuple[int, int], str] | None = None) -> dict[str, Any]:
        overlays = overlays or {}
        return {
            "model": self.model,
            "provider": self.provider,
            "patients": [_patient_json(p, patient, overlays) for p, patient in enumerate(self.patients)],
            "rejected": [{"source": r.source, "reason": r.reason} for r in self.rejected],
        }


def _patient_json(
    index: int, patient: PatientResult, overlays: Mapping[tuple[int, int], str]
) -> dict[str, Any]:
    verdict = patient.verdict
    return {
        "patient_key": patient.patient_key,
        "gestational_age_weeks": patient.study.gestational_age_weeks,
        "verdict": {
            "label": verdict.label,
            "probabilities": verdict.probabilities,
            "p_abnormal": verdict.p_abnormal,
            "aggregation": verdict.aggregation,
            "n_used": verdict.n_used,
            "n_excluded": verdict.n_excluded,
            "n_total": verdict.n_total,
            "excluded_by_reason": verdict.excluded_by_reason,
            "n_failed": patient.analysis.n_failed,
            "support": verdict.support,
            "reason": verdict.reason,
            "votes": verdict.votes,
        },
        "images": [
            _image_json(image, prediction, patient.errors.get(i), overlays.get((index, i)))
            for i, (image, prediction) in enumerate(zip(patient.images, patient.predictions, strict=True))
        ],
    }


def _image_json(
    image: IngestedImage, prediction: ImagePrediction | None, error: str | None, overlay_path: str | None
) -> dict[str, Any]:
    where = {"source": image.source, "frame": image.frame}
    if prediction is None:
        failed = dict.fromkeys(
            (
                "label",
                "probabilities",
                "ood",
                "ood_score",
                "ood_scores",
                "ood_signals",
                "quality_issue",
                "overlay",
            )
        )
        return {**where, **failed, "excluded": True, "error": error}
    return {
        **where,
        "label": prediction.label,
        "probabilities": prediction.probability_dict(),
        "ood": prediction.ood,
        "ood_score": prediction.ood_score,
        "ood_scores": dict(prediction.ood_scores),
        "ood_signals": list(prediction.ood_signals),
        "quality_issue": prediction.quality_issue,
        "excluded": prediction.excluded,
        "overlay": overlay_path,
        "error": None,
    }


def model_summary(engine: InferenceEngine) -> dict[str, Any]:
    card = engine.card
    return {
        "name": card.name,
        "version": card.version,
        "sha256": card.sha256,
        "classes": list(card.classes),
        "banner": card.banner,
    }


def analyse_patient(
    study: IngestedStudy, engine: InferenceEngine, aggregation: str | None = None
) -> PatientResult:
    """``analyse_study`` on an ingested study, kept with the study for reporting."""
    analysis = analyse_study(engine, study.images, aggregation)
    verdict = analysis.verdict
    log.info(
        "patient %s: %s (%d of %d image(s) used, %d excluded, of which %d failed)",
        study.patient_key,
        verdict.label,
        verdict.n_used,
        verdict.n_total,
        verdict.n_excluded,
        analysis.n_failed,
    )
    return PatientResult(study=study, analysis=analysis)


def analyse_paths(
    paths: Sequence[Path | str],
    engine: InferenceEngine,
    aggregation: str | None = None,
    options: IngestOptions | None = None,
) -> PredictionReport:
    """Ingest ``paths`` (files, folders, ZIPs) and return verdicts for every study found."""
    ingested = ingest_paths([Path(p) for p in paths], options)
    report = PredictionReport(
        model=model_summary(engine), provider=engine.provider, rejected=ingested.rejected
    )
    for study in ingested.studies:
        report.patients.append(analyse_patient(study, engine, aggregation))
    return report
