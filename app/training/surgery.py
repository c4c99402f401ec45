"""Graph surgery on an exported model: expose the pooled features of an older ONNX file.

Models exported before the `features` output existed (such as the bundled demo model, whose
checkpoint is not shipped) already compute the pooled layer4 vector: it is the first input of the
Gemm that writes `logits`. `add_features_output` adds an Identity from that tensor to a new graph
output named `features` and changes nothing else, so `logits` and `cam` stay bit for bit the same.
Only the `onnx` package is needed (no torch): `fetalcns export --add-features-output MODEL_DIR`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto, helper, numpy_helper

from app.modelcard import load_model_card, write_model_card

FEATURES_OUTPUT = "features"
LOGITS_OUTPUT = "logits"
# onnxruntime refuses IR versions above 10.
MAX_IR_VERSION = 10


def features_output_card(width: int, pooling: str) -> dict[str, Any]:
    """The card's entry for the `features` output (the Mahalanobis OOD signal's input)."""
    how = "log-sum-exp" if pooling == "lse" else "average"
    return {
        "shape": ["N", int(width)],
        "meaning": f"layer4 activations after global {how} pooling: the vector the final linear layer reads",
    }


class SurgeryError(ValueError):
    """The graph is not shaped as this surgery expects; the message says what is missing."""


def _features_width(graph: onnx.GraphProto, gemm: onnx.NodeProto) -> int:
    weights = {init.name: init for init in graph.initializer}
    if gemm.input[1] not in weights:
        raise SurgeryError(f"the classifier weight {gemm.input[1]!r} is not a constant of the graph")
    shape = numpy_helper.to_array(weights[gemm.input[1]]).shape
    trans_b = next((helper.get_attribute_value(a) for a in gemm.attribute if a.name == "transB"), 0)
    return int(shape[1] if trans_b else shape[0])


def add_features_output(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` with a `features` output [N, K]: the input of the logits' Gemm.

    Returns the new model and K. Raises SurgeryError when the graph already has the output, when
    `logits` is not written by a Gemm (the linear classifier), or when a tensor is already called
    `features`.
    """
    new = onnx.ModelProto()
    new.CopyFrom(model)
    graph = new.graph
    outputs = [o.name for o in graph.output]
    if FEATURES_OUTPUT in outputs:
        raise SurgeryError(f"the graph already has a {FEATURES_OUTPUT!r} output")
    if LOGITS_OUTPUT not in outputs:
        raise SurgeryError(f"the graph has no {LOGITS_OUTPUT!r} output (it has {outputs})")
    producers = [node for node in graph.node if LOGITS_OUTPUT in node.output]
    if len(producers) != 1 or producers[0].op_type != "Gemm":
        kinds = [node.op_type for node in producers]
        raise SurgeryError(f"{LOGITS_OUTPUT!r} must be written by one Gemm (the classifier), not {kinds}")
    gemm = producers[0]
    names = {name for node in graph.node for name in (*node.input, *node.output)}
    if FEATURES_OUTPUT in names:
        raise SurgeryError(f"a tensor of the graph is already called {FEATURES_OUTPUT!r}")
    width = _features_width(graph, gemm)
    logits_info = next(o for o in graph.output if o.name == LOGITS_OUTPUT)
    batch = logits_info.type.tensor_type.shape.dim[0]
    batch_dim: str | int = batch.dim_param or batch.dim_value or "N"
    graph.node.append(
        helper.make_node("Identity", [gemm.input[0]], [FEATURES_OUTPUT], name="/features/Identity")
    )
    graph.output.append(helper.make_tensor_value_info(FEATURES_OUTPUT, TensorProto.FLOAT, [batch_dim, width]))
    if new.ir_version > MAX_IR_VERSION:
        new.ir_version = MAX_IR_VERSION
    onnx.checker.check_model(new)
    return new, width


def add_features_output_to_model_dir(model_dir: Path | str) -> dict[str, Any]:
    """Rewrite MODEL_DIR/model.onnx with the `features` output and update its card (sha256 too).

    Returns the card's new ``outputs.features`` entry. The file is replaced only after the new
    graph has passed the ONNX checker.
    """
    card = load_model_card(model_dir)
    path = card.onnx_path
    upgraded, width = add_features_output(onnx.load(str(path)))
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".onnx.tmp", delete=False) as handle:
        tmp = Path(handle.name)
    try:
        onnx.save(upgraded, str(tmp))
        tmp.chmod(path.stat().st_mode & 0o777)  # keep the file's permissions, not the temp file's
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    raw = dict(card.raw)
    pooling = str(raw.get("architecture_details", {}).get("pooling", "avg"))
    entry = {**features_output_card(width, pooling), "added_by": "graph surgery (app.training.surgery)"}
    raw["outputs"] = {**raw["outputs"], FEATURES_OUTPUT: entry}
    write_model_card(card.directory, raw)
    return entry
