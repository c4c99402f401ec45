"""The inference engine: display images → per-image probabilities, Grad-CAM and flags.

Serving path only: onnxruntime + numpy + OpenCV, never torch. Preprocessing is
``app.preprocess.to_model_input`` with the model card's spec, the code training uses.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.inference.cam import cam_to_image
from app.inference.mahalanobis import (
    ClassGaussians,
    ViewScope,
    load_class_gaussians,
    load_view_scope,
    mahalanobis_score,
    view_scope_score,
)
from app.inference.prepare import PreparedImage, prepare_image
from app.inference.runtime import (
    CPU,
    CUDA,
    TENSORRT,
    EngineError,
    SessionKey,
    choose_providers,
    default_threads,
    get_session,
    split_device,
)
from app.inference.scores import OOD_SCORES
from app.inference.temperature import scaled_softmax
from app.ingest.types import IngestedImage
from app.modelcard import ModelCard, ModelCardError, OodRule, load_model_card
from app.preprocess import Box, scan_box

log = logging.getLogger(__name__)

LOGITS_OUTPUT = "logits"
CAM_OUTPUT = "cam"
FEATURES_OUTPUT = "features"

# What the exclusion reason calls each OOD signal.
SIGNAL_WORDS = {"energy": "energy score", "mahalanobis": "feature distance", "view_scope": "view scope"}
# The OOD signal that says "this is another fetal view" (abdomen, femur, heart, face), and the
# reason given when it fires: a different thing to tell a reader from "unlike anything seen".
VIEW_SIGNAL = "view_scope"
VIEW_REASON = "an ultrasound view this model was not trained on"


@dataclass
class ImagePrediction:
    """The model's reading of one image.

    ``cam`` is the Grad-CAM of the predicted ``label`` at the image's own geometry, in [0, 1],
    zero outside ``scan_box``; it is made on first use (the web worker never needs it: it
    stores the model-resolution map and the heatmap is drawn when someone looks). ``class_cams``
    keeps the raw model-resolution maps of every class so that a map for another class (e.g.
    the patient verdict) can be made with ``cam_for``. ``excluded`` images do not take part in
    the patient verdict.
    """

    classes: tuple[str, ...]
    probabilities: np.ndarray
    label: str
    label_index: int
    logits: np.ndarray
    class_cams: np.ndarray = field(repr=False)
    scan_box: Box
    image_shape: tuple[int, int]
    ood: bool
    ood_score: float
    quality_issue: str | None
    # Every OOD signal's score by method (``ood_score`` is the card's primary signal's) and the
    # signals that flagged the image.
    ood_scores: dict[str, float] = field(default_factory=dict)
    ood_signals: tuple[str, ...] = ()
    # The features lie within the view-scope radius of a non-CNS view mean (False without the signal).
    near_other_view: bool = False
    # Why this is not an ultrasound image at all (another modality, a colour picture); None when
    # it may be one (app.inference.image_kind).
    not_ultrasound: str | None = None
    # How the input was lossily compressed, when the card's input_policy.lossy is "exclude".
    lossy_excluded: str | None = None
    # The full-size map of ``label``, made by the ``cam`` property on first use.
    _cam: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def cam(self) -> np.ndarray:
        """The [0, 1] Grad-CAM of ``label`` at the original image geometry (made once, on first use)."""
        if self._cam is None:
            self._cam = self.cam_for(self.label_index)
        return self._cam

    @property
    def model_cam(self) -> np.ndarray:
        """The model-resolution map of ``label`` (h×w float32): what the web app stores."""
        return np.asarray(self.class_cams[self.label_index], np.float32)

    @property
    def excluded(self) -> bool:
        return (
            self.ood
            or self.quality_issue is not None
            or self.not_ultrasound is not None
            or self.lossy_excluded is not None
        )

    @property
    def out_of_scope_view(self) -> bool:
        """Flagged by the view-scope signal (nearer a non-CNS fetal view than any CNS class), within
        the radius of a view mean, and not by the feature distance. An image far from every CNS
        class and every known view (noise, a photograph, another modality) may still lie nearer a
        view mean than a CNS one; it is "unlike the images the model was trained on" instead."""
        return (
            self.ood
            and VIEW_SIGNAL in self.ood_signals
            and self.near_other_view
            and "mahalanobis" not in self.ood_signals
        )

    @property
    def exclusion_reason(self) -> str | None:
        if self.not_ultrasound is not None:
            return self.not_ultrasound
        if self.quality_issue is not None:
            return self.quality_issue
        if self.lossy_excluded is not None:
            return f"{self.lossy_excluded}; the model card leaves lossy images out"
        if self.out_of_scope_view:
            return VIEW_REASON
        if self.ood:
            fired = ", ".join(SIGNAL_WORDS.get(m, m) for m in self.ood_signals)
            detail = f": {fired}" if fired else ""
            return f"unlike the images the model was trained on (out of distribution{detail})"
        return None

    def probability_dict(self) -> dict[str, float]:
        return {name: float(p) for name, p in zip(self.classes, self.probabilities, strict=True)}

    def cam_for(self, class_index: int) -> np.ndarray:
        """The [0, 1] Grad-CAM of any class at the original image geometry."""
        return cam_to_image(self.class_cams[class_index], self.image_shape, self.scan_box)


class InferenceEngine:
    """Loads a model directory once and scores images in batches.

    ``device``: "auto" (CUDA when a GPU is present, else CPU), "cpu", "cuda" or "cuda:N".
    ``threads``: intra-op threads (default: up to 4 cores); inter-op is 1 because the graph
    is a chain of convolutions with nothing to run in parallel.
    ``precision``: "fp32" (model.onnx), or a variant the card lists with a passed parity check
    ("int8" for CPUs, "fp16" for GPUs; ``fetalcns export --quantize``).
    ``tensorrt``: on a GPU, TensorRT before CUDA, its engines cached in ``tensorrt_cache``.
    On CUDA the batch is bound to GPU memory (IO binding) rather than copied by ``run``.
    """

    def __init__(
        self,
        model_dir: Path | str,
        device: str = "auto",
        batch_size: int = 16,
        threads: int | None = None,
        precision: str = "fp32",
        tensorrt: bool = False,
        tensorrt_cache: Path | str | None = None,
        allow_spinning: bool = False,
    ) -> None:
        if batch_size < 1:
            raise EngineError("batch_size must be at least 1")
        try:
            self.card: ModelCard = load_model_card(Path(model_dir))
        except ModelCardError as exc:
            raise EngineError(f"cannot load the model: {exc}") from exc
        self.batch_size = batch_size
        self.spec = self.card.preprocess
        # The card decides what "out of distribution" means; the engine only computes the score.
        self.ood_rule: OodRule = self.card.ood_rule
        # The card's calibration temperature (1.0 without one): probabilities are softmax(logits / T).
        self.temperature: float = self.card.temperature
        self._gaussians: ClassGaussians | None = None
        if "mahalanobis" in self.ood_rule.methods:
            path = self.card.ood_parameters_path("mahalanobis")
            try:
                self._gaussians = load_class_gaussians(path)
            except (OSError, ValueError) as exc:
                raise EngineError(f"cannot load the OOD parameters {path}: {exc}") from exc
        self._views: ViewScope | None = None
        if VIEW_SIGNAL in self.ood_rule.methods:
            path = self.card.ood_parameters_path(VIEW_SIGNAL)
            try:
                self._views = load_view_scope(path)
            except (OSError, ValueError) as exc:
                raise EngineError(f"cannot load the OOD parameters {path}: {exc}") from exc
        self._outputs = [LOGITS_OUTPUT, CAM_OUTPUT]
        if self._gaussians is not None or self._views is not None:
            self._outputs.append(FEATURES_OUTPUT)
        try:
            onnx_path, sha256, _ = self.card.variant(precision)
        except ModelCardError as exc:
            raise EngineError(f"cannot load the model: {exc}") from exc
        if precision != "fp32":
            from app.modelcard import sha256_of

            if not onnx_path.is_file() or sha256_of(onnx_path) != sha256:
                raise EngineError(
                    f"the {precision} model file {onnx_path} is missing or does not match its card"
                )
        self.precision = precision
        providers = tuple(choose_providers(device, tensorrt=tensorrt))
        key = SessionKey(
            onnx_path=str(onnx_path.resolve()),
            sha256=sha256,
            providers=providers,
            intra_op_threads=threads or default_threads(),
            inter_op_threads=1,
            device_id=split_device(device)[1],
            allow_spinning=allow_spinning,
            tensorrt_cache=str(tensorrt_cache) if tensorrt_cache and TENSORRT in providers else None,
            tensorrt_fp16=precision == "fp16",
        )
        self._session_key = key
        self._session = get_session(key)
        self.provider: str = self._session.get_providers()[0] if self._session.get_providers() else CPU
        self._device_id = key.device_id
        self._check_signature()
        log.info("model %s %s on %s", self.card.name, self.card.version, self.provider)

    def _check_signature(self) -> None:
        inputs = [i.name for i in self._session.get_inputs()]
        outputs = [o.name for o in self._session.get_outputs()]
        if self.card.input_name not in inputs:
            raise EngineError(f"the model has no input named {self.card.input_name!r} (it has {inputs})")
        missing = [name for name in self._outputs if name not in outputs]
        if missing:
            raise EngineError(f"the model lacks the output(s) {', '.join(missing)}")
        for params in (self._gaussians, self._views):
            if params is None:
                continue
            shape = next(o.shape for o in self._session.get_outputs() if o.name == FEATURES_OUTPUT)
            width = shape[-1] if shape else None
            if isinstance(width, int) and width != params.width:
                raise EngineError(
                    f"the OOD parameters are for {params.width} features, the model has {width}"
                )

    @property
    def classes(self) -> tuple[str, ...]:
        return self.card.classes

    @property
    def session_settings(self) -> dict[str, object]:
        """The ONNX Runtime settings this engine runs with (recorded by benchmarks and metrics)."""
        return {**self._session_key.settings(), "provider": self.provider, "precision": self.precision}

    @property
    def output_names(self) -> tuple[str, ...]:
        """Every output of the ONNX graph (``features`` only on models that export it)."""
        return tuple(o.name for o in self._session.get_outputs())

    def model_box(self, image: IngestedImage) -> Box:
        """The region the model sees: the DICOM tissue region, else the detected scan area."""
        given = image.scan_box if self.spec.crop != "none" else None
        return scan_box(image.pixels, self.spec, given)

    def prepare(self, image: IngestedImage) -> PreparedImage:
        """Crop box, model input and pixel flags of one image (app.inference.prepare)."""
        return prepare_image(image, self.spec)

    def preprocess(self, image: IngestedImage) -> tuple[np.ndarray, Box]:
        prepared = self.prepare(image)
        return prepared.tensor, prepared.box

    def run_outputs(self, batch: np.ndarray, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Raw model outputs by name for preprocessed inputs (default: what this engine needs)."""
        names = list(names or self._outputs)
        batch = np.ascontiguousarray(batch, np.float32)
        if self.provider in (CUDA, TENSORRT):
            return self._run_bound(batch, names)
        values = self._session.run(names, {self.card.input_name: batch})
        return {name: np.asarray(value) for name, value in zip(names, values, strict=True)}

    def _run_bound(self, batch: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        """One run with IO binding: the batch is copied to the GPU once, the outputs are
        allocated there and copied back once, with no staging buffers of ``run`` in between."""
        import onnxruntime as ort

        binding = self._session.io_binding()
        value = ort.OrtValue.ortvalue_from_numpy(batch, "cuda", self._device_id)
        binding.bind_ortvalue_input(self.card.input_name, value)
        for name in names:
            binding.bind_output(name, "cuda", self._device_id)
        self._session.run_with_iobinding(binding)
        outputs = binding.copy_outputs_to_cpu()
        return {name: np.asarray(out) for name, out in zip(names, outputs, strict=True)}

    def run_batch(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw model outputs (logits [N, C], cam [N, C, h, w]) for preprocessed inputs."""
        outputs = self.run_outputs(batch, [LOGITS_OUTPUT, CAM_OUTPUT])
        return outputs[LOGITS_OUTPUT], outputs[CAM_OUTPUT]

    def ood_scores(self, logits: np.ndarray, features: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Every OOD signal of the card's rule, per row of logits [N, C] (and features [N, K])."""
        scores: dict[str, np.ndarray] = {}
        for method in self.ood_rule.methods:
            if method in OOD_SCORES:
                scores[method] = np.asarray(OOD_SCORES[method](logits), np.float64)
            elif method == "mahalanobis" and self._gaussians is not None and features is not None:
                scores[method] = mahalanobis_score(self._gaussians, features)
            elif method == VIEW_SIGNAL and self._views is not None and features is not None:
                scores[method] = view_scope_score(self._views, features)
        return scores

    def predict(self, images: Sequence[IngestedImage]) -> list[ImagePrediction]:
        """Score images in batches of ``batch_size``; order is preserved."""
        predictions: list[ImagePrediction] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            predictions.extend(self.predict_prepared([self.prepare(image) for image in chunk]))
        return predictions

    def predict_prepared(self, prepared: Sequence[PreparedImage]) -> list[ImagePrediction]:
        """Score prepared images (``prepare``, or a PreparePool) in batches; order is preserved."""
        predictions: list[ImagePrediction] = []
        for start in range(0, len(prepared), self.batch_size):
            chunk = prepared[start : start + self.batch_size]
            outputs = self.run_outputs(np.stack([p.tensor for p in chunk]))
            logits, cams = outputs[LOGITS_OUTPUT], outputs[CAM_OUTPUT]
            features = outputs.get(FEATURES_OUTPUT)
            scores = self.ood_scores(logits, features)
            near = np.zeros(len(chunk), bool)
            if self._views is not None and features is not None:
                near = self._views.within_radius(features)
            for row, item in enumerate(chunk):
                row_scores = {method: float(values[row]) for method, values in scores.items()}
                prediction = self._interpret(item, logits[row], cams[row], row_scores)
                prediction.near_other_view = bool(near[row])
                predictions.append(prediction)
        return predictions

    def _interpret(
        self,
        prepared: PreparedImage,
        logits: np.ndarray,
        class_cams: np.ndarray,
        ood_scores: dict[str, float],
    ) -> ImagePrediction:
        # Only the probabilities are calibrated: the OOD scores (energy) keep the raw logits,
        # because their thresholds were calibrated on raw logits.
        probabilities = scaled_softmax(logits, self.temperature)
        index = int(np.argmax(probabilities))
        fired = self.ood_rule.fired(ood_scores)
        return ImagePrediction(
            classes=self.classes,
            probabilities=probabilities,
            label=self.classes[index],
            label_index=index,
            logits=np.asarray(logits, np.float64),
            class_cams=np.asarray(class_cams, np.float32),
            scan_box=prepared.box,
            image_shape=prepared.image_shape,
            ood=bool(fired),
            ood_score=float(ood_scores.get(self.ood_rule.method, np.nan)),
            quality_issue=prepared.quality_issue,
            ood_scores=ood_scores,
            ood_signals=fired,
            not_ultrasound=prepared.not_ultrasound,
            lossy_excluded=prepared.lossy_compression if self.card.lossy_policy == "exclude" else None,
        )
