"""Bytes on disk → patient verdicts: the service-friendly entry point (no torch).

``analyse_paths`` ingests files, scores every image and aggregates per study. The
returned ``PredictionReport`` holds everything a caller stores: per image the original
pixels, probabilities, label, Grad-CAM, flags and metadata; per patient the verdict.
``to_json`` gives the ``fetalcns predict`` document.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.inference.aggregate import Verdict, aggregate
from app.inference.engine import ImagePrediction, InferenceEngine
from app.inference.render import DEFAULT_OPACITY, encode_png, overlay
from app.ingest import IngestedImage, IngestedStudy, IngestOptions, Rejection, ingest_paths

log = logging.getLogger(__name__)


@dataclass
class PatientResult:
    """One study's images, their predictions (same order) and the verdict."""

    study: IngestedStudy
    predictions: list[ImagePrediction]
    verdict: Verdict

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
            "support": verdict.support,
            "reason": verdict.reason,
            "votes": verdict.votes,
        },
        "images": [
            {
                "source": image.source,
                "frame": image.frame,
                "label": prediction.label,
                "probabilities": prediction.probability_dict(),
                "ood": prediction.ood,
                "ood_score": prediction.ood_score,
                "quality_issue": prediction.quality_issue,
                "excluded": prediction.excluded,
                "overlay": overlays.get((index, i)),
            }
            for i, (image, prediction) in enumerate(zip(patient.images, patient.predictions, strict=True))
        ],
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


def analyse_study(
    study: IngestedStudy, engine: InferenceEngine, aggregation: str | None = None
) -> PatientResult:
    """Score one study's images and aggregate them (default rule: the model card's)."""
    method = aggregation or engine.card.aggregation
    predictions = engine.predict(study.images)
    verdict = aggregate(
        [p.probabilities for p in predictions],
        engine.classes,
        engine.card.normal_class,
        method=method,
        excluded=[p.excluded for p in predictions],
    )
    log.info(
        "patient %s: %s (%d image(s) used, %d excluded)",
        study.patient_key,
        verdict.label,
        verdict.n_used,
        verdict.n_excluded,
    )
    return PatientResult(study=study, predictions=predictions, verdict=verdict)


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
        report.patients.append(analyse_study(study, engine, aggregation))
    return report
