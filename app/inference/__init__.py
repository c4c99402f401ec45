"""Serving-time inference: ONNX Runtime engine, patient aggregation, rendering, pipeline.

Never imports torch. Main entry points: ``InferenceEngine`` (app.inference.engine),
``analyse_study`` (app.inference.analysis: the one analysis path of a study, with per-image
fallback, used by ``fetalcns predict`` and the web worker), ``aggregate``
(app.inference.aggregate), ``analyse_paths`` (app.inference.pipeline) and the picture
helpers in app.inference.render.
"""

from app.inference.aggregate import INDETERMINATE, Verdict, aggregate
from app.inference.analysis import StudyAnalysis, analyse_study
from app.inference.engine import ImagePrediction, InferenceEngine
from app.inference.pipeline import PatientResult, PredictionReport, analyse_paths
from app.inference.runtime import EngineError

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
