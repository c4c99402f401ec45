"""Graph surgery: adding the `features` output to an exported model that lacks it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from export_support import smooth_images, strip_features
from onnx import helper, numpy_helper

from app.cli import main
from app.modelcard import load_model_card, sha256_of, write_model_card
from app.training.export import build_untrained_model, export_onnx
from app.training.surgery import SurgeryError, add_features_output

DEMO = Path(__file__).resolve().parent.parent / "models" / "fetal-cns-demo"


def old_style_export(tmp_path: Path, pooling: str = "lse") -> tuple[torch.nn.Module, Path]:
    model = build_untrained_model(width=0.125, seed=5, pooling=pooling)
    model_dir = export_onnx(model, tmp_path / "model", {"name": "surgery-test", "version": "0.0.1"})
    strip_features(model_dir / "model.onnx")
    card = load_model_card(model_dir, verify_sha=False).raw
    card["outputs"] = {k: v for k, v in card["outputs"].items() if k != "features"}
    write_model_card(model_dir, card)
    return model, model_dir


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("pooling", ["avg", "lse"])
def test_surgery_on_a_fresh_export_gives_torchs_pooled_features(tmp_path: Path, pooling: str) -> None:
    model, model_dir = old_style_export(tmp_path, pooling)
    images = smooth_images(5, seed=2)
    before = session(model_dir / "model.onnx").run(["logits", "cam"], {"image": images})
    assert [o.name for o in session(model_dir / "model.onnx").get_outputs()] == ["logits", "cam"]
    assert main(["export", "--add-features-output", str(model_dir)]) == 0
    card = load_model_card(model_dir)  # the card's sha256 follows the rewritten file
    assert card.raw["outputs"]["features"]["shape"] == ["N", model.fc.in_features]
    upgraded = session(model_dir / "model.onnx")
    logits, cam, features = upgraded.run(["logits", "cam", "features"], {"image": images})
    np.testing.assert_array_equal(logits, before[0])
    np.testing.assert_array_equal(cam, before[1])
    with torch.no_grad():
        expected = model.pool(model.features(torch.from_numpy(images))).numpy()
    assert np.abs(features - expected).max() <= 1e-4
    assert onnx.load(str(model_dir / "model.onnx")).ir_version <= 10


def test_surgery_refuses_a_graph_that_already_has_features(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = export_onnx(build_untrained_model(width=0.125), tmp_path, {"name": "x"})
    digest = sha256_of(model_dir / "model.onnx")
    assert main(["export", "--add-features-output", str(model_dir)]) == 2
    assert "already has a 'features' output" in capsys.readouterr().err
    assert sha256_of(model_dir / "model.onnx") == digest
    with pytest.raises(SurgeryError, match="already"):
        add_features_output(onnx.load(str(model_dir / "model.onnx")))


def test_export_cli_needs_a_checkpoint_or_the_surgery(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export"]) == 2
    assert "--checkpoint and --out are required" in capsys.readouterr().err


def with_layer4_output(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """A test-only copy that also outputs the layer4 map that the CAM's 1x1 Conv reads."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    producer = {out: node for node in copy.graph.node for out in node.output}
    node = producer["cam"]  # cam = Relu(Conv(A, v)) / (h*w): walk back to the Conv
    while node.op_type != "Conv":
        node = producer[node.input[0]]
    name = node.input[0]
    copy.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return copy, name


def test_demo_model_features_are_its_lse_pooled_layer4_map_and_outputs_are_unchanged(tmp_path: Path) -> None:
    """On the bundled model: the surgery (re-done on a copy without the output) changes neither
    logits nor cam; features = log-sum-exp pooling (r from the card) of layer4, and fc(features)
    = logits."""
    card = load_model_card(DEMO)
    shipped = onnx.load(str(card.onnx_path))
    model_dir = tmp_path / "demo"
    shutil.copytree(DEMO, model_dir)
    consumed = {name for node in shipped.graph.node for name in node.input}
    if "features" in consumed:
        # Exported with the output (2.3.0 on): fc reads `features`, so there is no surgery to
        # undo; the surgery must refuse it, and the checks below run on the shipped graph.
        with pytest.raises(SurgeryError):
            add_features_output(shipped)
        original, upgraded = shipped, shipped
    elif "features" in [o.name for o in shipped.graph.output]:
        # The shipped file already went through the surgery: undo it to test it again.
        strip_demo = onnx.ModelProto()
        strip_demo.CopyFrom(shipped)
        outputs = [o for o in strip_demo.graph.output if o.name != "features"]
        del strip_demo.graph.output[:]
        strip_demo.graph.output.extend(outputs)
        nodes = [n for n in strip_demo.graph.node if "features" not in n.output]
        del strip_demo.graph.node[:]
        strip_demo.graph.node.extend(nodes)
        original = strip_demo
        upgraded, _ = add_features_output(original)
    else:
        original = shipped
        upgraded, _ = add_features_output(original)
    width = 128
    rng = np.random.default_rng(0)
    images = rng.normal(size=(3, 3, 224, 224)).astype(np.float32)
    probe, layer4 = with_layer4_output(upgraded)
    run_before = ort.InferenceSession(original.SerializeToString(), providers=["CPUExecutionProvider"])
    run_after = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    logits0, cam0 = run_before.run(["logits", "cam"], {"image": images})
    logits1, cam1, features, activations = run_after.run(
        ["logits", "cam", "features", layer4], {"image": images}
    )
    np.testing.assert_array_equal(logits0, logits1)
    np.testing.assert_array_equal(cam0, cam1)
    r = card.raw["architecture_details"]["lse_sharpness"]
    flat = r * activations.astype(np.float64).reshape(*activations.shape[:2], -1)
    peak = flat.max(axis=-1, keepdims=True)
    recomputed = (peak[..., 0] + np.log(np.exp(flat - peak).mean(axis=-1))) / r
    assert features.shape == (3, width)
    assert np.abs(features - recomputed).max() <= 1e-4
    weights = {i.name: numpy_helper.to_array(i) for i in upgraded.graph.initializer}
    fc = weights["model.fc.weight"], weights["model.fc.bias"]
    assert np.abs(features @ fc[0].T + fc[1] - logits1).max() <= 1e-4
