"""Faster variants of an exported model, each checked against fp32 before the card lists it.

``fetalcns export --quantize int8 MODEL_DIR --quantize-data DIR`` writes ``model.int8.onnx``: the
backbone's convolutions quantized statically (ONNX Runtime's QDQ format, int8 weights per output
channel, uint8 activations calibrated by min/max on images of DIR). The classifier (Gemm) and the
in-graph Grad-CAM convolution stay fp32, so the heatmaps keep their meaning. ``--quantize fp16``
writes ``model.fp16.onnx`` (weights and arithmetic in float16, inputs and outputs float32), for
GPUs.

The parity check runs the variant and fp32 through ``analyse_study`` on patients of DIR that
calibration did not see (held out): every patient's verdict must be the same, and the largest
difference of any image's class probability at most ``max_prob_diff`` (int8: 0.05 by default;
fp16: 0.01). The card records the check under ``onnx.variants.<precision>`` whether it passed or
not; serving refuses a variant that did not pass (app.modelcard.ModelCard.variant).

Only onnx and onnxruntime are needed (no torch). Calibration and parity patients are split by a
fixed rule, every third patient (sorted by id) to calibration, so that a rerun gives the same
variant and the same record.
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.modelcard import load_model_card, sha256_of, write_model_card

VARIANT_FILES = {"int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}
DEFAULT_MAX_PROB_DIFF = {"int8": 0.05, "fp16": 0.01}
CALIBRATION_EVERY = 3


class VariantError(ValueError):
    """The variant cannot be made (no data, a graph the quantizer cannot take); says why."""


def load_patients(data_dir: Path) -> dict[str, list[Path]]:
    """Patient id → image files of a folder with a synth-style manifest.csv (CNS images only)."""
    manifest = data_dir / "manifest.csv"
    if not manifest.is_file():
        raise VariantError(f"{data_dir} has no manifest.csv (make one with `fetalcns synth`)")
    patients: dict[str, list[Path]] = defaultdict(list)
    with manifest.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if (row.get("view_scope") or "cns") != "cns" or not row.get("image"):
                continue
            patients[row["patient_id"]].append(data_dir / row["image"])
    if not patients:
        raise VariantError(f"{manifest} lists no CNS images")
    return dict(sorted(patients.items()))


def split_patients(patients: dict[str, list[Path]]) -> tuple[list[str], list[str]]:
    """(calibration, held out): every third patient in id order calibrates, the rest check parity."""
    ids = sorted(patients)
    calibration = [p for i, p in enumerate(ids) if i % CALIBRATION_EVERY == 0]
    held_out = [p for p in ids if p not in calibration]
    if not held_out:
        raise VariantError("the parity check needs at least two patients (one is held out)")
    return calibration, held_out


def _images(paths: Sequence[Path]) -> list[Any]:
    import cv2

    from app.ingest.types import IngestedImage

    images = []
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise VariantError(f"{path} cannot be read as an image")
        images.append(IngestedImage(str(path), None, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None, "", {}))
    return images


def _calibration_reader(engine: Any, paths: Sequence[Path], batch: int = 8) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._batches = self._make()

        def _make(self) -> Iterator[dict[str, np.ndarray]]:
            for start in range(0, len(paths), batch):
                tensors = [engine.prepare(image).tensor for image in _images(paths[start : start + batch])]
                yield {engine.card.input_name: np.stack(tensors).astype(np.float32)}

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    return Reader()


def _backbone_convs(model_path: Path) -> tuple[list[str], list[str]]:
    """(Conv nodes to quantize, nodes left fp32). Backbone convolutions carry a bias (batch norm
    folded in); the Grad-CAM convolution has none, and its map must stay exact."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    keep = [n.name for n in convs if len(n.input) >= 3 and n.input[2]]
    fp32 = [n.name for n in graph.node if n.name not in keep and n.op_type in ("Conv", "Gemm", "MatMul")]
    if not keep:
        raise VariantError("the graph has no biased convolutions to quantize")
    return keep, fp32


def quantize_int8_file(
    engine: Any, source: Path, target: Path, calibration: Sequence[Path]
) -> dict[str, Any]:
    """Static QDQ int8 of ``source``'s backbone convolutions, calibrated on ``calibration`` images."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize, fp32 = _backbone_convs(prepared)
        quantize_static(
            str(prepared),
            str(target),
            _calibration_reader(engine, calibration),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],
            nodes_to_quantize=quantize,
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    return {
        "method": "onnxruntime static quantization, QDQ format, per-channel int8 weights, uint8 "
        "activations calibrated by min/max",
        "quantized_convolutions": len(quantize),
        "kept_fp32": sorted(fp32),
        "calibration_images": len(calibration),
    }


def convert_fp16_file(source: Path, target: Path) -> dict[str, Any]:
    """Weights and arithmetic in float16; the input and outputs stay float32 (one Cast each way)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(source))
    converted = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    onnx.save(converted, str(target))
    return {
        "method": "float16 weights and arithmetic (onnxruntime.transformers.float16), float32 input/outputs"
    }


