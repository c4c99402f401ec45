"""`fetalcns calibrate-temperature --model DIR --data DIR`: fit the card's softmax temperature.

Runs the exported model (no torch) over held-out labelled images, DIR/<class>/<patient>/<image>,
fits one temperature T on their raw logits (app.inference.temperature.fit_temperature) and writes
it to MODEL/model.json as the "calibration" block, which serving and evaluation then read
(ModelCard.temperature). The patients must be unseen by training and epoch selection.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "calibrate-temperature",
        help="fit the temperature T of softmax(logits / T) on held-out data and write it to the model card",
        description=(
            "Run the model over held-out labelled images (DIR/<class>/<patient>/<image>, patients unseen "
            "by training and epoch selection), fit one temperature T minimising the negative "
            "log-likelihood of softmax(logits / T), and write it with the NLL and ECE before and after to "
            "MODEL/model.json ('calibration'). Labels and accuracy do not change; probabilities do."
        ),
    )
    parser.add_argument("--model", type=Path, required=True, help="model directory, e.g. models/NAME")
    parser.add_argument("--data", type=Path, required=True, help="held-out labelled images")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.set_defaults(handler=run_calibrate_temperature)


def calibration_block(
    logits: Any, labels: Any, patients: int, data_name: str, provenance: dict[str, Any]
) -> dict[str, Any]:
    """The card's "calibration" block for these held-out logits and labels."""
    from app.evaluation.metrics import expected_calibration_error
    from app.inference.temperature import fit_temperature, scaled_softmax

    fit = fit_temperature(logits, labels)
    return {
        "method": "temperature",
        "temperature": fit.temperature,
        # A folder name and counts, never an absolute path: cards travel between machines.
        "fitted_on": {"data": data_name, "patients": patients, "images": len(labels)} | provenance,
        "nll_before": fit.nll_before,
        "nll_after": fit.nll_after,
        "ece_before": expected_calibration_error(labels, scaled_softmax(logits, 1.0)),
        "ece_after": expected_calibration_error(labels, scaled_softmax(logits, fit.temperature)),
    }


def calibrate_temperature(
    model_dir: Path, data_dir: Path, batch_size: int = 32, threads: int | None = None
) -> dict[str, Any]:
    """Fit T on ``data_dir`` with the model in ``model_dir``; write and return the card's block."""
    import numpy as np

    from app.inference.engine import LOGITS_OUTPUT, InferenceEngine
    from app.inference.ood_calibration import sample_outputs
    from app.modelcard import load_model_card, write_model_card
    from app.training.data import discover_samples

    engine = InferenceEngine(model_dir, device="auto", batch_size=batch_size, threads=threads)
    samples = discover_samples(data_dir, engine.classes)
    # The raw logits, whatever temperature the card has now: refitting never compounds.
    logits = sample_outputs(engine, samples, [LOGITS_OUTPUT], batch_size)[LOGITS_OUTPUT]
    labels = np.array([s.label for s in samples])
    generator = _generator(Path(data_dir), samples)
    block = calibration_block(
        logits, labels, len({s.patient for s in samples}), Path(data_dir).resolve().name, generator
    )
    card = load_model_card(model_dir)
    write_model_card(model_dir, {**card.raw, "calibration": block})
    return block


def _generator(data_dir: Path, samples: Any) -> dict[str, Any]:
    """The synthetic generator's settings (seed), when the data came from `fetalcns synth`."""
    from app.training.data import describe_dataset

    info = describe_dataset(data_dir, samples)
    kept = {"synthetic": info["synthetic"]}
    return kept | ({"generator": info["generator"]} if "generator" in info else {})


def run_calibrate_temperature(args: argparse.Namespace) -> int:
    from app.inference.runtime import EngineError
    from app.modelcard import ModelCardError
    from app.training.data import DatasetError

    try:
        block = calibrate_temperature(args.model, args.data, batch_size=args.batch_size, threads=args.threads)
    except (DatasetError, EngineError, ModelCardError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    fitted = block["fitted_on"]
    print(f"fitted on {fitted['images']} images of {fitted['patients']} patients ({fitted['data']})")
    print(f"  temperature {block['temperature']:.4f}")
    print(f"  NLL {block['nll_before']:.4f} -> {block['nll_after']:.4f}")
    print(f"  ECE {block['ece_before']:.4f} -> {block['ece_after']:.4f}")
    print(f"wrote {args.model / 'model.json'}")
    return 0
