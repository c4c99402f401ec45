from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from export_support import autograd_gradcam, normalise_by_max, smooth_images

from app.labels import PAPER_CLASSES
from app.modelcard import DEFAULT_CAM_TARGET, REQUIRED_KEYS, load_model_card
from app.training.export import build_untrained_model, energy_scores, export_onnx, ood_threshold


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    model = build_untrained_model(width=0.125, seed=3)
    out = export_onnx(model, tmp_path_factory.mktemp("export"), {"name": "export-test", "version": "1.2.3"})
    return model, out


def run_onnx(model_dir: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    logits, cam = session.run(["logits", "cam"], {"image": images})
    return logits, cam


def test_onnx_logits_match_torch_on_eight_images(exported: tuple[torch.nn.Module, Path]) -> None:
    model, model_dir = exported
    images = smooth_images(8, seed=11)
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    logits, _ = run_onnx(model_dir, images)
    assert logits.shape == (8, len(PAPER_CLASSES))
    assert np.abs(logits - expected).max() <= 1e-4
    # The inputs must actually move the logits, or parity would prove little.
    assert logits.std(axis=0).max() > 1e-3


def test_onnx_cam_equals_autograd_gradcam_of_the_log_odds_against_normal(tmp_path: Path) -> None:
    model = build_untrained_model(width=0.125, seed=3)
    model_dir = export_onnx(
        model, tmp_path, {"name": "export-test-contrast", "version": "1.2.3"}, cam_target="normal-contrast"
    )
    assert load_model_card(model_dir).raw["outputs"]["cam"]["target"] == "normal-contrast"
    images = smooth_images(4, seed=5)
    reference = autograd_gradcam(model, torch.from_numpy(images), target="normal-contrast")
    _, cam = run_onnx(model_dir, images)
    assert cam.shape == reference.shape == (4, len(PAPER_CLASSES), 7, 7)
    lit = reference.max(axis=(2, 3)) > 1e-6
    assert lit.sum() >= 4, "too few non-empty Grad-CAM maps to compare"
    difference = np.abs(normalise_by_max(cam) - normalise_by_max(reference))
    assert difference[lit].max() <= 1e-4
    # Empty maps must be empty on both sides.
    assert np.abs(cam[~lit]).max(initial=0.0) <= 1e-6
    # The contrast is a different map from the plain logit's, or this test would prove nothing new.
    plain = autograd_gradcam(model, torch.from_numpy(images), target="logit")
    assert np.abs(normalise_by_max(plain) - normalise_by_max(reference))[lit].max() > 0.05


def test_default_target_exports_textbook_gradcam_of_each_class_logit(
    exported: tuple[torch.nn.Module, Path],
) -> None:
    # The paper's method, Grad-CAM of each class's own score, is what an export gives by default.
    model, model_dir = exported
    assert DEFAULT_CAM_TARGET == "logit"
    assert load_model_card(model_dir).raw["outputs"]["cam"]["target"] == "logit"
    images = smooth_images(4, seed=5)
    reference = autograd_gradcam(model, torch.from_numpy(images), target="logit")
    _, cam = run_onnx(model_dir, images)
    lit = reference.max(axis=(2, 3)) > 1e-6
    assert lit.sum() >= 4, "too few non-empty Grad-CAM maps to compare"
    assert np.abs(normalise_by_max(cam) - normalise_by_max(reference))[lit].max() <= 1e-4
    assert np.abs(cam[~lit]).max(initial=0.0) <= 1e-6


def test_unknown_cam_target_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cam target"):
        export_onnx(build_untrained_model(width=0.125), tmp_path, {"name": "x"}, cam_target="max")
    assert not (tmp_path / "model.onnx").exists()


def test_output_stride_16_exports_a_14x14_cam_equal_to_autograd_gradcam(tmp_path: Path) -> None:
    model = build_untrained_model(width=0.125, seed=3, output_stride=16)
    model_dir = export_onnx(model, tmp_path, {"name": "export-test-os16", "version": "1.2.3"})
    images = smooth_images(4, seed=5)
    reference = autograd_gradcam(model, torch.from_numpy(images), target="logit")
    _, cam = run_onnx(model_dir, images)
    assert cam.shape == reference.shape == (4, len(PAPER_CLASSES), 14, 14)
    lit = reference.max(axis=(2, 3)) > 1e-6
    assert lit.sum() >= 4, "too few non-empty Grad-CAM maps to compare"
    assert np.abs(normalise_by_max(cam) - normalise_by_max(reference))[lit].max() <= 1e-4
    card = load_model_card(model_dir).raw
    assert card["architecture_details"]["output_stride"] == 16
    assert card["architecture"] == "resnet34 (width x0.125, output stride 16)"
    assert "16i + 7" in card["outputs"]["cam"]["alignment"]


def test_lse_pooled_model_exports_logits_and_a_cam_equal_to_autograd_gradcam(tmp_path: Path) -> None:
    model = build_untrained_model(width=0.125, seed=4, pooling="lse", lse_sharpness=4.0)
    model_dir = export_onnx(model, tmp_path, {"name": "export-test-lse", "version": "1.2.3"})
    images = smooth_images(8, seed=6)
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    logits, cam = run_onnx(model_dir, images)
    assert np.abs(logits - expected).max() <= 1e-4
    assert logits.std(axis=0).max() > 1e-3
    reference = autograd_gradcam(model, torch.from_numpy(images[:4]), target="logit")
    lit = reference.max(axis=(2, 3)) > 1e-6
    assert lit.sum() >= 4, "too few non-empty Grad-CAM maps to compare"
    assert np.abs(normalise_by_max(cam[:4]) - normalise_by_max(reference))[lit].max() <= 1e-4
    card = load_model_card(model_dir).raw
    assert card["architecture_details"]["pooling"] == "lse"
    assert card["architecture_details"]["lse_sharpness"] == 4.0
    assert card["architecture"] == "resnet34 (width x0.125, log-sum-exp pooling r=4)"


def test_onnx_batch_axis_is_dynamic_and_ir_version_loadable(exported: tuple[torch.nn.Module, Path]) -> None:
    _, model_dir = exported
    graph = onnx.load(str(model_dir / "model.onnx"))
    assert graph.ir_version <= 10
    assert max(op.version for op in graph.opset_import if op.domain in ("", "ai.onnx")) >= 17
    for batch in (1, 3):
        logits, cam = run_onnx(model_dir, smooth_images(batch, seed=batch))
        assert logits.shape[0] == cam.shape[0] == batch


def test_card_names_its_cam_target_and_older_cards_mean_the_logit(
    exported: tuple[torch.nn.Module, Path],
) -> None:
    _, model_dir = exported
    card = load_model_card(model_dir)
    assert card.cam_target == "logit"
    # Cards written before the choice existed explain the class logit.
    outputs = {**card.raw["outputs"], "cam": {"meaning": "Grad-CAM"}}
    assert replace(card, raw={**card.raw, "outputs": outputs}).cam_target == "logit"
    assert replace(card, raw={**card.raw, "outputs": {}}).cam_target == "logit"


def test_card_is_complete_and_matches_the_onnx_file(exported: tuple[torch.nn.Module, Path]) -> None:
    _, model_dir = exported
    card = load_model_card(model_dir)  # verifies the sha256 too
    assert set(REQUIRED_KEYS) <= set(card.raw)
    assert card.classes == PAPER_CLASSES
    assert card.name == "export-test" and card.version == "1.2.3"
    assert card.input_name == "image"
    assert card.raw["input"]["size"] == [224, 224]
    assert card.raw["thresholds"]["abnormal"] == 0.5
    assert card.raw["thresholds"]["ood"]["method"] == "energy"
    assert card.clinical_use is False


def test_energy_score_is_negative_logsumexp() -> None:
    logits = np.array([[0.0, 0.0], [1000.0, 1000.0], [3.0, -2.0]])
    expected = -np.array([np.log(2.0), 1000.0 + np.log(2.0), np.log(np.exp(3.0) + np.exp(-2.0))])
    np.testing.assert_allclose(energy_scores(logits), expected, rtol=1e-12)


def test_ood_threshold_is_the_requested_percentile_of_training_energies() -> None:
    logits = np.column_stack([np.arange(100, dtype=float), np.full(100, -50.0)])
    rule = ood_threshold(logits, percentile=99.0, calibrated_on="unit test")
    energies = -np.logaddexp(logits[:, 0], logits[:, 1])
    assert rule["threshold"] == pytest.approx(np.percentile(energies, 99.0))
    assert (energies > rule["threshold"]).sum() == 1


def pooled_features(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.pool(model.features(torch.from_numpy(images))).numpy()


@pytest.mark.parametrize("pooling", ["avg", "lse"])
def test_features_output_is_the_pooled_layer4_vector_the_classifier_reads(
    pooling: str, tmp_path: Path
) -> None:
    model = build_untrained_model(width=0.125, seed=4, pooling=pooling)
    model_dir = export_onnx(model, tmp_path, {"name": f"export-test-{pooling}", "version": "1.2.3"})
    images = smooth_images(6, seed=8)
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits", "cam", "features"]
    logits, features = session.run(["logits", "features"], {"image": images})
    expected = pooled_features(model, images)
    assert features.shape == expected.shape == (6, model.fc.in_features)
    assert np.abs(features - expected).max() <= 1e-4
    assert features.std(axis=0).max() > 1e-3
    # The features are what the classifier reads: fc(features) gives the logits.
    weight, bias = model.fc.weight.detach().numpy(), model.fc.bias.detach().numpy()
    assert np.abs(features @ weight.T + bias - logits).max() <= 1e-4
    card = load_model_card(model_dir).raw
    assert card["outputs"]["features"]["shape"] == ["N", model.fc.in_features]
