"""Serving-time inference: ONNX Runtime engine, patient aggregation, rendering, pipeline.

Never imports torch. Main entry points: ``InferenceEngine`` (app.inference.engine),
``analyse_study`` (app.inference.analysis: the one analysis path of a study, with per-image
fallback, used by ``fetalcns predict`` and the web worker), ``aggregate``
(app.inference.aggregate), ``analyse_paths`` (app.inference.pipeline) and the picture
helpers in app.inference.render.

The names below are imported on first use, not with the package: the worker's preparing
processes import ``app.inference.prepare`` alone (numpy and OpenCV), not ONNX Runtime and the
ingestion stack, so each starts faster and holds less memory.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.inference.aggregate import INDETERMINATE, Verdict, aggregate
    from app.inference.analysis import StudyAnalysis, analyse_study
    from app.inference.engine import ImagePrediction, InferenceEngine
    from app.inference.pipeline import PatientResult, PredictionReport, analyse_paths
    from app.inference.runtime import EngineError

_WHERE = {
    "INDETERMINATE": "aggregate",
    "Verdict": "aggregate",
    "aggregate": "aggregate",
    "StudyAnalysis": "analysis",
    "analyse_study": "analysis",
    "ImagePrediction": "engine",
    "InferenceEngine": "engine",
    "PatientResult": "pipeline",
    "PredictionReport": "pipeline",
    "analyse_paths": "pipeline",
    "EngineError": "runtime",
}

__all__ = [
    "INDETERMINATE",
    "EngineError",
    "ImagePrediction",
    "InferenceEngine",
    "PatientResult",
    "PredictionReport",
    "StudyAnalysis",
    "Verdict",
    "aggregate",
    "analyse_paths",
    "analyse_study",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'app.inference' has no attribute {name!r}")
    return getattr(import_module(f"app.inference.{module}"), name)