def _engine_for(model_dir: Path, onnx_file: Path, scratch: Path, device: str = "cpu") -> Any:
    """An engine on ``onnx_file`` with the card of ``model_dir`` (its OOD parameters too), before
    the card lists the file: a copy of the folder with the candidate as its model.onnx."""
    from app.inference.engine import InferenceEngine

    card = load_model_card(model_dir)
    folder = scratch / "candidate"
    folder.mkdir()
    for path in model_dir.iterdir():
        if path.is_file() and path.suffix != ".onnx" and path.name != "model.json":
            (folder / path.name).symlink_to(path.resolve())
    (folder / "model.onnx").symlink_to(onnx_file.resolve())
    raw = json.loads(json.dumps(card.raw))
    raw["onnx"] = {k: v for k, v in raw["onnx"].items() if k not in ("variants", "file")}
    write_model_card(folder, raw)
    return InferenceEngine(folder, device=device)


def parity(
    reference: Any,
    candidate: Any,
    patients: dict[str, list[Path]],
    held_out: Sequence[str],
    max_prob_diff: float,
) -> dict[str, Any]:
    """Both engines through ``analyse_study`` on the held-out patients: verdicts, labels, probabilities."""
    from app.inference.analysis import analyse_study

    same_verdicts = same_labels = images = 0
    diffs: list[float] = []
    cam_diffs: list[float] = []
    for patient in held_out:
        study = _images(patients[patient])
        a, b = analyse_study(reference, study), analyse_study(candidate, study)
        same_verdicts += int(a.verdict.label == b.verdict.label)
        for p, q in zip(a.predictions, b.predictions, strict=True):
            if p is None or q is None:
                continue
            images += 1
            same_labels += int(p.label == q.label)
            diffs.append(float(np.max(np.abs(p.probabilities - q.probabilities))))
            # The heatmap as shown (normalised to its maximum) of the same class.
            cp, cq = p.class_cams[p.label_index], q.class_cams[p.label_index]
            if cp.max() > 0 and cq.max() > 0:
                cam_diffs.append(float(np.max(np.abs(cp / cp.max() - cq / cq.max()))))
    agreement = same_verdicts / len(held_out)
    largest = max(diffs) if diffs else 0.0
    passed = agreement == 1.0 and largest <= max_prob_diff
    summary = (
        f"{same_verdicts} of {len(held_out)} held-out patient verdicts the same, largest probability "
        f"difference {largest:.4f} (bound {max_prob_diff})"
    )
    return {
        "passed": passed,
        "summary": summary,
        "held_out_patients": len(held_out),
        "patient_verdict_agreement": agreement,
        "images": images,
        "image_label_agreement": same_labels / images if images else None,
        "max_prob_diff": largest,
        "mean_prob_diff": float(np.mean(diffs)) if diffs else 0.0,
        "max_prob_diff_bound": max_prob_diff,
        "max_cam_diff_normalised": max(cam_diffs) if cam_diffs else None,
    }


def make_variant(
    model_dir: Path | str,
    precision: str,
    data_dir: Path | str,
    max_prob_diff: float | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Write MODEL_DIR/model.<precision>.onnx, check its parity and record both in the card.

    Returns the card's new ``onnx.variants.<precision>`` entry (its ``parity.passed`` says whether
    serving will accept it). model.onnx itself is never changed. ``device``: where the variant
    runs for the check (fp32 always runs on the CPU, the reference); the card says which.
    """
    from app.inference.engine import InferenceEngine

    if precision not in VARIANT_FILES:
        raise VariantError(f"unknown precision {precision!r}; choose one of {', '.join(VARIANT_FILES)}")
    model_dir = Path(model_dir)
    bound = DEFAULT_MAX_PROB_DIFF[precision] if max_prob_diff is None else float(max_prob_diff)
    patients = load_patients(Path(data_dir))
    calibration, held_out = split_patients(patients)
    reference = InferenceEngine(model_dir, device="cpu")
    target = model_dir / VARIANT_FILES[precision]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        candidate_file = Path(scratch) / target.name
        if precision == "int8":
            calibration_images = [path for p in calibration for path in patients[p]]
            how = quantize_int8_file(reference, reference.card.onnx_path, candidate_file, calibration_images)
            how["calibration_patients"] = len(calibration)
        else:
            how = convert_fp16_file(reference.card.onnx_path, candidate_file)
        candidate = _engine_for(model_dir, candidate_file, Path(scratch), device)
        check = parity(reference, candidate, patients, held_out, bound)
        check["checked_on"] = candidate.provider
        shutil.copyfile(candidate_file, target)
    entry = {
        "file": target.name,
        "sha256": sha256_of(target),
        "size_bytes": target.stat().st_size,
        "of": {"file": reference.card.onnx_path.name, "sha256": reference.card.sha256},
        **how,
        "parity": {**check, "data": Path(data_dir).name, "seconds": round(time.perf_counter() - started, 1)},
    }
    raw = json.loads(json.dumps(reference.card.raw))
    raw["onnx"].setdefault("variants", {})[precision] = entry
    write_model_card(model_dir, raw)
    return entry
