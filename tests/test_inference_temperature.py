"""Temperature scaling: the fit against independent references, the card, and no train/serve skew.

References for the fit: torch's LBFGS on the same NLL (torch's own log_softmax and cross-entropy,
optimising log T) and a brute-force grid over log T.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from training_support import tiny_synth_dir

from app.cli import main
from app.inference.engine import InferenceEngine
from app.inference.scores import softmax
from app.inference.temperature import fit_temperature, negative_log_likelihood, scaled_softmax
from app.ingest.types import IngestedImage
from app.modelcard import load_model_card
from app.training.data import discover_samples, read_rgb

__all__ = ["tiny_synth_dir"]


def overconfident(
    seed: int, n: int = 400, classes: int = 5, true_t: float = 2.5
) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose labels are drawn from softmax(logits / true_t): a model too sure by true_t."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 4.0, (n, classes))
    p = softmax(logits / true_t)
    labels = np.array([rng.choice(classes, p=row) for row in p])
    return logits, labels


def torch_lbfgs_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    import torch

    z = torch.tensor(logits, dtype=torch.float64)
    y = torch.tensor(labels, dtype=torch.long)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    for _ in range(5):
        optimiser.step(closure)
    return float(log_t.detach().exp())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fitted_temperature_matches_torch_lbfgs(seed: int) -> None:
    logits, labels = overconfident(seed)
    fit = fit_temperature(logits, labels)
    assert fit.temperature == pytest.approx(torch_lbfgs_temperature(logits, labels), rel=1e-4)
    assert 1.5 < fit.temperature < 4.0  # near the 2.5 the labels were drawn with
    assert fit.nll_after < fit.nll_before


def test_fitted_temperature_is_the_minimum_of_a_brute_force_grid() -> None:
    logits, labels = overconfident(3, true_t=0.6)  # underconfident: T below 1
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 20001))
    nll = [negative_log_likelihood(logits, labels, t) for t in grid]
    best = grid[int(np.argmin(nll))]
    fit = fit_temperature(logits, labels)
    assert fit.temperature == pytest.approx(best, rel=1e-3)
    assert fit.temperature < 1.0
    assert fit.nll_after <= min(nll) + 1e-9


def test_nll_and_scaled_softmax_against_their_definitions() -> None:
    logits, labels = overconfident(4, n=50)
    for t in (0.5, 1.0, 3.0):
        p = softmax(logits / t)
        assert negative_log_likelihood(logits, labels, t) == pytest.approx(
            float(-np.mean(np.log(p[np.arange(50), labels])))
        )
        assert np.allclose(scaled_softmax(logits, t), p)
        # A temperature never changes the predicted class.
        assert (scaled_softmax(logits, t).argmax(1) == logits.argmax(1)).all()
    with pytest.raises(ValueError):
        scaled_softmax(logits, 0.0)


def test_a_separable_set_stays_within_the_bounds() -> None:
    # Every image right: the NLL falls towards 0 as T → 0 (and is 0.0 in floating point well
    # before the bound), so the fit sharpens, within the bounds, and never runs off to T = 0.
    logits = np.array([[5.0, 0.0], [0.0, 5.0]] * 10)
    fit = fit_temperature(logits, np.array([0, 1] * 10))
    assert 1e-2 <= fit.temperature < 1.0
    assert fit.nll_after <= fit.nll_before


@pytest.fixture(scope="module")
def calibrated(tiny_model_dir: Path, tiny_synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = tmp_path_factory.mktemp("calibrated") / "tiny"
    shutil.copytree(tiny_model_dir, model)
    assert main(["calibrate-temperature", "--model", str(model), "--data", str(tiny_synth_dir)]) == 0
    return model


def test_calibrate_temperature_writes_the_card_block(calibrated: Path, tiny_synth_dir: Path) -> None:
    block = json.loads((calibrated / "model.json").read_text())["calibration"]
    assert block["method"] == "temperature" and block["temperature"] > 0
    assert block["fitted_on"]["data"] == tiny_synth_dir.name  # a name, not a path
    assert block["fitted_on"]["patients"] == 10 and block["fitted_on"]["images"] == 20
    assert block["fitted_on"]["synthetic"] is True
    assert block["nll_after"] <= block["nll_before"]
    # The card still loads (sha256 of the model verified) and names the same temperature.
    assert load_model_card(calibrated).temperature == block["temperature"]


def test_serving_reads_the_cards_temperature_and_applies_it(calibrated: Path, tiny_synth_dir: Path) -> None:
    """No train/serve skew: the engine divides by exactly the card's T."""
    card_t = json.loads((calibrated / "model.json").read_text())["calibration"]["temperature"]
    engine = InferenceEngine(calibrated)
    assert engine.temperature == card_t != 1.0
    samples = discover_samples(tiny_synth_dir, engine.classes)[:4]
    images = [
        IngestedImage(source="x", frame=None, pixels=read_rgb(s.path), scan_box=None, sha256="")
        for s in samples
    ]
    for prediction in engine.predict(images):
        assert np.allclose(prediction.probabilities, softmax(prediction.logits / card_t))
        assert not np.allclose(prediction.probabilities, softmax(prediction.logits))
        assert prediction.label_index == int(np.argmax(prediction.logits))


def test_refitting_starts_from_raw_logits(calibrated: Path, tiny_synth_dir: Path) -> None:
    first = json.loads((calibrated / "model.json").read_text())["calibration"]["temperature"]
    assert main(["calibrate-temperature", "--model", str(calibrated), "--data", str(tiny_synth_dir)]) == 0
    again = json.loads((calibrated / "model.json").read_text())["calibration"]["temperature"]
    assert again == pytest.approx(first, rel=1e-9)


def test_evaluation_reports_ece_before_and_after(calibrated: Path, tiny_synth_dir: Path) -> None:
    from app.evaluation.runner import evaluate_model

    metrics = evaluate_model(calibrated, tiny_synth_dir, n_bootstrap=10).metrics
    block = metrics["calibration"]
    assert block["temperature"] == load_model_card(calibrated).temperature
    assert block["same_data_as_fit"] is True
    # Evaluation's probabilities are the served ones: its ECE is the "after" one.
    assert block["image_ece_after"] == pytest.approx(metrics["summary"]["image_ece"])
    assert block["image_nll_after"] <= block["image_nll_before"]
    from app.evaluation.report import render_html

    html = render_html(metrics, {})
    assert "<h2>Calibration</h2>" in html and "optimistic" in html


def test_missing_data_gives_a_clear_error(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model)
    code = main(["calibrate-temperature", "--model", str(model), "--data", str(tmp_path / "nowhere")])
    assert code == 2 and "error:" in capsys.readouterr().err
    assert "calibration" not in json.loads((model / "model.json").read_text())
