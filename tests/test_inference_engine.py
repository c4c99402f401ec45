"""The ONNX Runtime engine against the training code (same preprocessing) and PyTorch (same numbers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.inference.engine import InferenceEngine
from app.inference.runtime import CPU, EngineError, choose_providers, gpu_present, split_device
from app.ingest import ingest_paths
from tests.ingest_support import as_ingested, copy_model_with_card, phantom

no_gpu = pytest.mark.skipif(gpu_present(), reason="this machine has a GPU")


def annotated_scan(seed: int = 0) -> np.ndarray:
    """A phantom inside a larger black frame with burned-in text, like a scanner screen."""
    frame = np.zeros((300, 400), np.uint8)
    frame[40:280, 50:370] = phantom(240, 320, seed)
    cv2.putText(frame, "GA 22w3d  MI 1.1", (5, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 255, 1)
    return np.repeat(frame[:, :, None], 3, axis=2)


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> InferenceEngine:
    return InferenceEngine(tiny_model_dir, device="cpu", batch_size=4, threads=1)


@no_gpu
def test_cpu_machine_uses_only_the_cpu_provider(tiny_model_dir: Path) -> None:
    assert choose_providers("auto") == [CPU]
    assert InferenceEngine(tiny_model_dir).provider == CPU
    with pytest.raises(EngineError, match="no usable NVIDIA GPU"):
        choose_providers("cuda")


def test_unknown_device_is_refused() -> None:
    with pytest.raises(EngineError, match="unknown device"):
        choose_providers("tpu")


def test_one_gpu_of_several_is_named_cuda_n() -> None:
    assert split_device("cuda:3") == ("cuda", 3) and split_device("cpu") == ("cpu", 0)
    for bad in ("cuda:", "cuda:x", "cpu:1", "cuda:-1"):
        with pytest.raises(EngineError, match="unknown device"):
            split_device(bad)


def test_one_session_per_model_and_settings(tiny_model_dir: Path, engine: InferenceEngine) -> None:
    again = InferenceEngine(tiny_model_dir, device="cpu", batch_size=8, threads=1)
    assert again._session is engine._session
    other_threads = InferenceEngine(tiny_model_dir, device="cpu", threads=2)
    assert other_threads._session is not engine._session


@no_gpu
def test_onnxruntime_prints_nothing_on_a_cpu_machine(tiny_model_dir: Path) -> None:
    script = (
        "import numpy as np\n"
        "from app.inference.engine import InferenceEngine\n"
        "from tests.ingest_support import as_ingested, phantom\n"
        f"engine = InferenceEngine({str(tiny_model_dir)!r})\n"
        "engine.predict([as_ingested(phantom())])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout == ""


def test_preprocessing_equals_the_training_eval_transform(tmp_path: Path, engine: InferenceEngine) -> None:
    from app.training.data import eval_input, load_region

    for seed in range(3):
        path = tmp_path / f"{seed}.png"
        cv2.imwrite(str(path), annotated_scan(seed))
        served = ingest_paths([path]).studies[0].images[0]
        x_serving, _ = engine.preprocess(served)
        x_training = eval_input(load_region(path, engine.spec), engine.spec)
        np.testing.assert_array_equal(x_serving, x_training)


def test_outputs_match_pytorch_and_autograd_grad_cam(engine: InferenceEngine) -> None:
    import torch

    from app.training.export import build_untrained_model
    from tests.export_support import class_scores

    # The tiny_model_dir fixture exports exactly this seeded model.
    model = build_untrained_model(width=0.125, seed=0).eval()
    image = as_ingested(annotated_scan(1))
    x, box = engine.preprocess(image)
    prediction = engine.predict([image])[0]

    tensor = torch.from_numpy(x[None])
    activations = model.features(tensor).detach().requires_grad_(True)
    logits = model.classify(activations)
    np.testing.assert_allclose(prediction.logits, logits[0].detach().numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        prediction.probabilities, torch.softmax(logits, 1)[0].detach().numpy(), atol=1e-5
    )
    energy = -torch.logsumexp(logits, 1)[0].item()
    assert prediction.ood_score == pytest.approx(energy, abs=1e-4)

    # Grad-CAM by autograd: weights = spatial mean of d score_c / d A, for the score the card
    # says the heatmaps explain (the default: each class's own logit).
    target = engine.card.cam_target
    assert target == "logit"
    scores = class_scores(logits, target, normal_index=engine.card.normal_index)
    for c in range(len(engine.classes)):
        (grad,) = torch.autograd.grad(scores[0, c], activations, retain_graph=True)
        weights = grad.mean(dim=(2, 3), keepdim=True)
        reference = torch.relu((weights * activations).sum(dim=1))[0].detach().numpy()
        np.testing.assert_allclose(prediction.class_cams[c], reference, rtol=1e-3, atol=1e-6)

    assert prediction.class_cams.max() > 0
    label = prediction.label_index
    top, bottom, left, right = box
    upsampled = torch.nn.functional.interpolate(
        torch.from_numpy(prediction.class_cams[label])[None, None],
        size=(bottom - top, right - left),
        mode="bilinear",
        align_corners=False,
    )[0, 0].numpy()
    if upsampled.max() > 0:
        np.testing.assert_allclose(
            prediction.cam[top:bottom, left:right], upsampled / upsampled.max(), atol=1e-4
        )


def test_batching_does_not_change_results(tiny_model_dir: Path, engine: InferenceEngine) -> None:
    images = [as_ingested(annotated_scan(seed)) for seed in range(6)]
    batched = engine.predict(images)
    single = InferenceEngine(tiny_model_dir, device="cpu", batch_size=1, threads=1).predict(images)
    assert len(batched) == 6
    for a, b in zip(batched, single, strict=True):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
        assert a.label == b.label


def test_cam_lives_on_the_original_geometry(engine: InferenceEngine) -> None:
    image = as_ingested(annotated_scan(2))
    prediction = engine.predict([image])[0]
    assert prediction.cam.shape == image.pixels.shape[:2]
    assert prediction.cam.dtype == np.float32
    assert prediction.cam.min() >= 0.0 and prediction.cam.max() <= 1.0
    top, bottom, left, right = prediction.scan_box
    outside = np.ones(prediction.cam.shape, bool)
    outside[top:bottom, left:right] = False
    assert (prediction.cam[outside] == 0).all()
    # The detected scan area is the phantom, not the frame with the burned-in text.
    assert abs(top - 40) <= 6 and abs(left - 50) <= 6
    other = (prediction.label_index + 1) % len(engine.classes)
    assert prediction.cam_for(other).shape == prediction.cam.shape


def test_a_given_scan_box_is_used(engine: InferenceEngine) -> None:
    box = (40, 280, 50, 370)
    assert engine.predict([as_ingested(annotated_scan(0), scan_box=box)])[0].scan_box == box


def test_blank_frames_are_flagged(engine: InferenceEngine) -> None:
    black = as_ingested(np.zeros((200, 300), np.uint8))
    grey = as_ingested(np.full((200, 300), 128, np.uint8))
    scan = as_ingested(annotated_scan(3))
    flagged = engine.predict([black, grey, scan])
    assert flagged[0].quality_issue is not None and flagged[0].excluded
    assert flagged[1].quality_issue is not None
    assert flagged[2].quality_issue is None


def test_ood_flag_follows_the_card_threshold(tiny_model_dir: Path, tmp_path: Path) -> None:
    image = as_ingested(annotated_scan(4))

    def engine_with(threshold: float, name: str) -> InferenceEngine:
        ood = {"method": "energy", "threshold": threshold, "percentile": 95.0, "calibrated_on": "test"}
        card = {"thresholds": {"abnormal": 0.5, "ood": ood}}
        return InferenceEngine(copy_model_with_card(tiny_model_dir, tmp_path / name, **card), device="cpu")

    score = engine_with(1e6, "never").predict([image])[0]
    assert not score.ood and not score.excluded
    flagged = engine_with(score.ood_score - 1e-3, "just-below").predict([image])[0]
    assert flagged.ood and flagged.excluded and "out of distribution" in (flagged.exclusion_reason or "")
    assert not engine_with(score.ood_score + 1e-3, "just-above").predict([image])[0].ood


def test_bad_model_directories_give_clear_errors(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="no model card"):
        InferenceEngine(tmp_path / "missing")
    tampered = copy_model_with_card(tiny_model_dir, tmp_path / "tampered")
    with (tampered / "model.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(EngineError, match="does not match the sha256"):
        InferenceEngine(tampered)


def test_serving_path_never_imports_torch(tiny_model_dir: Path, tmp_path: Path) -> None:
    image = tmp_path / "scan.png"
    cv2.imwrite(str(image), annotated_scan(0))
    script = (
        "import sys\n"
        "from app.cli import main\n"
        f"code = main(['predict', {str(image)!r}, '--model', {str(tiny_model_dir)!r}])\n"
        "assert code == 0, code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'app'))\n"
        "assert 'torch' not in sys.modules and 'app.training' not in sys.modules, heavy\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
